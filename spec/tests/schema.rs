//! The committed JSON Schema is the one the types generate, and it says what SPEC.md says.

// Helpers of a test may fail loudly too: a failed assumption is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use serde_json::{json, Value};
use support::schema::{validator, Schema};
use tether_spec::schema::{self, def_ref, params_def, result_def, MethodKind};

fn path() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("schema").join("tether.schema.json")
}

#[test]
fn the_committed_schema_is_the_generated_one() {
    let generated = schema::document_text();
    let committed = std::fs::read_to_string(path()).unwrap_or_default();
    if generated != committed {
        if std::env::var_os("UPDATE_SCHEMA").is_some_and(|v| v == "1") {
            let tmp = path().with_extension("json.tmp");
            std::fs::write(&tmp, &generated).expect("writable spec/schema");
            std::fs::rename(&tmp, path()).expect("writable spec/schema");
        } else {
            panic!(
                "spec/schema/tether.schema.json differs from the schema the types generate; \
                 regenerate it with `UPDATE_SCHEMA=1 cargo test -p tether-spec --test schema` and \
                 review the diff"
            );
        }
    }
}

#[test]
fn the_schema_is_valid_draft_2020_12() {
    let doc = schema::document();
    assert_eq!(doc["$schema"], schema::DIALECT);
    assert!(jsonschema::draft202012::meta::is_valid(&doc), "the document is not a valid 2020-12 schema");
    // Every $ref points to a $defs entry.
    fn refs(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(m) => {
                for (k, v) in m {
                    if k == "$ref" {
                        out.push(v.as_str().unwrap().to_owned());
                    }
                    refs(v, out);
                }
            }
            Value::Array(a) => a.iter().for_each(|v| refs(v, out)),
            _ => {}
        }
    }
    let mut all = Vec::new();
    refs(&doc, &mut all);
    let names: Vec<String> = doc["$defs"].as_object().unwrap().keys().map(|k| def_ref(k)).collect();
    for r in all {
        assert!(names.contains(&r), "dangling $ref {r}");
    }
    for m in schema::methods() {
        assert!(doc["$defs"].get(params_def(m.method)).is_some(), "{}", m.method);
        assert_eq!(
            doc["$defs"].get(result_def(m.method)).is_some(),
            m.kind == MethodKind::Request,
            "{}",
            m.method
        );
    }
    // Descriptions come from the doc comments.
    assert_eq!(
        doc["$defs"]["KvPutParams"]["properties"]["key"]["description"],
        "Any non-empty Unicode string."
    );
}

#[test]
fn the_schema_accepts_and_rejects_what_the_spec_says() {
    let s = Schema::load();
    let good = [
        json!({"jsonrpc":"2.0","id":1,"method":"tether/ping","params":{}}),
        json!({"jsonrpc":"2.0","id":"a","method":"app.call","params":{"x":[1]}}),
        json!({"jsonrpc":"2.0","method":"$/cancelRequest","params":{"id":"a"}}),
        json!({"jsonrpc":"2.0","id":1,"result":{}}),
        json!({"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"parse error"}}),
        json!({"jsonrpc":"2.0","id":2,"error":{"code":-32003,"message":"unknown handle","data":{"handle":"h9"}}}),
        json!({"jsonrpc":"2.0","id":1,"method":"counter.put","params":{"key":"k","value":1,"adder":{"$handle":"h1","interface":"adder"}}}),
    ];
    for m in good {
        assert!(s.message(&m).is_ok(), "rejected {m}: {:?}", s.message(&m));
    }
    let bad = [
        json!([{"jsonrpc":"2.0","id":1,"method":"tether/ping","params":{}}]),
        json!({"jsonrpc":"1.0","id":1,"method":"tether/ping","params":{}}),
        json!({"jsonrpc":"2.0","id":null,"method":"tether/ping","params":{}}),
        json!({"jsonrpc":"2.0","id":1.5,"method":"tether/ping","params":{}}),
        json!({"jsonrpc":"2.0","id":1,"method":"tether/ping","params":[]}),
        json!({"jsonrpc":"2.0","method":7,"params":{}}),
        json!({"jsonrpc":"2.0","id":1,"result":{},"error":{"code":1,"message":"m"}}),
        json!({"jsonrpc":"2.0","id":1,"method":"tether/ping","params":{},"result":{}}),
        json!({"jsonrpc":"2.0","id":null,"result":{}}),
        json!({"jsonrpc":"2.0","id":1,"result":[]}),
        json!({"jsonrpc":"2.0","id":1,"error":{"code":-32001,"message":"no common version"}}),
        json!({"jsonrpc":"2.0","id":1,"method":"kv.put","params":{"key":"a"}}),
        json!({"jsonrpc":"2.0","id":1,"method":"kv.get","params":{"key":""}}),
        json!({"jsonrpc":"2.0","id":1,"method":"counter.put","params":{"key":"k","value":1,"adder":{"$handle":"h1"}}}),
        json!({"jsonrpc":"2.0","id":1,"method":"counter.put","params":{"key":"k","value":1.5,"adder":{"$handle":"h1","interface":"adder"}}}),
        json!({"jsonrpc":"2.0","method":"$/log","params":{"level":"loud","message":"m"}}),
        json!({"jsonrpc":"2.0","id":1,"method":"tether/initialize","params":{"protocolVersions":[],"interfaces":{},"host":{"name":"h","version":"1"},"capabilities":{},"maxFrameSize":33554432}}),
        json!({"jsonrpc":"2.0","id":1,"method":"tether/initialize","params":{"protocolVersions":[1],"interfaces":{},"host":{"name":"h","version":"1"},"capabilities":{},"maxFrameSize":1000}}),
    ];
    for m in bad {
        assert!(s.message(&m).is_err(), "accepted {m}");
    }
    // Results are checked by method.
    assert!(s.result("kv.get", &json!({"value":"aGk="})).is_ok());
    assert!(s.result("kv.get", &json!({})).is_err());
    assert!(s.result("kv.delete", &json!({"existed":"yes"})).is_err());
    assert!(s.result("adder.sum", &json!({"result":3})).is_ok());
    assert!(validator(&format!("params:{}", "adder.sum")).is_valid(&json!({"a":1,"b":2})));
}
