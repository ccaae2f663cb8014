//! The transcript file format of `transcripts/README.md`: a strict parser and the writer the
//! generator uses.

use bytes::BytesMut;
use tether_spec::{encode_attached_frame_head, Frame, FrameCodec};
use tokio_util::codec::Decoder;

/// Which way a frame travels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dir {
    /// `-->`: host to plugin, the plugin's stdin.
    ToPlugin,
    /// `<--`: plugin to host, the plugin's stdout.
    ToHost,
}

impl Dir {
    /// The direction line, without its `\n`.
    pub fn arrow(self) -> &'static str {
        match self {
            Dir::ToPlugin => "-->",
            Dir::ToHost => "<--",
        }
    }
}

/// One block: comments, a direction, a frame body.
#[derive(Debug, Clone)]
pub struct Block {
    /// The comment lines before the direction line, without `#` and `\n`.
    pub comments: Vec<String>,
    /// The direction.
    pub dir: Dir,
    /// The frame's body (its JSON, without the attachments).
    pub body: Vec<u8>,
    /// The frame's attachments (SPEC.md §2.8), empty for a plain frame.
    pub attachments: Vec<Vec<u8>>,
    /// The 1-based line of the direction line, for messages.
    pub line: usize,
}

/// A parsed transcript.
#[derive(Debug, Clone)]
pub struct Transcript {
    /// The file name, for messages.
    pub name: String,
    /// `kv`, `counter` or `blob`, from the first line.
    pub plugin: String,
    /// The blocks in order.
    pub blocks: Vec<Block>,
    /// Comment lines after the last block.
    pub trailer: Vec<String>,
}

/// Parses a transcript, failing on any deviation from the README's format.
pub fn parse(name: &str, bytes: &[u8]) -> Result<Transcript, String> {
    let mut pos = 0;
    let mut line = 1;
    let mut comments: Vec<String> = Vec::new();
    let mut blocks = Vec::new();
    let fail = |line: usize, what: &str| Err(format!("{name}:{line}: {what}"));
    while pos < bytes.len() {
        let rest = &bytes[pos..];
        if rest[0] == b'#' {
            let Some(end) = rest.iter().position(|&b| b == b'\n') else {
                return fail(line, "a comment line must end with \\n");
            };
            let text = &rest[1..end];
            if text.contains(&b'\r') {
                return fail(line, "a comment line contains \\r (was the file converted to CRLF?)");
            }
            let Ok(text) = std::str::from_utf8(text) else {
                return fail(line, "a comment line is not UTF-8");
            };
            comments.push(text.strip_prefix(' ').unwrap_or(text).to_owned());
            pos += end + 1;
            line += 1;
            continue;
        }
        let dir = if rest.starts_with(b"-->\n") {
            Dir::ToPlugin
        } else if rest.starts_with(b"<--\n") {
            Dir::ToHost
        } else {
            return fail(line, "expected a comment, `-->\\n` or `<--\\n`");
        };
        let dir_line = line;
        pos += 4;
        line += 1;
        let mut buf = BytesMut::from(&bytes[pos..]);
        let before = buf.len();
        // Attachment frames are read wherever they are; the session rules check when they may be.
        let (body, attachments) =
            match FrameCodec::builder().strict().attachments(true).build().decode(&mut buf) {
                Ok(Some(Frame::Message(body))) => (body, Vec::new()),
                Ok(Some(Frame::Attached(f))) => (f.body, f.attachments.iter().map(|a| a.to_vec()).collect()),
                Ok(Some(other)) => return fail(line, &format!("unexpected frame {other:?}")),
                Ok(None) => return fail(line, "the file ends inside a frame"),
                Err(e) => return fail(line, &e.to_string()),
            };
        let consumed = before - buf.len();
        line += bytes[pos..pos + consumed].iter().filter(|&&b| b == b'\n').count();
        pos += consumed;
        if bytes.get(pos) != Some(&b'\n') {
            return fail(line, "a frame must be followed by exactly one \\n (wrong Content-Length?)");
        }
        pos += 1;
        line += 1;
        blocks.push(Block {
            comments: std::mem::take(&mut comments),
            dir,
            body: body.to_vec(),
            attachments,
            line: dir_line,
        });
    }
    let Some(first) = blocks.first().and_then(|b| b.comments.first()) else {
        return Err(format!("{name}: the first line must be a `# plugin:` comment"));
    };
    let plugin = match first.strip_prefix("plugin: ") {
        Some(p @ ("kv" | "counter" | "blob")) => p.to_owned(),
        _ => {
            return Err(format!(
                "{name}:1: the first line must be `# plugin: kv`, `# plugin: counter` or `# plugin: blob`"
            ))
        }
    };
    Ok(Transcript { name: name.to_owned(), plugin, blocks, trailer: comments })
}

/// Writes a transcript in the README's format.
pub fn render(t: &Transcript) -> Vec<u8> {
    let mut out = Vec::new();
    let comment = |out: &mut Vec<u8>, text: &str| {
        if text.is_empty() {
            out.extend_from_slice(b"#\n");
        } else {
            out.extend_from_slice(format!("# {text}\n").as_bytes());
        }
    };
    for block in &t.blocks {
        for c in &block.comments {
            comment(&mut out, c);
        }
        out.extend_from_slice(block.dir.arrow().as_bytes());
        out.push(b'\n');
        let attachments: Vec<bytes::Bytes> =
            block.attachments.iter().map(|a| bytes::Bytes::copy_from_slice(a)).collect();
        let mut frame = BytesMut::new();
        encode_attached_frame_head(&block.body, &attachments, &mut frame);
        out.extend_from_slice(&frame);
        for a in &attachments {
            out.extend_from_slice(a);
        }
        out.push(b'\n');
    }
    for c in &t.trailer {
        comment(&mut out, c);
    }
    out
}

/// The directory of the transcripts.
pub fn dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("transcripts")
}

/// Every committed transcript, parsed; panics with the parser's message on a bad file.
pub fn load_all() -> Vec<Transcript> {
    let mut names: Vec<_> = std::fs::read_dir(dir())
        .expect("the transcripts directory")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tether"))
        .collect();
    names.sort();
    names
        .iter()
        .map(|n| {
            let bytes = std::fs::read(dir().join(n)).expect("a readable transcript");
            parse(n, &bytes).unwrap_or_else(|e| panic!("{e}"))
        })
        .collect()
}

/// One frame as it crosses a pipe: the JSON body and the attachments after it (SPEC.md §2.8).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WireFrame {
    /// The JSON body.
    pub body: Vec<u8>,
    /// The attachments, empty for a plain frame.
    pub attachments: Vec<Vec<u8>>,
}

impl WireFrame {
    /// A frame without attachments.
    pub fn plain(body: Vec<u8>) -> Self {
        WireFrame { body, attachments: Vec::new() }
    }

    /// A block's frame.
    pub fn of(block: &Block) -> Self {
        WireFrame { body: block.body.clone(), attachments: block.attachments.clone() }
    }
}
