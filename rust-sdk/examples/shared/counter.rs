//! The `counter` reference plugin (SPEC.md §9.3), shared by the `counter` example process
//! (`rust-sdk/examples/counter.rs`) and the `counter` plugin library
//! (`rust-sdk/examples-cdylib/counter/`): one source, built both ways.

use std::collections::HashMap;

use std::sync::{Mutex, PoisonError};
use tether::interfaces::{AdderClient, Counter, CounterServer};
use tether::spec::interfaces::counter::{GetParams, GetResult, PutParams, SumParams};
use tether::spec::Empty;
use tether::{Error, RequestContext};

#[derive(Default)]
pub(crate) struct Counters(Mutex<HashMap<String, i64>>);

impl Counters {
    async fn value(&self, key: &str) -> i64 {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).get(key).copied().unwrap_or(0)
    }
}

impl Counter for Counters {
    async fn put(&self, p: PutParams, cx: RequestContext) -> Result<Empty, Error> {
        let a = self.value(&p.key).await;
        // No lock is held while the host computes the sum: gets and other puts go on meanwhile.
        let sum = cx.client::<AdderClient>(p.adder).sum(&SumParams { a, b: p.value }).await?;
        self.0.lock().unwrap_or_else(PoisonError::into_inner).insert(p.key, sum.result);
        Ok(Empty {})
    }

    async fn get(&self, p: GetParams) -> Result<GetResult, Error> {
        Ok(GetResult { value: self.value(&p.key).await })
    }
}

/// The plugin: `counter` over counters kept in memory.
pub(crate) fn plugin() -> tether::Plugin {
    tether::Plugin::new("counter-rust", env!("CARGO_PKG_VERSION"))
        .interface(CounterServer::new(Counters::default()))
}
