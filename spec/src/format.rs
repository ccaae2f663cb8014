//! Formatting helpers of the framing layer: decimal numbers without allocating, frame headers in
//! the exact writer form (SPEC.md §2.2, §2.8) and escaped, shortened bytes for reports.
//!
//! Writers call these on every frame, so none of them allocates beyond growing the output.

use bytes::BufMut;

/// The fixed start of every frame a conforming writer emits.
pub(crate) const WRITER_PREFIX: &[u8] = b"Content-Length: ";
/// The header line a writer emits right after `Content-Length` when a frame has attachments.
pub(crate) const ATTACHMENTS_PREFIX: &[u8] = b"\r\nTether-Attachments: ";

/// Appends `n` in decimal (no sign, no leading zeros).
pub fn put_uint(dst: &mut impl BufMut, n: u64) {
    dst.put_slice(itoa::Buffer::new().format(n).as_bytes());
}

/// Appends `n` in decimal, with a `-` when it is negative.
pub fn put_int(dst: &mut impl BufMut, n: i64) {
    dst.put_slice(itoa::Buffer::new().format(n).as_bytes());
}

/// Appends the header of a plain frame of `len` body bytes in the exact writer form
/// (SPEC.md §2.2): `Content-Length: N\r\n\r\n`.
pub fn encode_frame_header(len: usize, dst: &mut impl BufMut) {
    dst.put_slice(WRITER_PREFIX);
    put_uint(dst, len as u64);
    dst.put_slice(b"\r\n\r\n");
}

/// Appends the header of a frame whose JSON body is `json_len` bytes, followed by attachments of
/// the given lengths, in the exact writer form of SPEC.md §2.8:
/// `Content-Length: T\r\nTether-Attachments: n0,n1,...\r\n\r\n`, where `T` counts the JSON and
/// every attachment. Without attachments it writes the plain header of §2.2, as the spec asks.
pub fn encode_attachments_header(
    json_len: usize,
    attachment_lens: impl IntoIterator<Item = usize> + Clone,
    dst: &mut impl BufMut,
) {
    let total = attachment_lens.clone().into_iter().fold(json_len as u64, |t, n| t.saturating_add(n as u64));
    dst.put_slice(WRITER_PREFIX);
    put_uint(dst, total);
    let mut lens = attachment_lens.into_iter().peekable();
    if lens.peek().is_some() {
        dst.put_slice(ATTACHMENTS_PREFIX);
        for (i, n) in lens.enumerate() {
            if i > 0 {
                dst.put_u8(b',');
            }
            put_uint(dst, n as u64);
        }
    }
    dst.put_slice(b"\r\n\r\n");
}

/// Shows bytes for a report: printable ASCII as is, everything else escaped, shortened to
/// `max` bytes of input with the total length noted.
pub fn show_bytes(bytes: &[u8], max: usize) -> String {
    let shown: String = bytes.iter().take(max).flat_map(|b| b.escape_ascii()).map(char::from).collect();
    if bytes.len() > max {
        format!("\"{shown}\"... ({} bytes in all)", bytes.len())
    } else {
        format!("\"{shown}\"")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals_cover_the_whole_range() {
        let mut out = Vec::new();
        put_uint(&mut out, 0);
        out.push(b' ');
        put_uint(&mut out, u64::MAX);
        out.push(b' ');
        put_int(&mut out, i64::MIN);
        out.push(b' ');
        put_int(&mut out, 1234);
        assert_eq!(out, b"0 18446744073709551615 -9223372036854775808 1234");
    }

    #[test]
    fn headers_are_in_the_writer_form() {
        let mut out = Vec::new();
        encode_frame_header(0, &mut out);
        encode_attachments_header(2, [], &mut out);
        encode_attachments_header(2, [5, 0, 12], &mut out);
        assert_eq!(
            out,
            b"Content-Length: 0\r\n\r\nContent-Length: 2\r\n\r\nContent-Length: 19\r\nTether-Attachments: 5,0,12\r\n\r\n"
        );
    }

    #[test]
    fn shows_bytes_escaped_and_shortened() {
        assert_eq!(show_bytes(b"a\r\n\x00", 10), "\"a\\r\\n\\x00\"");
        assert_eq!(show_bytes(b"abcdef", 3), "\"abc\"... (6 bytes in all)");
    }
}
