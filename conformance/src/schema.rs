//! Validation against the protocol's JSON Schema, `tether_spec::schema::document()`: the very
//! document committed as `spec/schema/tether.schema.json`, generated from the same types.

use std::sync::OnceLock;

use jsonschema::Validator;
use serde_json::{json, Value};
use tether_spec::schema;

struct Validators {
    message: Validator,
    initialize_result: Validator,
}

fn validators() -> Result<&'static Validators, String> {
    static CELL: OnceLock<Result<Validators, String>> = OnceLock::new();
    CELL.get_or_init(|| {
        let doc = schema::document();
        let defs = doc.get("$defs").cloned().unwrap_or(Value::Null);
        let message =
            jsonschema::validator_for(&doc).map_err(|e| format!("the spec schema does not compile: {e}"))?;
        let result = json!({
            "$schema": schema::DIALECT,
            "$ref": schema::def_ref(&schema::result_def("tether/initialize")),
            "$defs": defs,
        });
        let initialize_result = jsonschema::validator_for(&result)
            .map_err(|e| format!("the initialize result schema does not compile: {e}"))?;
        Ok(Validators { message, initialize_result })
    })
    .as_ref()
    .map_err(Clone::clone)
}

fn errors(validator: &Validator, value: &Value) -> Vec<String> {
    validator.iter_errors(value).map(|e| format!("{e} (at {:?})", e.instance_path.to_string())).collect()
}

/// Why a message does not match the spec schema (empty when it does).
pub(crate) fn message_errors(value: &Value) -> Vec<String> {
    match validators() {
        Ok(v) => errors(&v.message, value),
        Err(e) => vec![e],
    }
}

/// Why an initialize result does not match the spec schema (empty when it does).
pub(crate) fn initialize_result_errors(value: &Value) -> Vec<String> {
    match validators() {
        Ok(v) => errors(&v.initialize_result, value),
        Err(e) => vec![e],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_spec_examples_validate() {
        let init = json!({"protocolVersion":1,"plugin":{"name":"kv-python","version":"0.1.0"},"capabilities":{},"interfaces":{"kv":{"version":2,"methods":{"put":{"params":{"type":"object"},"result":{"type":"object"}}}}}});
        assert_eq!(initialize_result_errors(&init), Vec::<String>::new());
        assert!(!initialize_result_errors(&json!({"protocolVersion": "1"})).is_empty());
        let log = json!({"jsonrpc":"2.0","method":"$/log","params":{"level":"debug","message":"put","target":"kv","fields":{"key":"hello","bytes":5}}});
        assert_eq!(message_errors(&log), Vec::<String>::new());
        let bad_log = json!({"jsonrpc":"2.0","method":"$/log","params":{"level":"loud","message":"put"}});
        assert!(!message_errors(&bad_log).is_empty());
        let parse_error = json!({"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"parse error"}});
        assert_eq!(message_errors(&parse_error), Vec::<String>::new());
    }
}
