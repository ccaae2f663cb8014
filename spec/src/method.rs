//! Typed markers: one RPC is one type with its `METHOD`, `Params` and `Result`
//! (rust-analyzer's `lsp_types::request::Request` pattern), and helpers built on them.

use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// A request: a method name and the types of its params and result.
pub trait RequestMethod {
    /// The full method name on the wire, e.g. `kv.put` or `tether/initialize`.
    const METHOD: &'static str;
    /// The params object.
    type Params: Serialize + DeserializeOwned + JsonSchema + Send + 'static;
    /// The result object.
    type Result: Serialize + DeserializeOwned + JsonSchema + Send + 'static;
}

/// A notification: a method name and the type of its params.
pub trait NotificationMethod {
    /// The full method name on the wire, e.g. `$/cancelRequest`.
    const METHOD: &'static str;
    /// The params object.
    type Params: Serialize + DeserializeOwned + JsonSchema + Send + 'static;
}

/// The params or result of a method that has none: written `{}`, and any object is accepted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Empty {}

/// The JSON Schemas of a method's params and result, as a plugin declares them in the
/// initialize result (SPEC.md §4.4).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct MethodSchema {
    /// JSON Schema (draft 2020-12) of the params object.
    pub params: serde_json::Value,
    /// JSON Schema (draft 2020-12) of the result object.
    pub result: serde_json::Value,
}

impl MethodSchema {
    /// The schemas of a typed method, generated from its Rust types.
    pub fn of<M: RequestMethod>() -> Self {
        MethodSchema { params: schema_value::<M::Params>(), result: schema_value::<M::Result>() }
    }
}

/// The JSON Schema of a type as a JSON value.
pub fn schema_value<T: JsonSchema>() -> serde_json::Value {
    schemars::generate::SchemaSettings::draft2020_12().into_generator().into_root_schema_for::<T>().to_value()
}

/// The short method name of a full one: `put` for `kv.put`.
pub fn short_name(method: &str) -> &str {
    method.split_once('.').map_or(method, |(_, short)| short)
}

/// Splits `<interface>.<method>` (SPEC.md §5.1); `None` when the name is not of that form.
pub fn split_method(method: &str) -> Option<(&str, &str)> {
    let (interface, short) = method.split_once('.')?;
    let valid = |s: &str| {
        s.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
            && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
    };
    (valid(interface) && valid(short)).then_some((interface, short))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn method_names_split() {
        assert_eq!(split_method("kv.put"), Some(("kv", "put")));
        assert_eq!(split_method("counter.get_all"), Some(("counter", "get_all")));
        assert_eq!(split_method("tether/ping"), None);
        assert_eq!(split_method("kv.put.x"), None);
        assert_eq!(split_method("1kv.put"), None);
        assert_eq!(short_name("kv.delete"), "delete");
    }

    #[test]
    fn empty_is_an_object() {
        assert_eq!(serde_json::to_string(&Empty {}).unwrap_or_default(), "{}");
        assert!(serde_json::from_str::<Empty>(r#"{"extra":1}"#).is_ok());
    }
}
