//! The `kv` example plugin built as a library that a host loads into its own process
//! (`tether_host::PluginProcess::library`): the same source as the `kv` example process
//! (`rust-sdk/examples/shared/kv.rs`), exported with `tether::export_plugin!`. With
//! `TETHER_KV_DIR` set in the host's environment, values are kept in files there.

#[path = "../../../examples/shared/kv.rs"]
mod shared;

tether::export_plugin!(|| {
    let store = match std::env::var_os("TETHER_KV_DIR") {
        Some(dir) => shared::Store::Files(dir.into()),
        None => shared::Store::Memory(std::sync::Mutex::default()),
    };
    shared::plugin(store)
});
