//! Spawning a plugin the way a host does (reference cookie, piped stdin/stdout), and a
//! synchronous frame-level handle on it for replaying transcripts.

use std::io::{Read as _, Write as _};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use bytes::BytesMut;
use tether_spec::{encode_frame, Frame, FrameCodec, REFERENCE_COOKIE_KEY, REFERENCE_COOKIE_VALUE};
use tokio_util::codec::Decoder as _;

/// A command that runs `program` as a host would: the reference cookie set, stdin and stdout
/// piped, stderr inherited (so that a failing test shows what the plugin said).
pub fn plugin_command(program: &Path) -> Command {
    let mut command = Command::new(program);
    command
        .env(REFERENCE_COOKIE_KEY, REFERENCE_COOKIE_VALUE)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    command
}

/// How long to wait for one frame, or for the plugin to exit, before the test fails. Generous:
/// this checks behaviour on a busy machine, not speed.
/// A frame read from the plugin: its JSON body and its attachments (SPEC.md §2.8).
pub type BodyAndAttachments = (Vec<u8>, Vec<Vec<u8>>);

const WAIT: Duration = Duration::from_secs(20);

/// A plugin process driven frame by frame: bodies written to its stdin, bodies read from its
/// stdout by a thread (so that a wait has a time-out).
#[derive(Debug)]
pub struct ProcessPlugin {
    child: Child,
    stdin: Option<ChildStdin>,
    frames: mpsc::Receiver<Result<BodyAndAttachments, String>>,
}

impl ProcessPlugin {
    /// Spawns `command` (see [`plugin_command`]).
    pub fn spawn(mut command: Command) -> Result<Self, String> {
        let mut child = command.spawn().map_err(|e| format!("cannot spawn {command:?}: {e}"))?;
        let stdin = child.stdin.take();
        let mut stdout = child.stdout.take().ok_or("the plugin's stdout is not piped")?;
        let (tx, frames) = mpsc::channel();
        std::thread::spawn(move || {
            // Attachment frames are read whenever they come: whether the plugin sent them only
            // once negotiated is for the replayer to judge from what it expected.
            let mut codec = FrameCodec::builder().attachments(true).build();
            let mut buf = BytesMut::new();
            let mut chunk = vec![0u8; 64 * 1024];
            loop {
                match codec.decode(&mut buf) {
                    Ok(Some(Frame::Message(body))) => {
                        if tx.send(Ok((body.to_vec(), Vec::new()))).is_err() {
                            return;
                        }
                        continue;
                    }
                    Ok(Some(Frame::Attached(frame))) => {
                        let attachments = frame.attachments.iter().map(|a| a.to_vec()).collect();
                        if tx.send(Ok((frame.body.to_vec(), attachments))).is_err() {
                            return;
                        }
                        continue;
                    }
                    Ok(Some(other)) => {
                        let _ = tx
                            .send(Err(format!("the plugin wrote something that is not a frame: {other:?}")));
                        return;
                    }
                    Ok(None) => {}
                    Err(e) => {
                        let _ = tx.send(Err(format!("bad framing on stdout: {e}")));
                        return;
                    }
                }
                match stdout.read(&mut chunk) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
            }
        });
        Ok(ProcessPlugin { child, stdin, frames })
    }

    /// Writes one frame with `body` to the plugin's stdin.
    pub fn send(&mut self, body: &[u8]) -> Result<(), String> {
        let stdin = self.stdin.as_mut().ok_or("stdin is already closed")?;
        let mut frame = BytesMut::new();
        encode_frame(body, &mut frame);
        stdin
            .write_all(&frame)
            .and_then(|()| stdin.flush())
            .map_err(|e| format!("writing to the plugin: {e}"))
    }

    /// The next frame body the plugin writes, waiting up to 20 s; `None` at end of output.
    /// Writes one frame with attachments (SPEC.md §2.8); the plain form when there are none.
    pub fn send_frame(&mut self, body: &[u8], attachments: &[Vec<u8>]) -> Result<(), String> {
        let stdin = self.stdin.as_mut().ok_or("stdin is already closed")?;
        let mut frame = BytesMut::new();
        let attachments: Vec<bytes::Bytes> =
            attachments.iter().map(|a| bytes::Bytes::copy_from_slice(a)).collect();
        tether_spec::encode_attached_frame_head(body, &attachments, &mut frame);
        for a in &attachments {
            frame.extend_from_slice(a);
        }
        stdin
            .write_all(&frame)
            .and_then(|()| stdin.flush())
            .map_err(|e| format!("writing to the plugin: {e}"))
    }

    /// The next frame's body (its attachments dropped; see [`ProcessPlugin::recv_frame`]).
    pub fn recv(&mut self) -> Result<Option<Vec<u8>>, String> {
        Ok(self.recv_frame()?.map(|(body, _)| body))
    }

    /// The next frame's body and attachments, `None` at the end of the plugin's stdout.
    pub fn recv_frame(&mut self) -> Result<Option<BodyAndAttachments>, String> {
        match self.frames.recv_timeout(WAIT) {
            Ok(frame) => frame.map(Some),
            Err(mpsc::RecvTimeoutError::Disconnected) => Ok(None),
            Err(mpsc::RecvTimeoutError::Timeout) => Err(format!("no frame from the plugin within {WAIT:?}")),
        }
    }

    /// Closes stdin and returns every frame written until the plugin closed stdout, and its exit
    /// code.
    pub fn finish(&mut self) -> Result<(Vec<Vec<u8>>, Option<i32>), String> {
        drop(self.stdin.take());
        let mut rest = Vec::new();
        while let Some(frame) = self.recv()? {
            rest.push(frame);
        }
        let deadline = std::time::Instant::now() + WAIT;
        loop {
            match self.child.try_wait().map_err(|e| e.to_string())? {
                Some(status) => return Ok((rest, status.code())),
                None if std::time::Instant::now() > deadline => {
                    return Err(format!("the plugin did not exit within {WAIT:?} of the end of stdin"))
                }
                None => std::thread::sleep(Duration::from_millis(10)),
            }
        }
    }
}

impl Drop for ProcessPlugin {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}
