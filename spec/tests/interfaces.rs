//! Interface files: the committed schema of an interface file and the reference interfaces'
//! files (`spec/interfaces/*.json`) are the ones the Rust declarations generate, they validate
//! against that schema, and a contradictory document is refused with its cause.

// Helpers of a test may fail loudly too: a failed assumption is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};

use serde_json::{json, Value};
use tether_spec::interfaces::{blob, counter, kv};
use tether_spec::{codes, InterfaceDocument, InterfaceDocumentError};

fn spec_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).to_path_buf()
}

/// Fails when `path` differs from `generated`, or rewrites it when `variable=1`.
fn committed_is_generated(path: &Path, generated: &str, variable: &str) {
    let committed = std::fs::read_to_string(path).unwrap_or_default();
    if generated == committed {
        return;
    }
    if std::env::var_os(variable).is_some_and(|v| v == "1") {
        let tmp = path.with_extension("json.tmp");
        std::fs::write(&tmp, generated).expect("writable spec/");
        std::fs::rename(&tmp, path).expect("writable spec/");
    } else {
        panic!(
            "{} differs from what the Rust declarations generate; regenerate it with \
             `{variable}=1 cargo test -p tether-spec --test interfaces` and review the diff",
            path.strip_prefix(spec_dir().parent().unwrap()).unwrap_or(path).display()
        );
    }
}

fn references() -> Vec<InterfaceDocument> {
    vec![kv::document(), counter::document(), blob::document()]
}

#[test]
fn the_committed_interface_schema_is_the_generated_one() {
    let path = spec_dir().join("schema").join("interface.schema.json");
    committed_is_generated(&path, &InterfaceDocument::schema_text(), "UPDATE_SCHEMA");
}

#[test]
fn the_committed_reference_interface_files_are_the_generated_ones() {
    for doc in references() {
        let path = spec_dir().join("interfaces").join(format!("{}.json", doc.name));
        committed_is_generated(&path, &doc.to_text(), "UPDATE_INTERFACES");
    }
}

#[test]
fn the_reference_files_validate_against_the_interface_schema_and_read_back() {
    let schema = InterfaceDocument::schema();
    assert!(jsonschema::draft202012::meta::is_valid(&schema), "interface.schema.json is not valid 2020-12");
    let validator = jsonschema::draft202012::new(&schema).unwrap();
    for doc in references() {
        let text = doc.to_text();
        let value: Value = serde_json::from_str(&text).unwrap();
        let errors: Vec<String> = validator.iter_errors(&value).map(|e| e.to_string()).collect();
        assert!(errors.is_empty(), "{}.json: {errors:?}", doc.name);
        assert_eq!(InterfaceDocument::from_json(&text).unwrap(), doc);
        // Every method schema in the file is itself a valid schema.
        for v in &doc.versions {
            for (name, m) in &v.methods {
                for s in [&m.params, &m.result] {
                    assert!(jsonschema::draft202012::meta::is_valid(s), "{}.{name}", doc.name);
                }
            }
        }
    }
}

#[test]
fn the_reference_documents_say_what_spec_md_section_9_says() {
    let kv = kv::document();
    assert_eq!(kv.version_numbers(), vec![1, 2]);
    let names = |v: u32| kv.version(v).unwrap().methods.keys().cloned().collect::<Vec<_>>();
    assert_eq!(names(1), ["get", "put"]);
    assert_eq!(names(2), ["delete", "get", "put"]);
    assert_eq!(kv.version(2).unwrap().errors[0].code, codes::KEY_NOT_FOUND);
    let counter = counter::document();
    assert_eq!(counter.version(1).unwrap().handles, ["adder"]);
    assert_eq!(blob::document().version(1).unwrap().errors[0].code, codes::BLOB_NOT_FOUND);
    assert!(kv.version(3).is_none());
}

fn refused(value: Value) -> String {
    match InterfaceDocument::from_json(&value.to_string()) {
        Err(e) => e.to_string(),
        Ok(doc) => panic!("accepted {doc:?}"),
    }
}

#[test]
fn contradictory_documents_are_refused_with_their_cause() {
    let object = json!({ "type": "object" });
    let method = json!({ "params": object, "result": object });
    let doc = |name: &str, versions: Value| json!({ "name": name, "versions": versions });
    let v = |n: u32| json!({ "version": n, "methods": { "hello": method } });
    assert_eq!(
        refused(doc("greeter", json!([v(2), v(1)]))),
        "invalid interface document: interface greeter: versions must be positive and increasing, 1 follows 2"
    );
    assert_eq!(
        refused(doc("9greeter", json!([v(1)]))),
        "invalid interface document: interface name \"9greeter\" is not a letter followed by letters, digits or _"
    );
    let string_params =
        json!({ "version": 1, "methods": { "hello": { "params": { "type": "string" }, "result": object } } });
    assert_eq!(
        refused(doc("greeter", json!([string_params]))),
        "invalid interface document: interface greeter v1: the params schema of greeter.hello is not of type object (SPEC.md §4.4)"
    );
    let reserved = json!({ "version": 1, "methods": {}, "errors": [{ "code": -32001, "meaning": "x" }] });
    assert_eq!(
        refused(doc("greeter", json!([reserved]))),
        "invalid interface document: interface greeter v1: error code -32001 is in the reserved range"
    );
    assert_eq!(
        refused(doc("greeter", json!([]))),
        "invalid interface document: interface greeter defines no version"
    );
    let unknown = json!({ "name": "greeter", "versions": [v(1)], "extra": 1 });
    let InterfaceDocumentError::Shape(_) = InterfaceDocument::from_json(&unknown.to_string()).unwrap_err()
    else {
        panic!("an unknown member is a shape error")
    };
}

#[test]
fn a_file_may_name_its_schema() {
    let text = r#"{"$schema":"../schema/interface.schema.json","name":"greeter","versions":[{"version":1,"methods":{"hello":{"params":{"type":"object"},"result":{"type":"object"}}}}]}"#;
    let doc = InterfaceDocument::from_json(text).unwrap();
    assert_eq!(doc.name, "greeter");
    assert_eq!(doc.version(1).unwrap().methods.len(), 1);
}
