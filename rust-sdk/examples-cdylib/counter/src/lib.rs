//! The `counter` example plugin built as a library that a host loads into its own process
//! (`tether_host::PluginProcess::library`): the same source as the `counter` example process
//! (`rust-sdk/examples/shared/counter.rs`), exported with `tether::export_plugin!`. Its `put`
//! calls back the host's `adder` handle, in-process as through a pipe.

#[path = "../../../examples/shared/counter.rs"]
mod shared;

tether::export_plugin!(shared::plugin);
