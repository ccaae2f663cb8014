//! The object `tether call --handle FIELD=INTERFACE` serves to the plugin as a handle (SPEC.md
//! §6): it answers `sum` (`{"a", "b"}` to `{"result": a + b}`, what `counter.put` invokes on its
//! `adder`) and `echo` (its params back), and refuses every other method with a clear error.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::value::RawValue;
use tether_host::spec::{ErrorObject, MethodSchema};
use tether_host::{Handled, InterfaceServer, RequestContext};

use crate::shown::Shown;

/// A built-in handle object, named after the interface the plugin expects.
pub(crate) struct BuiltinHandle {
    interface: String,
}

impl BuiltinHandle {
    pub(crate) fn new(interface: impl Into<String>) -> Self {
        BuiltinHandle { interface: interface.into() }
    }
}

#[derive(Deserialize)]
struct SumParams {
    a: i64,
    b: i64,
}

impl InterfaceServer for BuiltinHandle {
    fn name(&self) -> &str {
        &self.interface
    }

    fn versions(&self) -> &[u32] {
        &[1]
    }

    fn methods(&self, _version: u32) -> BTreeMap<String, MethodSchema> {
        BTreeMap::new()
    }

    fn dispatch(&self, _version: u32, method: &str, params: Box<RawValue>, cx: RequestContext) -> Handled {
        match method {
            "sum" => match cx.decode::<SumParams>(&params) {
                Ok(p) => match p.a.checked_add(p.b) {
                    Some(result) => Handled::ok(&serde_json::json!({ "result": result })),
                    None => Handled::err(ErrorObject::invalid_params(format!("{} + {} overflows", p.a, p.b))),
                },
                Err(e) => Handled::err(e),
            },
            "echo" => match cx.decode::<Shown>(&params) {
                Ok(Shown(value)) => Handled::ok(&value),
                Err(e) => Handled::err(e),
            },
            other => Handled::err(ErrorObject::method_not_found(
                other,
                format!("the handle that tether call serves as {} answers only sum and echo", self.interface),
            )),
        }
    }
}
