//! Logs (SPEC.md §8): `$/log` and `$/setLogLevel`.

use std::fmt;
use std::str::FromStr;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::method::NotificationMethod;

/// A log level, from least to most severe.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    /// Very detailed tracing.
    Trace,
    /// Debugging detail.
    Debug,
    /// Normal operation (the default session level).
    #[default]
    Info,
    /// Something unexpected that the program survived.
    Warn,
    /// A failure.
    Error,
}

impl LogLevel {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Trace => "trace",
            LogLevel::Debug => "debug",
            LogLevel::Info => "info",
            LogLevel::Warn => "warn",
            LogLevel::Error => "error",
        }
    }
}

impl fmt::Display for LogLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for LogLevel {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s.to_ascii_lowercase().as_str() {
            "trace" => LogLevel::Trace,
            "debug" => LogLevel::Debug,
            "info" => LogLevel::Info,
            "warn" | "warning" => LogLevel::Warn,
            "error" => LogLevel::Error,
            _ => return Err(format!("unknown log level {s:?}: use trace, debug, info, warn or error")),
        })
    }
}

/// `$/log` (SPEC.md §8.1), plugin to host.
#[derive(Debug, Clone, Copy)]
pub enum Log {}

impl NotificationMethod for Log {
    const METHOD: &'static str = "$/log";
    type Params = LogParams;
}

/// Params of `$/log`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct LogParams {
    /// The event's level.
    pub level: LogLevel,
    /// The message.
    pub message: String,
    /// Where it comes from (a module or logger name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// Structured key/value data.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fields: Option<serde_json::Map<String, serde_json::Value>>,
}

/// `$/setLogLevel` (SPEC.md §8.2), host to plugin.
#[derive(Debug, Clone, Copy)]
pub enum SetLogLevel {}

impl NotificationMethod for SetLogLevel {
    const METHOD: &'static str = "$/setLogLevel";
    type Params = SetLogLevelParams;
}

/// Params of `$/setLogLevel`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SetLogLevelParams {
    /// The least severe level to send from now on.
    pub level: LogLevel,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_order_and_parse() {
        assert!(LogLevel::Trace < LogLevel::Debug && LogLevel::Warn < LogLevel::Error);
        assert_eq!("WARN".parse::<LogLevel>(), Ok(LogLevel::Warn));
        assert!("loud".parse::<LogLevel>().is_err());
        let p = LogParams { level: LogLevel::Debug, message: "put".into(), target: None, fields: None };
        assert_eq!(serde_json::to_string(&p).unwrap_or_default(), r#"{"level":"debug","message":"put"}"#);
    }
}
