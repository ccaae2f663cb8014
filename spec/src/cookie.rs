//! The magic cookie (SPEC.md §1.3, §1.4): an environment variable that tells a plugin it was
//! started by a host. A usability device, not a security measure.

/// A cookie: the environment variable's name and the value a plugin expects.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MagicCookie {
    /// The variable's name.
    pub key: String,
    /// Its expected value.
    pub value: String,
}

impl MagicCookie {
    /// A cookie with the given name and value.
    pub fn new(key: impl Into<String>, value: impl Into<String>) -> Self {
        MagicCookie { key: key.into(), value: value.into() }
    }

    /// The cookie of the reference interfaces, used by every example, the conformance binary's
    /// defaults and the benchmark.
    pub fn reference() -> Self {
        MagicCookie::new(REFERENCE_COOKIE_KEY, REFERENCE_COOKIE_VALUE)
    }

    /// Whether `value`, as read from the environment, is the expected one.
    pub fn matches(&self, value: Option<&str>) -> bool {
        value == Some(self.value.as_str())
    }

    /// Parses `KEY=VALUE`.
    pub fn parse(text: &str) -> Option<Self> {
        let (key, value) = text.split_once('=')?;
        (!key.is_empty()).then(|| MagicCookie::new(key, value))
    }
}

/// The reference cookie's variable name (SPEC.md §1.4).
pub const REFERENCE_COOKIE_KEY: &str = "TETHER_MAGIC_COOKIE";
/// The reference cookie's value (SPEC.md §1.4).
pub const REFERENCE_COOKIE_VALUE: &str = "7c1e4b9a-tether-reference-plugin";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_matches() {
        let c = MagicCookie::parse("A=b=c");
        assert_eq!(c, Some(MagicCookie::new("A", "b=c")));
        assert!(MagicCookie::parse("=x").is_none());
        assert!(MagicCookie::reference().matches(Some(REFERENCE_COOKIE_VALUE)));
        assert!(!MagicCookie::reference().matches(None));
    }
}
