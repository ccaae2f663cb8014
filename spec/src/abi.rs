//! The in-process ABI: how a host calls a plugin built as a shared library (`cdylib`) instead of
//! running it as a child process. Only the C ABI crosses the boundary, so host and plugin need not
//! be built by the same Rust compiler (or be written in Rust at all).
//!
//! The library exports one symbol, [`ENTRY_SYMBOL`], of type [`EntryFn`]: it returns a pointer to
//! a static [`PluginTableV1`]. The host checks [`PluginTableV1::abi_version`] (the in-process
//! counterpart of the magic cookie) and [`PluginTableV1::size`] before it uses anything else.
//!
//! The bytes that cross are the byte stream of the pipe transport, unchanged: `Content-Length`
//! frames of JSON-RPC messages (SPEC.md §2). A chunk may hold part of a frame or several frames,
//! as a pipe read may; each side copies what it is given before the call returns.
//!
//! The life of an instance:
//!
//! 1. `open(host_ctx, send_to_host)` starts an instance (its own threads and runtime) and
//!    returns it, or null when it cannot start.
//! 2. The host writes its side of the stream with `send_to_plugin(instance, ptr, len)`; the
//!    plugin writes its side with `send_to_host(host_ctx, ptr, len)`, from any of its threads. A
//!    `send_to_host` with `len == 0` is the end of the plugin's stream (its stdout closing).
//! 3. `close(instance)` is the end of the host's stream (its stdin closing): the plugin finishes,
//!    and `close` returns once no code of the instance runs any more and it will never call
//!    `send_to_host` again. The instance pointer is invalid afterwards.

use std::ffi::c_void;

/// The version of the in-process ABI this crate describes. A table of another version is refused.
pub const ABI_VERSION: u32 = 1;

/// The name of the entry symbol a plugin library exports (without the trailing NUL).
pub const ENTRY_SYMBOL: &str = "tether_plugin_entry";

/// The entry symbol's type: returns the library's table, which lives as long as the library.
pub type EntryFn = extern "C" fn() -> *const PluginTableV1;

/// How the plugin writes its side of the stream: `(host_ctx, ptr, len)`; `len == 0` ends it.
pub type SendToHostFn = extern "C" fn(*mut c_void, *const u8, usize);

/// Starts an instance: `(host_ctx, send_to_host)` -> instance, or null on failure. `host_ctx` is
/// passed back on every `send_to_host` and must stay valid until `close` returns.
pub type OpenFn = extern "C" fn(*mut c_void, SendToHostFn) -> *mut c_void;

/// How the host writes its side of the stream: `(instance, ptr, len)` -> 0, or -1 when the
/// instance no longer reads (its session has ended).
pub type SendToPluginFn = extern "C" fn(*mut c_void, *const u8, usize) -> i32;

/// Ends the host's stream and waits for the instance to finish; frees the instance.
pub type CloseFn = extern "C" fn(*mut c_void);

/// Version 1 of the table a plugin library's entry symbol returns.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct PluginTableV1 {
    /// [`ABI_VERSION`] of the library's build; read first, before anything else.
    pub abi_version: u32,
    /// `size_of::<PluginTableV1>()` in the library's build: later versions only add fields.
    pub size: u32,
    /// Starts an instance.
    pub open: OpenFn,
    /// Writes the host's side of the stream.
    pub send_to_plugin: SendToPluginFn,
    /// Ends an instance.
    pub close: CloseFn,
}

/// The `size` a version 1 table carries.
pub const TABLE_V1_SIZE: u32 = std::mem::size_of::<PluginTableV1>() as u32;
