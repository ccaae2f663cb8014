//! Forwarding the plugin's `tracing` events to the host as `$/log` (SPEC.md §8.1).

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, OnceLock};

use tether_spec::{Log, LogLevel, LogParams};
use tracing::field::{Field, Visit};
use tracing::subscriber::Interest;
use tracing::{Metadata, Subscriber};
use tracing_subscriber::layer::Context;
use tracing_subscriber::Layer;

use tether_core::{CallError, Peer, WeakPeer};

/// The session's log level and the peer to send `$/log` to, shared by the layer and the plugin
/// service that answers `tether/initialize` and `$/setLogLevel`.
///
/// The peer is weak: the session holds its service, the service holds this state, and a strong
/// peer here would hold the session, a cycle that kept every ended session's memory (the
/// connection fuzz target found it: an in-process plugin leaked its whole state per session).
#[derive(Debug, Default)]
pub(crate) struct LogState {
    peer: OnceLock<WeakPeer>,
    level: AtomicU8,
}

impl LogState {
    pub(crate) fn new() -> Arc<Self> {
        let state = LogState::default();
        state.set_level(LogLevel::Info);
        Arc::new(state)
    }

    pub(crate) fn set_level(&self, level: LogLevel) {
        self.level.store(rank(level), Ordering::Relaxed);
    }

    pub(crate) fn set_peer(&self, peer: &Peer) {
        let _ = self.peer.set(peer.downgrade());
    }

    fn allows(&self, level: LogLevel) -> bool {
        rank(level) >= self.level.load(Ordering::Relaxed)
    }
}

fn rank(level: LogLevel) -> u8 {
    match level {
        LogLevel::Trace => 0,
        LogLevel::Debug => 1,
        LogLevel::Info => 2,
        LogLevel::Warn => 3,
        LogLevel::Error => 4,
    }
}

fn level_of(level: &tracing::Level) -> LogLevel {
    match *level {
        tracing::Level::TRACE => LogLevel::Trace,
        tracing::Level::DEBUG => LogLevel::Debug,
        tracing::Level::INFO => LogLevel::Info,
        tracing::Level::WARN => LogLevel::Warn,
        _ => LogLevel::Error,
    }
}

/// A `tracing-subscriber` layer that sends each event as a `$/log` notification: the level, the
/// message, the target and the other fields, and only events at or above the session's log
/// level (the `logLevel` of `tether/initialize`, changed by `$/setLogLevel`). An event of a
/// handler whose request carried trace context gets the fields `trace_id` and `span_id`.
/// [`crate::Plugin::serve`] installs it unless told not to.
#[derive(Debug, Clone)]
pub struct LogLayer {
    state: Arc<LogState>,
}

impl LogLayer {
    pub(crate) fn new(state: Arc<LogState>) -> Self {
        LogLayer { state }
    }
}

#[derive(Default)]
struct Fields {
    message: Option<String>,
    fields: serde_json::Map<String, serde_json::Value>,
}

impl Fields {
    fn put(&mut self, field: &Field, value: serde_json::Value) {
        if field.name() == "message" {
            self.message = Some(match value {
                serde_json::Value::String(s) => s,
                other => other.to_string(),
            });
        } else {
            self.fields.insert(field.name().to_owned(), value);
        }
    }
}

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.put(field, serde_json::Value::String(format!("{value:?}")));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field, value.into());
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.put(field, value.into());
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.put(field, value.into());
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.put(field, value.into());
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.put(field, value.into());
    }
}

impl<S: Subscriber> Layer<S> for LogLayer {
    fn register_callsite(&self, _: &'static Metadata<'static>) -> Interest {
        // The session's level changes at run time: ask `enabled` every time.
        Interest::sometimes()
    }

    fn enabled(&self, metadata: &Metadata<'_>, _: Context<'_, S>) -> bool {
        self.state.allows(level_of(metadata.level()))
    }

    fn on_event(&self, event: &tracing::Event<'_>, _: Context<'_, S>) {
        let level = level_of(event.metadata().level());
        if !self.state.allows(level) {
            return;
        }
        let Some(peer) = self.state.peer.get().and_then(WeakPeer::upgrade) else { return };
        let mut fields = Fields::default();
        event.record(&mut fields);
        // An event of a handler whose request carried trace context names its trace and span
        // (SPEC.md §15), so that the host can file it under its own trace.
        if let Some(span) = tether_core::trace::current() {
            fields.fields.entry("trace_id").or_insert_with(|| span.trace_id().into());
            fields.fields.entry("span_id").or_insert_with(|| span.span_id().into());
        }
        let params = LogParams {
            level,
            message: fields.message.unwrap_or_default(),
            target: Some(event.metadata().target().to_owned()),
            fields: (!fields.fields.is_empty()).then_some(fields.fields),
        };
        if let Err(CallError::RequestTooLarge { len, max }) = peer.notify::<Log>(&params) {
            // Dropped, never sent (SPEC.md §2.2). Not reported through tracing: that would
            // come back to this layer.
            let start: String = params.message.chars().take(200).collect();
            eprintln!("dropped a $/log of {len} bytes: above the session's maximum frame size of {max}; it said: {start}");
        }
    }
}
