//! The `tether/` lifecycle requests (SPEC.md §4): initialize, ping, shutdown, and the
//! version negotiation rule both sides apply.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::log::LogLevel;
use crate::method::{Empty, MethodSchema, RequestMethod};

/// The core protocol version this crate implements (SPEC.md §10.1).
pub const PROTOCOL_VERSION: u32 = 1;

/// The name used for the core protocol in version-mismatch errors (SPEC.md §4.3).
pub const CORE_INTERFACE: &str = "tether";

/// A program's name and version, for logs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct PeerInfo {
    /// The program's name.
    pub name: String,
    /// Its version (free text; not a protocol version).
    pub version: String,
}

impl PeerInfo {
    /// A name and version.
    pub fn new(name: impl Into<String>, version: impl Into<String>) -> Self {
        PeerInfo { name: name.into(), version: version.into() }
    }
}

/// Optional features (SPEC.md §10.2): each side announces what it supports, and a feature is
/// used only when both announced it. Keys this crate does not know are kept in `other`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Capabilities {
    /// Raw bytes after the JSON body of a frame (SPEC.md §2.8).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attachments: Option<AttachmentsCapability>,
    /// Streams with credit-based flow control (SPEC.md §12).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub streams: Option<StreamsCapability>,
    /// `$/progress` for requests whose params carry `_meta.progressToken` (SPEC.md §14).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<crate::progress::ProgressCapability>,
    /// W3C trace context in `_meta.traceparent` (SPEC.md §15).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_context: Option<crate::meta::TraceContextCapability>,
    /// Capabilities this crate does not know, kept as they were sent.
    #[serde(flatten)]
    pub other: serde_json::Map<String, serde_json::Value>,
}

impl Capabilities {
    /// No capabilities: `{}`.
    pub fn new() -> Self {
        Capabilities::default()
    }

    /// What the host's reference SDK announces: attachments, streams with the default credit,
    /// progress and trace context.
    pub fn all() -> Self {
        Capabilities {
            attachments: Some(AttachmentsCapability::default()),
            streams: Some(StreamsCapability::default()),
            progress: Some(crate::progress::ProgressCapability::default()),
            trace_context: Some(crate::meta::TraceContextCapability::default()),
            other: serde_json::Map::new(),
        }
    }

    /// What a plugin that supports both features answers to a host that announced `host`: each
    /// capability only when the host announced it too.
    pub fn answer_to(host: &Capabilities, credit: u64) -> Self {
        Capabilities {
            attachments: host.attachments.as_ref().map(|_| AttachmentsCapability::default()),
            streams: host.streams.as_ref().map(|_| StreamsCapability { initial_credit: Some(credit) }),
            progress: host.progress.as_ref().map(|_| crate::progress::ProgressCapability::default()),
            trace_context: host
                .trace_context
                .as_ref()
                .map(|_| crate::meta::TraceContextCapability::default()),
            other: serde_json::Map::new(),
        }
    }

    /// Whether attachments are used between sides that announced `self` and `peer`.
    pub fn attachments_with(&self, peer: &Capabilities) -> bool {
        self.attachments.is_some() && peer.attachments.is_some()
    }

    /// Whether `_meta.progressToken` may be sent to a peer that announced `peer`: only the
    /// receiver's announcement matters, since a caller that sends a token reads `$/progress`.
    pub fn progress_with(&self, peer: &Capabilities) -> bool {
        self.progress.is_some() && peer.progress.is_some()
    }

    /// Whether `_meta.traceparent` is sent between sides that announced `self` and `peer`.
    pub fn trace_context_with(&self, peer: &Capabilities) -> bool {
        self.trace_context.is_some() && peer.trace_context.is_some()
    }

    /// Whether streams are used between sides that announced `self` and `peer`.
    pub fn streams_with(&self, peer: &Capabilities) -> bool {
        self.streams.is_some() && peer.streams.is_some()
    }
}

/// The `attachments` capability: `{}` (SPEC.md §10.2); members a later revision adds are ignored.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct AttachmentsCapability {}

/// The `streams` capability: `{"initialCredit": N}` (SPEC.md §10.2, §12.3).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StreamsCapability {
    /// The bytes a producer may send on each stream this side consumes before any credit;
    /// [`crate::DEFAULT_INITIAL_CREDIT`] when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initial_credit: Option<u64>,
}

impl StreamsCapability {
    /// The announced initial credit, or the default.
    pub fn initial_credit(&self) -> u64 {
        self.initial_credit.unwrap_or(crate::stream::DEFAULT_INITIAL_CREDIT)
    }
}

/// `tether/initialize` (SPEC.md §4.2): the host's first message.
#[derive(Debug, Clone, Copy)]
pub enum Initialize {}

impl RequestMethod for Initialize {
    const METHOD: &'static str = "tether/initialize";
    type Params = InitializeParams;
    type Result = InitializeResult;
}

/// Params of `tether/initialize`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct InitializeParams {
    /// The core protocol versions the host speaks.
    #[schemars(length(min = 1))]
    pub protocol_versions: Vec<u32>,
    /// For each interface the host wants, the versions it speaks.
    pub interfaces: BTreeMap<String, Vec<u32>>,
    /// The host application.
    pub host: PeerInfo,
    /// Optional features of the host.
    #[serde(default)]
    pub capabilities: Capabilities,
    /// The maximum body length in bytes for both directions (SPEC.md §2.5).
    #[schemars(range(min = 1048576))]
    pub max_frame_size: u64,
    /// The least severe `$/log` level the host wants; `info` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_level: Option<LogLevel>,
}

/// Result of `tether/initialize` (SPEC.md §4.4).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct InitializeResult {
    /// The chosen core version.
    pub protocol_version: u32,
    /// The plugin.
    pub plugin: PeerInfo,
    /// Optional features of the plugin.
    #[serde(default)]
    pub capabilities: Capabilities,
    /// Each negotiated interface.
    pub interfaces: BTreeMap<String, NegotiatedInterface>,
}

/// One negotiated interface in the initialize result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct NegotiatedInterface {
    /// The chosen version.
    pub version: u32,
    /// The methods of that version, by short name, with their schemas.
    pub methods: BTreeMap<String, MethodSchema>,
}

/// `data` of the -32001 error (SPEC.md §4.3).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct VersionMismatch {
    /// The interface without a common version; `tether` for the core protocol.
    pub interface: String,
    /// What the host speaks.
    pub host: Vec<u32>,
    /// What the plugin speaks.
    pub plugin: Vec<u32>,
}

impl VersionMismatch {
    /// The -32001 error for this mismatch, with the message SPEC.md §4.3 shows.
    pub fn to_error(&self) -> crate::ErrorObject {
        let message = format!(
            "no common version for interface {}: host speaks {:?}, plugin speaks {:?}",
            self.interface, self.host, self.plugin
        );
        crate::ErrorObject::new(crate::codes::UNSUPPORTED_VERSION, message)
            .with_data(serde_json::to_value(self).unwrap_or_default())
    }
}

/// The highest version present in both lists (SPEC.md §4.3).
pub fn highest_common(offered: &[u32], spoken: &[u32]) -> Option<u32> {
    offered.iter().copied().filter(|v| spoken.contains(v)).max()
}

/// `tether/ping` (SPEC.md §4.5), either direction.
#[derive(Debug, Clone, Copy)]
pub enum Ping {}

impl RequestMethod for Ping {
    const METHOD: &'static str = "tether/ping";
    type Params = Empty;
    type Result = Empty;
}

/// `tether/shutdown` (SPEC.md §4.6), host to plugin.
#[derive(Debug, Clone, Copy)]
pub enum Shutdown {}

impl RequestMethod for Shutdown {
    const METHOD: &'static str = "tether/shutdown";
    type Params = Empty;
    type Result = Empty;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negotiation_picks_the_highest_common_version() {
        assert_eq!(highest_common(&[1], &[1, 2]), Some(1));
        assert_eq!(highest_common(&[1, 2, 9], &[1, 2]), Some(2));
        assert_eq!(highest_common(&[9], &[1, 2]), None);
        assert_eq!(highest_common(&[], &[1]), None);
    }

    #[test]
    fn mismatch_error_is_written_as_the_spec_shows() {
        let e = VersionMismatch { interface: "kv".into(), host: vec![9], plugin: vec![1, 2] }.to_error();
        assert_eq!(
            serde_json::to_string(&e).unwrap_or_default(),
            r#"{"code":-32001,"message":"no common version for interface kv: host speaks [9], plugin speaks [1, 2]","data":{"interface":"kv","host":[9],"plugin":[1,2]}}"#
        );
    }

    #[test]
    fn capabilities_are_typed_and_keep_unknown_keys() {
        let c: Capabilities =
            serde_json::from_str(r#"{"attachments":{"later":1},"streams":{},"x-other":{"a":true}}"#)
                .unwrap_or_default();
        assert_eq!(c.attachments, Some(AttachmentsCapability {}));
        assert_eq!(c.streams.map(|s| s.initial_credit()), Some(1_048_576));
        assert_eq!(c.other.get("x-other"), Some(&serde_json::json!({"a": true})));
        assert_eq!(
            serde_json::to_string(&c).unwrap_or_default(),
            r#"{"attachments":{},"streams":{},"x-other":{"a":true}}"#
        );
        let host = Capabilities { streams: None, progress: None, trace_context: None, ..Capabilities::all() };
        let answer = Capabilities::answer_to(&host, 64);
        assert_eq!(serde_json::to_string(&answer).unwrap_or_default(), r#"{"attachments":{}}"#);
        let answer = Capabilities::answer_to(&Capabilities::all(), 64);
        assert_eq!(
            serde_json::to_string(&answer).unwrap_or_default(),
            r#"{"attachments":{},"streams":{"initialCredit":64},"progress":{},"traceContext":{}}"#
        );
        assert!(answer.progress_with(&Capabilities::all()));
        assert!(!Capabilities::new().trace_context_with(&Capabilities::all()));
        assert!(answer.streams_with(&Capabilities::all()));
        assert!(!Capabilities::new().attachments_with(&Capabilities::all()));
    }

    #[test]
    fn initialize_params_are_written_in_camel_case() {
        let p = InitializeParams {
            protocol_versions: vec![1],
            interfaces: BTreeMap::from([("kv".to_owned(), vec![1, 2])]),
            host: PeerInfo::new("kv_host", "0.1.0"),
            capabilities: Capabilities::new(),
            max_frame_size: crate::DEFAULT_MAX_FRAME_SIZE as u64,
            log_level: Some(LogLevel::Info),
        };
        assert_eq!(
            serde_json::to_string(&p).unwrap_or_default(),
            r#"{"protocolVersions":[1],"interfaces":{"kv":[1,2]},"host":{"name":"kv_host","version":"0.1.0"},"capabilities":{},"maxFrameSize":33554432,"logLevel":"info"}"#
        );
    }
}
