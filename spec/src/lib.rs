//! The Tether protocol's wire types: everything two peers exchange, and nothing that does I/O
//! beyond framing.
//!
//! `SPEC.md` beside this crate is the normative text; this crate is its Rust form, and the JSON
//! Schema in `schema/` is generated from these types. Host and SDK crates convert to and from
//! these types; the conformance judge uses them with the codec in strict mode.
//!
//! - the JSON-RPC envelope ([`Request`], [`Notification`], [`Response`]) and
//!   [`parse_message`], which also says how to answer a body that is not a message;
//! - the `Content-Length` framing as a tokio-util codec ([`FrameCodec`], [`encode_frame`]), with
//!   attachments (SPEC.md §2.8: [`Frame::Attached`], [`OutgoingFrame`]);
//! - [`format`](mod@format): decimal numbers, frame headers and escaped bytes for reports;
//! - typed markers, one per method ([`RequestMethod`], [`NotificationMethod`]) for the
//!   lifecycle, the broker, cancellation, logs and the reference interfaces;
//! - [`codes`]: every error code;
//! - [`schema`]: the JSON Schema of every message, generated from these types;
//! - [`InterfaceDocument`]: an interface file (an interface's versions, methods, schemas, error
//!   codes and handles), with the reference interfaces' documents in [`interfaces`];
//! - since 1.1: typed [`Capabilities`] (`attachments`, `streams`), [`Bytes`] as attachments
//!   ([`with_attachment_sink`], [`with_attachment_source`]), streams ([`StreamRef`] and the
//!   `$/stream.*` markers) and the `blob` reference interface ([`interfaces::blob`]);
//! - since 1.2: the [`Transport`] a plugin is told to use in [`TRANSPORT_ENV`] (SPEC.md §13).
//! - since 1.2 too: progress and trace context (SPEC.md §14, §15): [`Meta`] (`params._meta`), the
//!   [`Progress`] marker (`$/progress`) and [`TraceParent`].
//! - [`abi`]: the C ABI of a plugin built as a shared library and loaded into the host.
//!
//! # Attachments in a connection (SPEC.md §2.8)
//!
//! What a connection does, once it knows that both sides announced `attachments`
//! ([`Capabilities::attachments_with`]; the host after it read the initialize answer, the plugin
//! after it wrote its own):
//!
//! 1. **Reading.** Call [`FrameCodec::set_attachments`]`(true)`. The codec then yields
//!    [`Frame::Attached`] (the JSON body and the attachments, slices of the read buffer, not
//!    copies) besides [`Frame::Message`], and [`Frame::BadAttachments`] for a header it must refuse,
//!    which is answered like a body that is not JSON (-32700, `"id": null`). Keep a frame's
//!    attachments with its raw params or result, and deserialize those inside
//!    [`with_attachment_source`] with them, on whatever thread the typed handler or caller runs:
//!    a [`Bytes`] then shares the attachment's buffer, and a reference to a missing attachment is
//!    a deserialization error (invalid params for a request). Deserialize everything else,
//!    including frames before negotiation, outside any source.
//! 2. **Writing.** Serialize the params or result that go into one frame inside
//!    [`with_attachment_sink`] with one `Vec` per frame: every [`Bytes`] is pushed onto it
//!    (a reference count, not a copy) and written as `{"$bytes": i}`. Build the frame with
//!    [`OutgoingFrame::new`] (header, JSON and attachments as separate chunks for a vectored
//!    write) or [`encode_attached_frame_head`] followed by the attachments in order; check
//!    [`frame_len`] against the maximum frame size first. Before negotiation, serialize outside a
//!    sink and [`Bytes`] is base64.
//!
//! ```
//! use tether_spec::{parse_message, encode_frame, FrameCodec, Frame, Message};
//! use tether_spec::interfaces::kv;
//! use tether_spec::RequestMethod;
//! use tokio_util::codec::Decoder;
//!
//! // A host writes a `kv.get` request as a frame...
//! let params = serde_json::value::to_raw_value(&kv::KeyParams { key: "hello".into() }).unwrap();
//! let request = Message::Request(tether_spec::Request::new(1.into(), kv::Get::METHOD, params));
//! let mut wire = bytes::BytesMut::new();
//! encode_frame(&request.to_body(), &mut wire);
//! assert_eq!(&wire[..], &b"Content-Length: 67\r\n\r\n{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"kv.get\",\"params\":{\"key\":\"hello\"}}"[..]);
//!
//! // ...and a plugin reads it back.
//! let Some(Frame::Message(body)) = FrameCodec::new().decode(&mut wire).unwrap() else { panic!() };
//! let Ok(Message::Request(req)) = parse_message(&body) else { panic!() };
//! let params: kv::KeyParams = serde_json::from_str(req.params.get()).unwrap();
//! assert_eq!(params.key, "hello");
//! ```

pub mod abi;
mod broker;
mod bytes;
mod cancel;
mod codec;
mod cookie;
mod error;
pub mod format;
mod interface_doc;
pub mod interfaces;
mod lifecycle;
mod log;
mod message;
mod meta;
mod method;
mod progress;
mod raw_json;
pub mod schema;
mod stream;
mod transport;

pub use crate::broker::{HandleParams, HandleRef, Invoke, InvokeParams, Release, Retain};
pub use crate::bytes::{
    with_attachment_sink, with_attachment_source, with_owned_attachment_source, Bytes, BYTES_REF,
};
pub use crate::cancel::{CancelParams, CancelRequest};
pub use crate::codec::{
    encode_attached_frame_head, encode_frame, frame_len, AttachedFrame, AttachmentError, AttributedKind,
    Attribution, Frame, FrameCodec, FrameCodecBuilder, FrameError, GarbageReason, Mode, OutgoingFrame,
    Oversized, DEFAULT_MAX_FRAME_SIZE, MAX_HEADER_BLOCK, MIN_MAX_FRAME_SIZE, OVERSIZED_PREFIX, SHOWN_BYTES,
};
pub use crate::cookie::{MagicCookie, REFERENCE_COOKIE_KEY, REFERENCE_COOKIE_VALUE};
pub use crate::error::{codes, ErrorObject};
pub use crate::interface_doc::{
    InterfaceDocument, InterfaceDocumentError, InterfaceError, InterfaceVersion, INTERFACE_SCHEMA_ID,
};
pub use crate::lifecycle::{
    highest_common, AttachmentsCapability, Capabilities, Initialize, InitializeParams, InitializeResult,
    NegotiatedInterface, PeerInfo, Ping, Shutdown, StreamsCapability, VersionMismatch, CORE_INTERFACE,
    PROTOCOL_VERSION,
};
pub use crate::log::{Log, LogLevel, LogParams, SetLogLevel, SetLogLevelParams};
pub use crate::message::{
    parse_message, EnvelopeError, Id, Message, Notification, Outcome, Request, Response, TwoPointZero,
};
pub use crate::meta::{Meta, TraceContextCapability, TraceParent, TraceParentError, META};
pub use crate::method::{
    schema_value, short_name, split_method, Empty, MethodSchema, NotificationMethod, RequestMethod,
};
pub use crate::progress::{Progress, ProgressCapability, ProgressParams, ProgressToken};
pub use crate::raw_json::to_raw_value;
pub use crate::stream::{
    stream_error, Opener, StreamAbort, StreamAbortParams, StreamCredit, StreamCreditParams, StreamData,
    StreamDataParams, StreamEnd, StreamMode, StreamParams, StreamRef, DEFAULT_INITIAL_CREDIT, MAX_CHUNK,
};
pub use crate::transport::{
    Transport, UnknownTransport, REFERENCE_READ_FD, REFERENCE_WRITE_FD, TRANSPORT_ENV,
};
