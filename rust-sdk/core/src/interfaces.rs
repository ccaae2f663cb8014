//! The reference interfaces of SPEC.md §9 declared once with `#[tether::interface]`, so that the
//! example plugins, hosts and the benchmark share them: implement [`Kv`], [`Counter`], [`Adder`]
//! or [`Blob`] to serve one, call one with [`KvClient`], [`CounterClient`], [`AdderClient`] or
//! [`BlobClient`].
//!
//! The params and results are the wire types of [`tether_spec::interfaces`]; those of `blob`
//! that carry a stream are in [`blob`], with the stream as a [`crate::stream::ReadStream`].

pub mod blob;

use tether_spec::interfaces::{counter, kv};
use tether_spec::Empty;

use crate::{Error, RequestContext};

/// The key/value store of SPEC.md §9.1 and §9.2.
#[crate::interface(name = "kv", versions = [1, 2])]
pub trait Kv {
    /// `kv.put`: stores a value, replacing any previous one. The context is there to report
    /// progress on a large value ([`RequestContext::progress`], SPEC.md §9.1, §14).
    async fn put(&self, params: kv::PutParams, cx: RequestContext) -> Result<Empty, Error>;
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

/// Named byte strings moved by streams, SPEC.md §9.5.
#[crate::interface(name = "blob", versions = [1])]
pub trait Blob {
    /// `blob.upload`: reads `data` to its end and stores it under `name`.
    async fn upload(&self, params: blob::UploadParams) -> Result<blob::Digest, Error>;
    /// `blob.download`: a stream of the bytes stored under `name`; error 1002
    /// ([`blob::blob_not_found`]) when there are none.
    async fn download(&self, params: blob::NameParams) -> Result<blob::DownloadResult, Error>;
    /// `blob.count`: reads `data` to its end without storing it.
    async fn count(&self, params: blob::CountParams) -> Result<blob::Digest, Error>;
    /// `blob.produce`: a stream of `size` bytes, byte `i` being `i mod 251`.
    async fn produce(&self, params: blob::ProduceParams) -> Result<blob::ProduceResult, Error>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blob_declares_the_schemas_of_the_spec() {
        let server = BlobServer::new(Unused);
        let ours = crate::InterfaceServer::methods(&server, 1);
        let spec = tether_spec::interfaces::blob::methods(1);
        assert_eq!(
            serde_json::to_value(&ours).unwrap_or_default(),
            serde_json::to_value(&spec).unwrap_or_default()
        );
    }

    #[test]
    fn the_typed_clients_give_the_committed_reference_interface_files() {
        use tether_spec::interfaces as spec;
        // The spec's documents add error codes and handles, which a declaration does not know.
        let methods_of = |d: tether_spec::InterfaceDocument| {
            let versions: Vec<_> = d.versions.into_iter().map(|v| (v.version, v.methods)).collect();
            serde_json::to_value(&versions).unwrap_or_default()
        };
        assert_eq!(methods_of(KvClient::interface_document()), methods_of(spec::kv::document()));
        assert_eq!(methods_of(CounterClient::interface_document()), methods_of(spec::counter::document()));
        assert_eq!(methods_of(BlobClient::interface_document()), methods_of(spec::blob::document()));
        let server = BlobServer::new(Unused);
        assert_eq!(crate::InterfaceServer::interface_document(&server), BlobClient::interface_document());
        assert_eq!(KvClient::interface_document().version_numbers(), vec![1, 2]);
        assert_eq!(KvClient::interface_document().version(1).map(|v| v.methods.len()), Some(2));
    }

    struct Unused;
    impl Blob for Unused {
        async fn upload(&self, _: blob::UploadParams) -> Result<blob::Digest, Error> {
            Err(Error::internal("unused"))
        }
        async fn download(&self, _: blob::NameParams) -> Result<blob::DownloadResult, Error> {
            Err(Error::internal("unused"))
        }
        async fn count(&self, _: blob::CountParams) -> Result<blob::Digest, Error> {
            Err(Error::internal("unused"))
        }
        async fn produce(&self, _: blob::ProduceParams) -> Result<blob::ProduceResult, Error> {
            Err(Error::internal("unused"))
        }
    }
}
