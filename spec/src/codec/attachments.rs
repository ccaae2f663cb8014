//! Reading the `Tether-Attachments` header (SPEC.md §2.8): the list of attachment lengths, checked
//! against the frame's total before anything is reserved, and the split of a frame into its JSON
//! body and its attachments without copying.

use std::fmt;

use super::Frame;

/// The header's name, as a writer spells it.
pub(crate) const HEADER_NAME: &[u8] = b"Tether-Attachments";

/// Why a `Tether-Attachments` header was refused; the frame is then a body that is not valid JSON
/// (SPEC.md §2.8.5), answered with -32700.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttachmentError {
    /// The value is not a comma-separated list of decimal lengths (no sign, no leading zeros,
    /// no spaces, at least one).
    Malformed(String),
    /// The header appears more than once.
    Duplicate,
    /// The lengths add up to more than `Content-Length`.
    SumTooLarge {
        /// The sum of the listed lengths (saturated at `u64::MAX`).
        sum: u64,
        /// The frame's `Content-Length`.
        total: u64,
    },
}

impl fmt::Display for AttachmentError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AttachmentError::Malformed(v) => {
                write!(f, "a Tether-Attachments header that is not a list of byte counts: {v:?}")
            }
            AttachmentError::Duplicate => f.write_str("two Tether-Attachments headers"),
            AttachmentError::SumTooLarge { sum, total } => write!(
                f,
                "attachments of {sum} bytes in all, more than the frame's Content-Length of {total}"
            ),
        }
    }
}

/// A frame with attachments: the JSON body and the raw bytes after it, all slices of the buffer
/// the frame was read into (no copies).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttachedFrame {
    /// The JSON body (the first `T - sum` bytes).
    pub body: bytes::Bytes,
    /// Attachment `i` is what `{"$bytes": i}` in the body stands for.
    pub attachments: Vec<bytes::Bytes>,
}

/// Parses a header value: lengths in ASCII decimal without sign or leading zeros, separated by
/// single commas, at least one, adding up to at most `total`. The sum is checked with every
/// length, so no declared length is ever trusted beyond `total` (which the caller bounded by the
/// maximum frame size before calling).
pub(crate) fn parse_list(value: &[u8], total: u64) -> Result<Vec<usize>, AttachmentError> {
    let malformed = || AttachmentError::Malformed(String::from_utf8_lossy(value).into_owned());
    let mut lens = Vec::new();
    let mut sum: u64 = 0;
    for item in value.split(|&b| b == b',') {
        let canonical = !item.is_empty()
            && item.iter().all(u8::is_ascii_digit)
            && (item.len() == 1 || item[0] != b'0')
            && item.len() <= 20;
        if !canonical {
            return Err(malformed());
        }
        let n = item.iter().try_fold(0u64, |n, &b| n.checked_mul(10)?.checked_add(u64::from(b - b'0')));
        let n = n.ok_or_else(malformed)?;
        sum = sum.saturating_add(n);
        if sum > total {
            return Err(AttachmentError::SumTooLarge { sum, total });
        }
        // `n <= sum <= total`, and the caller made sure `total` fits in memory's bound.
        lens.push(usize::try_from(n).map_err(|_| malformed())?);
    }
    Ok(lens)
}

/// Cuts a complete frame of `T` bytes into its body and attachments; `lens` came from
/// [`parse_list`] with this `T`, so the cuts are in bounds.
pub(crate) fn split(mut frame: bytes::Bytes, lens: &[usize]) -> Frame {
    let attached: usize = lens.iter().sum();
    let body = frame.split_to(frame.len().saturating_sub(attached));
    let attachments = lens.iter().map(|&n| frame.split_to(n.min(frame.len()))).collect();
    Frame::Attached(AttachedFrame { body, attachments })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_parse_in_the_canonical_form_only() {
        assert_eq!(parse_list(b"0", 0), Ok(vec![0]));
        assert_eq!(parse_list(b"5,0,12", 20), Ok(vec![5, 0, 12]));
        for bad in [&b""[..], b",", b"1,", b",1", b"1,,2", b"01", b"+1", b"-1", b" 1", b"1 ,2", b"a", b"1;2"]
        {
            assert!(matches!(parse_list(bad, 100), Err(AttachmentError::Malformed(_))), "{bad:?}");
        }
    }

    #[test]
    fn the_sum_is_bounded_by_the_total() {
        assert_eq!(parse_list(b"3,4", 6), Err(AttachmentError::SumTooLarge { sum: 7, total: 6 }));
        assert!(matches!(
            parse_list(b"18446744073709551615,18446744073709551615", 10),
            Err(AttachmentError::SumTooLarge { total: 10, .. })
        ));
        assert!(matches!(parse_list(b"99999999999999999999999", 10), Err(AttachmentError::Malformed(_))));
    }
}
