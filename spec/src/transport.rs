//! Transports (SPEC.md §13): which descriptors carry the frames, as announced to the plugin in
//! the `TETHER_TRANSPORT` environment variable. Parsing only; opening the descriptors is the
//! business of each SDK, host and judge.

use std::fmt;

/// The environment variable that announces the transport to the plugin (SPEC.md §13.2).
pub const TRANSPORT_ENV: &str = "TETHER_TRANSPORT";

/// The descriptor on which the reference host puts the plugin's read end (SPEC.md §13.2).
pub const REFERENCE_READ_FD: i32 = 3;
/// The descriptor on which the reference host puts the plugin's write end (SPEC.md §13.2).
pub const REFERENCE_WRITE_FD: i32 = 4;

/// Where the frames travel, from the plugin's point of view.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Transport {
    /// Frames on stdin and stdout (SPEC.md §1.2): the default, and what an absent or empty
    /// variable means.
    #[default]
    Stdio,
    /// Frames on two inherited descriptors; stdin, stdout and stderr stay what the host gave
    /// (a terminal, say).
    Fds {
        /// The descriptor the plugin reads frames from.
        read: i32,
        /// The descriptor the plugin writes frames to.
        write: i32,
    },
}

/// A value of `TETHER_TRANSPORT` that is not in the grammar of SPEC.md §13.2.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown transport {value:?} in {TRANSPORT_ENV}: {reason} (expected `stdio` or `fds:<read fd>,<write fd>`, two distinct descriptors of 3 or more)")]
pub struct UnknownTransport {
    /// The value as found in the environment.
    pub value: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

impl Transport {
    /// The transport of the reference host: `fds:3,4`.
    pub const REFERENCE_FDS: Transport =
        Transport::Fds { read: REFERENCE_READ_FD, write: REFERENCE_WRITE_FD };

    /// Parses the variable as read from the environment: `None` (unset) and `""` are stdio.
    pub fn from_env_value(value: Option<&str>) -> Result<Transport, UnknownTransport> {
        let value = value.unwrap_or("");
        let unknown = |reason| UnknownTransport { value: value.to_owned(), reason };
        if value.is_empty() || value == "stdio" {
            return Ok(Transport::Stdio);
        }
        let Some(fds) = value.strip_prefix("fds:") else { return Err(unknown("not a known transport name")) };
        let Some((read, write)) = fds.split_once(',') else {
            return Err(unknown("two descriptors are needed"));
        };
        let (Some(read), Some(write)) = (parse_fd(read), parse_fd(write)) else {
            return Err(unknown("a descriptor is not a decimal number without sign or leading zeros"));
        };
        if read < 3 || write < 3 {
            return Err(unknown("descriptors 0, 1 and 2 are stdin, stdout and stderr"));
        }
        if read == write {
            return Err(unknown("the two descriptors are the same"));
        }
        Ok(Transport::Fds { read, write })
    }

    /// The value to put in the plugin's environment (`None` for stdio: the host removes the
    /// variable rather than set it, SPEC.md §13.2).
    pub fn env_value(&self) -> Option<String> {
        match self {
            Transport::Stdio => None,
            Transport::Fds { .. } => Some(self.to_string()),
        }
    }
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Transport::Stdio => f.write_str("stdio"),
            Transport::Fds { read, write } => write!(f, "fds:{read},{write}"),
        }
    }
}

/// A decimal descriptor number: ASCII digits, no sign, no leading zero, fits an `i32`.
fn parse_fd(text: &str) -> Option<i32> {
    let digits_only = !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit());
    if !digits_only || (text.len() > 1 && text.starts_with('0')) {
        return None;
    }
    text.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_grammar_of_section_13_2_parses() {
        assert_eq!(Transport::from_env_value(None), Ok(Transport::Stdio));
        assert_eq!(Transport::from_env_value(Some("")), Ok(Transport::Stdio));
        assert_eq!(Transport::from_env_value(Some("stdio")), Ok(Transport::Stdio));
        assert_eq!(Transport::from_env_value(Some("fds:3,4")), Ok(Transport::REFERENCE_FDS));
        assert_eq!(Transport::from_env_value(Some("fds:10,7")), Ok(Transport::Fds { read: 10, write: 7 }));
        assert_eq!(Transport::REFERENCE_FDS.to_string(), "fds:3,4");
        assert_eq!(Transport::REFERENCE_FDS.env_value().as_deref(), Some("fds:3,4"));
        assert_eq!(Transport::Stdio.env_value(), None);
    }

    #[test]
    fn values_outside_the_grammar_are_refused_with_a_reason() {
        for bad in [
            "socket",
            "fds",
            "fds:3",
            "fds:3,3",
            "fds:1,4",
            "fds:3,-4",
            "fds:03,4",
            "fds: 3,4",
            "FDS:3,4",
            "fds:3,4,5",
            "fds:3,99999999999",
        ] {
            let error = Transport::from_env_value(Some(bad)).err();
            assert!(error.as_ref().is_some_and(|e| e.value == bad), "{bad:?} was accepted");
        }
        let message = Transport::from_env_value(Some("socket")).err().map(|e| e.to_string());
        assert_eq!(
            message.as_deref(),
            Some("unknown transport \"socket\" in TETHER_TRANSPORT: not a known transport name (expected `stdio` or `fds:<read fd>,<write fd>`, two distinct descriptors of 3 or more)")
        );
    }
}
