//! The `counter` reference interface (SPEC.md §9.3) and the host-served `adder` (§9.4): the
//! broker-callback scenario of go-plugin's bidirectional example.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::broker::HandleRef;
use crate::method::{Empty, MethodSchema, RequestMethod};

/// The interface name.
pub const NAME: &str = "counter";
/// The versions every `counter` example speaks.
pub const VERSIONS: &[u32] = &[1];
/// The interface of the handle the host passes in `counter.put`.
pub const ADDER: &str = "adder";

/// `counter.put`: add `value` to `key` through the host's `adder`.
#[derive(Debug, Clone, Copy)]
pub enum Put {}
impl RequestMethod for Put {
    const METHOD: &'static str = "counter.put";
    type Params = PutParams;
    type Result = Empty;
}

/// Params of `counter.put`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[schemars(rename = "CounterPutParams")]
pub struct PutParams {
    /// The counter's key.
    pub key: String,
    /// The amount to add.
    pub value: i64,
    /// A handle to an `adder` the host serves.
    pub adder: HandleRef,
}

/// `counter.get`: the stored value, 0 for a key never put.
#[derive(Debug, Clone, Copy)]
pub enum Get {}
impl RequestMethod for Get {
    const METHOD: &'static str = "counter.get";
    type Params = GetParams;
    type Result = GetResult;
}

/// Params of `counter.get`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[schemars(rename = "CounterGetParams")]
pub struct GetParams {
    /// The counter's key.
    pub key: String,
}

/// Result of `counter.get`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[schemars(rename = "CounterGetResult")]
pub struct GetResult {
    /// The stored value.
    pub value: i64,
}

/// `sum`, the one method of the `adder` interface the host serves as a handle (SPEC.md §9.4).
/// Its `METHOD` is the short name used in `tether/invoke`.
#[derive(Debug, Clone, Copy)]
pub enum Sum {}
impl RequestMethod for Sum {
    const METHOD: &'static str = "sum";
    type Params = SumParams;
    type Result = SumResult;
}

/// Params of `sum`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[schemars(rename = "AdderSumParams")]
pub struct SumParams {
    /// The stored value.
    pub a: i64,
    /// The value being added.
    pub b: i64,
}

/// Result of `sum`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[schemars(rename = "AdderSumResult")]
pub struct SumResult {
    /// What the host says the sum is.
    pub result: i64,
}

/// The methods of a `counter` version with their schemas; empty for a version that does not
/// exist.
pub fn methods(version: u32) -> BTreeMap<String, MethodSchema> {
    let mut methods = BTreeMap::new();
    if version == 1 {
        methods.insert("put".to_owned(), MethodSchema::of::<Put>());
        methods.insert("get".to_owned(), MethodSchema::of::<Get>());
    }
    methods
}

/// The interface file of `counter` (SPEC.md §9.3), committed as `interfaces/counter.json`: its
/// `put` calls the host's `adder` handle (SPEC.md §9.4).
pub fn document() -> crate::InterfaceDocument {
    crate::InterfaceDocument::from_methods(NAME, VERSIONS, methods)
        .with_description(
            "Integer counters whose additions are done by the host's adder handle (SPEC.md §9.3, §9.4).",
        )
        .with_handle(ADDER)
}
