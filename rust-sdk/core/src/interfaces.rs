//! The reference interfaces of SPEC.md §9 declared once with `#[tether::interface]`, so that the
//! example plugins, hosts and the benchmark share them: implement [`Kv`], [`Counter`] or [`Adder`]
//! to serve one, call one with [`KvClient`], [`CounterClient`] or [`AdderClient`].
//!
//! The params and results are the wire types of [`tether_spec::interfaces`].

use tether_spec::interfaces::{counter, kv};
use tether_spec::Empty;

use crate::{Error, RequestContext};

/// The key/value store of SPEC.md §9.1 and §9.2.
#[crate::interface(name = "kv", versions = [1, 2])]
pub trait Kv {
    /// `kv.put`: stores a value, replacing any previous one.
    async fn put(&self, params: kv::PutParams) -> Result<Empty, Error>;
    /// `kv.get`: reads a value; error 1001 ([`kv::key_not_found`]) for a missing key.
    async fn get(&self, params: kv::KeyParams) -> Result<kv::GetResult, Error>;
    /// `kv.delete` (version 2): removes a key and says whether it held a value.
    #[since(2)]
    async fn delete(&self, params: kv::KeyParams) -> Result<kv::DeleteResult, Error>;
}

/// The counter of SPEC.md §9.3, which calls back into the host's [`Adder`].
#[crate::interface(name = "counter", versions = [1])]
pub trait Counter {
    /// `counter.put`: adds `value` to `key` through the host's `adder` handle.
    async fn put(&self, params: counter::PutParams, cx: RequestContext) -> Result<Empty, Error>;
    /// `counter.get`: the stored value, 0 for a key never put.
    async fn get(&self, params: counter::GetParams) -> Result<counter::GetResult, Error>;
}

/// The adder a host serves as a handle (SPEC.md §9.4).
#[crate::interface(name = "adder", versions = [1])]
pub trait Adder {
    /// `sum`: what the host says `a + b` is.
    async fn sum(&self, params: counter::SumParams) -> Result<counter::SumResult, Error>;
}
