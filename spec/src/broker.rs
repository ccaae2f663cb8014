//! Handles, the broker of SPEC.md §6: how a handle is written, `tether/invoke`,
//! `tether/retain` and `$/release`.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::method::{Empty, NotificationMethod, RequestMethod};

/// A handle as written in params (SPEC.md §6.1): `{"$handle": "h1", "interface": "adder"}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HandleRef {
    /// The id the owner gave the handle.
    #[serde(rename = "$handle")]
    #[schemars(length(min = 1))]
    pub handle: String,
    /// The interface the object implements.
    pub interface: String,
}

impl HandleRef {
    /// A handle reference.
    pub fn new(handle: impl Into<String>, interface: impl Into<String>) -> Self {
        HandleRef { handle: handle.into(), interface: interface.into() }
    }
}

/// `tether/invoke` (SPEC.md §6.2): call a method on a handle the other side owns.
#[derive(Debug, Clone, Copy)]
pub enum Invoke {}

impl RequestMethod for Invoke {
    const METHOD: &'static str = "tether/invoke";
    type Params = InvokeParams;
    /// The invoked method's result, whatever its type.
    type Result = serde_json::Map<String, serde_json::Value>;
}

/// Params of `tether/invoke`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct InvokeParams {
    /// The handle's id.
    pub handle: String,
    /// The short method name of the handle's interface (`sum`).
    pub method: String,
    /// That method's params.
    #[schemars(with = "serde_json::Map<String, serde_json::Value>")]
    pub params: Box<RawValue>,
}

/// Params of `tether/retain` and `$/release`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct HandleParams {
    /// The handle's id.
    pub handle: String,
}

/// `tether/retain` (SPEC.md §6.3): keep a handle alive after the call that carried it.
#[derive(Debug, Clone, Copy)]
pub enum Retain {}

impl RequestMethod for Retain {
    const METHOD: &'static str = "tether/retain";
    type Params = HandleParams;
    type Result = Empty;
}

/// `$/release` (SPEC.md §6.3): the holder is done with a retained handle.
#[derive(Debug, Clone, Copy)]
pub enum Release {}

impl NotificationMethod for Release {
    const METHOD: &'static str = "$/release";
    type Params = HandleParams;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handle_is_written_as_the_spec_shows() {
        let h = HandleRef::new("h1", "adder");
        assert_eq!(serde_json::to_string(&h).unwrap_or_default(), r#"{"$handle":"h1","interface":"adder"}"#);
        assert!(serde_json::from_str::<HandleRef>(r#"{"$handle":"h1"}"#).is_err());
    }
}
