//! Validation against the generated JSON Schema with the `jsonschema` crate.

use std::collections::HashMap;

use jsonschema::Validator;
use serde_json::{json, Value};
use tether_spec::schema::{self, def_ref, params_def, result_def};

/// A validator for one `$defs` entry of the document.
pub fn validator(def: &str) -> Validator {
    let doc = schema::document();
    let wrapper = json!({
        "$schema": schema::DIALECT,
        "$ref": def_ref(def),
        "$defs": doc["$defs"].clone(),
    });
    jsonschema::draft202012::new(&wrapper).unwrap_or_else(|e| panic!("schema for {def}: {e}"))
}

/// Validators for the message and every method.
pub struct Schema {
    message: Validator,
    defs: HashMap<String, Validator>,
}

fn check(v: &Validator, instance: &Value) -> Result<(), String> {
    let errors: Vec<String> =
        v.iter_errors(instance).map(|e| format!("{} at {}", e, e.instance_path)).collect();
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors.join("; "))
    }
}

impl Schema {
    /// Builds the validators from the generated document.
    pub fn load() -> Self {
        let doc = schema::document();
        let message = jsonschema::draft202012::new(&doc).expect("the document compiles");
        let defs = doc["$defs"]
            .as_object()
            .unwrap()
            .keys()
            .filter(|k| k.starts_with("params:") || k.starts_with("result:"))
            .map(|k| (k.clone(), validator(k)))
            .collect();
        Schema { message, defs }
    }

    /// Validates one message.
    pub fn message(&self, m: &Value) -> Result<(), String> {
        check(&self.message, m)
    }

    /// Validates the params of a method the schema knows; `Ok` for other methods.
    pub fn params(&self, method: &str, params: &Value) -> Result<(), String> {
        self.defs.get(&params_def(method)).map_or(Ok(()), |v| check(v, params))
    }

    /// Validates the result of a method the schema knows; `Ok` for other methods.
    pub fn result(&self, method: &str, result: &Value) -> Result<(), String> {
        self.defs.get(&result_def(method)).map_or(Ok(()), |v| check(v, result))
    }

    /// Whether the schema knows the method.
    pub fn knows(&self, method: &str) -> bool {
        self.defs.contains_key(&params_def(method))
    }
}
