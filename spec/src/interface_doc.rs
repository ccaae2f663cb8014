//! Interface files: one JSON document per application interface (its name, its versions, and
//! per version the methods with their params and result schemas, the error codes it defines and
//! the handle interfaces it uses), so that an application can hand its plugin authors the
//! contract of its interface, and a judge can check a plugin against it.
//!
//! The document's own schema is `schema/interface.schema.json` ([`InterfaceDocument::schema_text`]);
//! the reference interfaces ship as `interfaces/kv.json`, `counter.json` and `blob.json`
//! ([`crate::interfaces::kv::document`] and its siblings).

use std::collections::{BTreeMap, BTreeSet};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::method::{schema_value, split_method, MethodSchema};

/// The `$schema` an interface file names: where its own schema lives in the repository.
pub const INTERFACE_SCHEMA_ID: &str = "https://tether.invalid/spec/schema/interface.schema.json";

/// One interface: what an application publishes so that plugin authors (and the judge) know
/// exactly what to serve.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct InterfaceDocument {
    /// The interface name, as a plugin declares it in the initialize result (`kv`, `greeter`).
    #[schemars(regex(pattern = r"^[A-Za-z][A-Za-z0-9_]*$"))]
    pub name: String,
    /// What the interface is for, for humans.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Every version the interface defines, in increasing order.
    #[schemars(length(min = 1))]
    pub versions: Vec<InterfaceVersion>,
}

/// One version of an interface.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct InterfaceVersion {
    /// The version number (a positive integer).
    #[schemars(range(min = 1))]
    pub version: u32,
    /// The methods of this version, by short name (`put` for `kv.put`), with the JSON Schemas
    /// of their params and result, exactly as a plugin declares them (SPEC.md §4.4).
    pub methods: BTreeMap<String, MethodSchema>,
    /// The application error codes this version defines (outside the reserved range).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<InterfaceError>,
    /// The interfaces of the handles this version passes or expects (`adder` for `counter`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub handles: Vec<String>,
}

/// An error code an interface defines.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct InterfaceError {
    /// The code.
    pub code: i64,
    /// When it is returned.
    pub meaning: String,
    /// JSON Schema of the error's `data`, when the interface fixes it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<serde_json::Value>,
}

/// Why a text is not a usable interface file.
#[derive(Debug, thiserror::Error)]
pub enum InterfaceDocumentError {
    /// Not JSON, or not of the document's shape.
    #[error("not an interface document: {0}")]
    Shape(#[from] serde_json::Error),
    /// Of the right shape, but contradicting itself.
    #[error("invalid interface document: {0}")]
    Invalid(String),
}

impl InterfaceDocument {
    /// A document built from a function that gives each version's methods, as
    /// [`crate::interfaces::kv::methods`] or a macro-generated server does.
    pub fn from_methods(
        name: &str,
        versions: &[u32],
        mut methods: impl FnMut(u32) -> BTreeMap<String, MethodSchema>,
    ) -> Self {
        let versions = versions
            .iter()
            .map(|&version| InterfaceVersion {
                version,
                methods: methods(version),
                errors: Vec::new(),
                handles: Vec::new(),
            })
            .collect();
        InterfaceDocument { name: name.to_owned(), description: None, versions }
    }

    /// Sets the description.
    pub fn with_description(mut self, description: &str) -> Self {
        self.description = Some(description.to_owned());
        self
    }

    /// Adds an error code to every version.
    pub fn with_error(mut self, code: i64, meaning: &str, data: Option<serde_json::Value>) -> Self {
        for v in &mut self.versions {
            v.errors.push(InterfaceError { code, meaning: meaning.to_owned(), data: data.clone() });
        }
        self
    }

    /// Adds a handle interface to every version.
    pub fn with_handle(mut self, interface: &str) -> Self {
        for v in &mut self.versions {
            v.handles.push(interface.to_owned());
        }
        self
    }

    /// The version numbers, in the document's order.
    pub fn version_numbers(&self) -> Vec<u32> {
        self.versions.iter().map(|v| v.version).collect()
    }

    /// One version, if the document defines it.
    pub fn version(&self, version: u32) -> Option<&InterfaceVersion> {
        self.versions.iter().find(|v| v.version == version)
    }

    /// Reads and checks a document: its shape, then what a schema cannot say (a valid name,
    /// versions positive, increasing and unique, method names valid, error codes unique and
    /// outside the reserved range, every method schema of type object).
    pub fn from_json(text: &str) -> Result<Self, InterfaceDocumentError> {
        let mut value: serde_json::Value = serde_json::from_str(text)?;
        // The file may name its schema; the type does not keep it.
        if let serde_json::Value::Object(map) = &mut value {
            map.remove("$schema");
        }
        let doc: InterfaceDocument = serde_json::from_value(value)?;
        doc.check().map_err(InterfaceDocumentError::Invalid)?;
        Ok(doc)
    }

    /// The checks of [`InterfaceDocument::from_json`] on a document built in code.
    pub fn check(&self) -> Result<(), String> {
        if split_method(&format!("{}.x", self.name)).is_none() {
            return Err(format!(
                "interface name {:?} is not a letter followed by letters, digits or _",
                self.name
            ));
        }
        if self.versions.is_empty() {
            return Err(format!("interface {} defines no version", self.name));
        }
        let mut previous = 0;
        for v in &self.versions {
            if v.version <= previous {
                return Err(format!(
                    "interface {}: versions must be positive and increasing, {} follows {}",
                    self.name, v.version, previous
                ));
            }
            previous = v.version;
            for (method, schema) in &v.methods {
                let full = format!("{}.{method}", self.name);
                if split_method(&full).is_none() {
                    return Err(format!(
                        "interface {} v{}: method name {method:?} is not valid",
                        self.name, v.version
                    ));
                }
                for (what, s) in [("params", &schema.params), ("result", &schema.result)] {
                    if s.get("type").and_then(serde_json::Value::as_str) != Some("object") {
                        return Err(format!(
                            "interface {} v{}: the {what} schema of {full} is not of type object (SPEC.md §4.4)",
                            self.name, v.version
                        ));
                    }
                }
            }
            let mut codes = BTreeSet::new();
            for e in &v.errors {
                if crate::error::codes::is_reserved(e.code) {
                    return Err(format!(
                        "interface {} v{}: error code {} is in the reserved range",
                        self.name, v.version, e.code
                    ));
                }
                if !codes.insert(e.code) {
                    return Err(format!(
                        "interface {} v{}: error code {} is listed twice",
                        self.name, v.version, e.code
                    ));
                }
            }
        }
        Ok(())
    }

    /// The document as an interface file: two-space indentation and a final newline.
    pub fn to_text(&self) -> String {
        let mut value = serde_json::to_value(self).unwrap_or_default();
        if let serde_json::Value::Object(map) = &mut value {
            let mut with_schema = serde_json::Map::new();
            with_schema.insert("$schema".into(), INTERFACE_SCHEMA_ID.into());
            with_schema.extend(std::mem::take(map));
            *map = with_schema;
        }
        let mut text = serde_json::to_string_pretty(&value).unwrap_or_default();
        text.push('\n');
        text
    }

    /// The JSON Schema of an interface file, committed as `schema/interface.schema.json`.
    pub fn schema() -> serde_json::Value {
        let mut schema = schema_value::<InterfaceDocument>();
        if let serde_json::Value::Object(map) = &mut schema {
            map.insert("$id".into(), INTERFACE_SCHEMA_ID.into());
            // Files name their schema; the document type itself does not hold that member.
            if let Some(serde_json::Value::Object(props)) = map.get_mut("properties") {
                props.insert("$schema".into(), serde_json::json!({ "type": "string" }));
            }
        }
        schema
    }

    /// [`InterfaceDocument::schema`] as it is committed: pretty-printed, with a final newline.
    pub fn schema_text() -> String {
        let mut text = serde_json::to_string_pretty(&Self::schema()).unwrap_or_default();
        text.push('\n');
        text
    }
}
