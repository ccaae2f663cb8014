//! The in-process ABI: how a host calls a plugin built as a shared library (`cdylib`) instead of
//! running it as a child process. Only the C ABI crosses the boundary, so host and plugin need not
//! be built by the same Rust compiler (or be written in Rust at all).
//!
//! The library exports one symbol, [`ENTRY_SYMBOL`], of type [`EntryFn`]: it returns a pointer to
//! a static [`PluginTableV2`]. The host checks [`PluginTableV2::abi_version`] (the in-process
//! counterpart of the magic cookie) and [`PluginTableV2::size`] before it uses anything else, and
//! refuses a table of another version (version 1, whose calls carried the framed byte stream of
//! the pipe transport, included).
//!
//! What crosses is **one JSON-RPC message per call** ([`Message`]): the message's JSON body, as
//! it would be framed on a pipe, without the `Content-Length` header, and the attachments its
//! `{"$bytes": i}` stand for (SPEC.md §2.8; none until both sides announced attachments). The
//! messages, their order rules and everything they mean are those of the protocol (SPEC.md),
//! exactly as on a pipe: the handshake, handles, callbacks, cancellation, `$/log`, progress.
//! Each side copies what it is given before the call returns.
//!
//! The life of an instance:
//!
//! 1. `open(host_ctx, send_to_host)` starts an instance and returns it, or null when it cannot
//!    start.
//! 2. The host sends each of its messages with `send_to_plugin(instance, message)`; the plugin
//!    sends each of its own with `send_to_host(host_ctx, message)`. A `send_to_host` with a null
//!    message is the end of the plugin's messages (its stdout closing).
//! 3. `close(instance)` is the end of the host's messages (its stdin closing): the plugin
//!    finishes, and `close` returns once no code of the instance runs any more and it will never
//!    call `send_to_host` again. The instance pointer is invalid afterwards.
//!
//! **Calls may nest, on any thread.** This is what lets a call be answered on the caller's thread
//! (the fast path): inside `send_to_plugin`, the plugin may handle the message at once and call
//! `send_to_host` with its answer (or with a callback to the host, or a `$/log`) before it
//! returns; inside that `send_to_host`, the host may in turn call `send_to_plugin` (the answer to
//! the callback), and so on. Both sides also call from threads of their own (a plugin's handler
//! that waited answers from the plugin's thread). So both functions must be safe to call
//! concurrently from several threads and re-entrantly on one, and must not hold a lock across
//! the call to the other side. The host never calls `send_to_plugin` concurrently with `close`
//! or after it.

use std::ffi::c_void;

/// The version of the in-process ABI this crate describes. A table of another version is refused.
pub const ABI_VERSION: u32 = 2;

/// The name of the entry symbol a plugin library exports (without the trailing NUL).
pub const ENTRY_SYMBOL: &str = "tether_plugin_entry";

/// The entry symbol's type: returns the library's table, which lives as long as the library.
pub type EntryFn = extern "C" fn() -> *const PluginTableV2;

/// Bytes lent for the duration of one call: `len` bytes at `ptr` (`ptr` may be null when `len`
/// is 0).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct Slice {
    /// The first byte.
    pub ptr: *const u8,
    /// How many bytes.
    pub len: usize,
}

impl Slice {
    /// Lends `bytes` (valid as long as they are borrowed).
    pub fn of(bytes: &[u8]) -> Slice {
        Slice { ptr: bytes.as_ptr(), len: bytes.len() }
    }
}

/// How many attachments' slices [`lend`] builds on the stack; more take a vector.
const INLINE_ATTACHMENTS: usize = 4;

/// Runs `f` with `body` and `attachments` lent as one [`Message`] (what each side passes to the
/// other's function). The slices of a few attachments are built on the stack: a message costs
/// no allocation.
pub fn lend<R>(body: &[u8], attachments: &[bytes::Bytes], f: impl FnOnce(&Message) -> R) -> R {
    let mut inline = [Slice::of(&[]); INLINE_ATTACHMENTS];
    let spilled: Vec<Slice>;
    let slices: &[Slice] = if attachments.len() <= INLINE_ATTACHMENTS {
        for (slice, attachment) in inline.iter_mut().zip(attachments) {
            *slice = Slice::of(attachment);
        }
        &inline[..attachments.len()]
    } else {
        spilled = attachments.iter().map(|a| Slice::of(a)).collect();
        &spilled
    };
    let message = Message {
        body: Slice::of(body),
        attachments: if slices.is_empty() { std::ptr::null() } else { slices.as_ptr() },
        attachment_count: slices.len(),
    };
    f(&message)
}

/// One JSON-RPC message, lent for the duration of one call.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct Message {
    /// The message's JSON body (UTF-8, one JSON-RPC request, notification or response).
    pub body: Slice,
    /// The attachments, in order: `attachment_count` slices at `attachments` (null when 0).
    pub attachments: *const Slice,
    /// How many attachments.
    pub attachment_count: usize,
}

/// How the plugin sends a message: `(host_ctx, message)`; a null `message` ends its messages.
pub type SendToHostFn = extern "C" fn(*mut c_void, *const Message);

/// Starts an instance: `(host_ctx, send_to_host)` -> instance, or null on failure. `host_ctx` is
/// passed back on every `send_to_host` and must stay valid until `close` returns.
pub type OpenFn = extern "C" fn(*mut c_void, SendToHostFn) -> *mut c_void;

/// How the host sends a message: `(instance, message)` -> 0, or -1 when the instance no longer
/// takes messages (its session has ended) or the message is malformed (a null pointer).
pub type SendToPluginFn = extern "C" fn(*mut c_void, *const Message) -> i32;

/// Ends the host's messages and waits for the instance to finish; frees the instance.
pub type CloseFn = extern "C" fn(*mut c_void);

/// Version 2 of the table a plugin library's entry symbol returns.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct PluginTableV2 {
    /// [`ABI_VERSION`] of the library's build; read first, before anything else.
    pub abi_version: u32,
    /// `size_of::<PluginTableV2>()` in the library's build: later versions only add fields.
    pub size: u32,
    /// Starts an instance.
    pub open: OpenFn,
    /// Sends one of the host's messages.
    pub send_to_plugin: SendToPluginFn,
    /// Ends an instance.
    pub close: CloseFn,
}

/// The `size` a version 2 table carries.
pub const TABLE_V2_SIZE: u32 = std::mem::size_of::<PluginTableV2>() as u32;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lent_message_points_at_its_body_and_counts_its_attachments() {
        let body = br#"{"jsonrpc":"2.0","method":"$/x","params":{}}"#;
        for count in [0, 1, INLINE_ATTACHMENTS, INLINE_ATTACHMENTS + 3] {
            let attachments: Vec<bytes::Bytes> =
                (0..count).map(|i| bytes::Bytes::from(vec![i as u8; i])).collect();
            lend(body, &attachments, |message| {
                assert_eq!((message.body.ptr, message.body.len), (body.as_ptr(), body.len()));
                assert_eq!(message.attachment_count, count);
                assert_eq!(message.attachments.is_null(), count == 0, "{count} attachments");
            });
        }
    }
}
