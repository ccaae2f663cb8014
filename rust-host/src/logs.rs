//! What a plugin says becomes `tracing` events with the plugin's name in the `plugin` field:
//! its `$/log` notifications (SPEC.md §8.1) at their own level, its stderr lines (§8.3) at the
//! level their first word names (`INFO` by default), and bytes on stdout that are not frames
//! (§2.6) as warnings showing those bytes.

use tether_spec::{LogLevel, LogParams};

/// The `tracing` target of every event about a plugin.
pub const LOG_TARGET: &str = "tether_host::plugin";

/// Emits one event at a level known only at run time.
macro_rules! event_at {
    ($level:expr, $($rest:tt)+) => {
        match $level {
            LogLevel::Trace => tracing::trace!(target: LOG_TARGET, $($rest)+),
            LogLevel::Debug => tracing::debug!(target: LOG_TARGET, $($rest)+),
            LogLevel::Info => tracing::info!(target: LOG_TARGET, $($rest)+),
            LogLevel::Warn => tracing::warn!(target: LOG_TARGET, $($rest)+),
            LogLevel::Error => tracing::error!(target: LOG_TARGET, $($rest)+),
        }
    };
}

/// A `$/log` notification.
pub(crate) fn plugin_log(plugin: &str, params: &LogParams) {
    let target = params.target.as_deref().unwrap_or("");
    match &params.fields {
        Some(fields) => {
            let fields = serde_json::Value::Object(fields.clone());
            event_at!(params.level, plugin = %plugin, source = "log", plugin_target = target, %fields, "{}", params.message)
        }
        None => {
            event_at!(params.level, plugin = %plugin, source = "log", plugin_target = target, "{}", params.message)
        }
    }
}

/// One line of the plugin's stderr.
pub(crate) fn stderr_line(plugin: &str, line: &str) {
    event_at!(stderr_level(line), plugin = %plugin, source = "stderr", "{line}");
}

/// The level a stderr line names by its first word (`ERROR ...`, `[warn] ...`, `DEBUG: ...`),
/// `info` when it names none.
pub(crate) fn stderr_level(line: &str) -> LogLevel {
    let word: String = line
        .trim_start()
        .trim_start_matches(['[', '<', '('])
        .chars()
        .take_while(|c| c.is_ascii_alphabetic())
        .take(9)
        .collect();
    match word.to_ascii_uppercase().as_str() {
        "TRACE" => LogLevel::Trace,
        "DEBUG" => LogLevel::Debug,
        "WARN" | "WARNING" => LogLevel::Warn,
        "ERROR" | "ERR" | "FATAL" | "CRITICAL" | "PANIC" => LogLevel::Error,
        _ => LogLevel::Info,
    }
}

/// Bytes on stdout that are not frames (the session resynchronised after them).
pub(crate) fn garbage(plugin: &str, shown: &str, why: &str) {
    tracing::warn!(target: LOG_TARGET, plugin = %plugin, source = "stdout", "bytes on stdout that are not a frame ({why}): {shown}");
}

/// Any other warning about what the plugin sent.
pub(crate) fn protocol_warning(plugin: &str, what: &str) {
    tracing::warn!(target: LOG_TARGET, plugin = %plugin, source = "protocol", "{what}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stderr_levels() {
        assert_eq!(stderr_level("ERROR boom"), LogLevel::Error);
        assert_eq!(stderr_level("[warn] careful"), LogLevel::Warn);
        assert_eq!(stderr_level("debug: x"), LogLevel::Debug);
        assert_eq!(stderr_level("hello"), LogLevel::Info);
        assert_eq!(stderr_level("errors happen"), LogLevel::Info);
    }
}
