//! [`PluginBuilder`]: what to run and how to talk to it.

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::time::Duration;

use tether_spec::{LogLevel, MagicCookie, PeerInfo, DEFAULT_MAX_FRAME_SIZE, MIN_MAX_FRAME_SIZE};

use crate::error::Error;
use crate::plugin_process::PluginProcess;
use crate::transport::{ChildStdio, Transport};

/// The default time from spawning a plugin to the end of its handshake.
pub const DEFAULT_START_TIMEOUT: Duration = Duration::from_secs(10);
/// The default grace period of a shutdown (SPEC.md §4.6).
pub const DEFAULT_GRACE_PERIOD: Duration = Duration::from_secs(2);

/// Configures and starts a plugin: `PluginProcess::builder("path/to/plugin").interface("kv", [1, 2])
/// .start().await`.
///
/// The plugin runs with the host's environment unless [`env_clear`](Self::env_clear) is called
/// (recommended: the environment often holds credentials, SPEC.md §11.4); the cookie is always
/// set.
#[derive(Debug, Clone)]
pub struct PluginBuilder {
    pub(crate) program: PathBuf,
    pub(crate) args: Vec<OsString>,
    pub(crate) env: Vec<(OsString, Option<OsString>)>,
    pub(crate) env_clear: bool,
    pub(crate) cwd: Option<PathBuf>,
    pub(crate) cookie: MagicCookie,
    pub(crate) interfaces: BTreeMap<String, Vec<u32>>,
    pub(crate) host: PeerInfo,
    pub(crate) start_timeout: Duration,
    pub(crate) call_timeout: Option<Duration>,
    pub(crate) grace: Duration,
    pub(crate) max_frame_size: usize,
    pub(crate) log_level: LogLevel,
    pub(crate) name: Option<String>,
    pub(crate) sha256: Option<String>,
    /// The file the digest covers when it is not the program (an interpreter's script).
    pub(crate) pinned_file: Option<PathBuf>,
    pub(crate) parent_death_signal: bool,
    pub(crate) handover: bool,
    pub(crate) attachments: bool,
    pub(crate) streams: Option<u64>,
    pub(crate) transport: Transport,
    /// The plugin's stdin, stdout and stderr in the `fds` transport; `None` when not set.
    pub(crate) child_stdio: [Option<ChildStdio>; 3],
    pub(crate) in_process: bool,
}

impl PluginBuilder {
    /// A plugin run as `program` (a path, or a name looked up in `PATH`).
    pub fn new(program: impl Into<PathBuf>) -> Self {
        PluginBuilder {
            program: program.into(),
            args: Vec::new(),
            env: Vec::new(),
            env_clear: false,
            cwd: None,
            cookie: MagicCookie::reference(),
            interfaces: BTreeMap::new(),
            host: PeerInfo::new("tether-host", env!("CARGO_PKG_VERSION")),
            start_timeout: DEFAULT_START_TIMEOUT,
            call_timeout: None,
            grace: DEFAULT_GRACE_PERIOD,
            max_frame_size: DEFAULT_MAX_FRAME_SIZE,
            log_level: LogLevel::Info,
            name: None,
            sha256: None,
            pinned_file: None,
            parent_death_signal: false,
            handover: false,
            attachments: true,
            streams: Some(tether_spec::DEFAULT_INITIAL_CREDIT),
            transport: Transport::Stdio,
            child_stdio: [None, None, None],
            in_process: false,
        }
    }

    /// Loads the program as a plugin library (a `cdylib` that exports the entry symbol of the
    /// in-process ABI, `tether_spec::abi`; made with `tether::export_plugin!`) into this process
    /// instead of running it as a child process: a call then costs no system call and no process
    /// switch, and the [`PluginProcess`] and typed clients are used exactly as for a process.
    /// [`PluginProcess::library`] is a shorthand.
    ///
    /// **No isolation.** An in-process plugin is code running in the host with all of the
    /// host's rights and memory: a crash (anything but a Rust panic, which is caught and answered
    /// as an error), an `abort`, an infinite loop on the host's thread, corrupted memory, or
    /// `std::process::exit` takes the host down with it, and nothing bounds its memory or CPU.
    /// Load only libraries you would link into the host. What still holds: panics are caught at
    /// the boundary; the library stays loaded while its instance is open (every client call
    /// goes through it); a checksum ([`sha256`](Self::sha256)) is checked before the library is
    /// loaded, and on Linux the file loaded is the one hashed (through its descriptor);
    /// arguments, environment, working directory, cookie and parent-death signal do not apply
    /// (no process is started); `pid()` is the host's; the
    /// exit of an in-process plugin is status 0 with no stderr once its instance is closed.
    /// See `rust-host/IN_PROCESS.md`.
    pub fn in_process(mut self, enabled: bool) -> Self {
        self.in_process = enabled;
        self
    }

    /// Adds an argument.
    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Self {
        self.args.push(arg.as_ref().to_owned());
        self
    }

    /// Adds arguments.
    pub fn args(mut self, args: impl IntoIterator<Item = impl AsRef<OsStr>>) -> Self {
        self.args.extend(args.into_iter().map(|a| a.as_ref().to_owned()));
        self
    }

    /// Sets an environment variable for the plugin.
    pub fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Self {
        self.env.push((key.as_ref().to_owned(), Some(value.as_ref().to_owned())));
        self
    }

    /// Removes an inherited environment variable.
    pub fn env_remove(mut self, key: impl AsRef<OsStr>) -> Self {
        self.env.push((key.as_ref().to_owned(), None));
        self
    }

    /// Starts the plugin with an empty environment, but for the variables set with
    /// [`env`](Self::env) after this call, and the cookie.
    pub fn env_clear(mut self) -> Self {
        self.env_clear = true;
        self.env.clear();
        self
    }

    /// The plugin's working directory.
    pub fn current_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.cwd = Some(dir.into());
        self
    }

    /// The magic cookie (SPEC.md §1.3); the reference cookie by default.
    pub fn cookie(mut self, cookie: MagicCookie) -> Self {
        self.cookie = cookie;
        self
    }

    /// Offers an interface with the versions the host speaks (SPEC.md §4.2). The plugin chooses
    /// the highest common one; see [`PluginProcess::interface`] for what it declared.
    pub fn interface(mut self, name: impl Into<String>, versions: impl IntoIterator<Item = u32>) -> Self {
        self.interfaces.insert(name.into(), versions.into_iter().collect());
        self
    }

    /// Offers the interface of a typed client with every version it speaks:
    /// `.offer::<KvClient>()` is `.interface("kv", [1, 2])`.
    pub fn offer<C: tether_core::Client>(self) -> Self {
        self.interface(C::INTERFACE, C::VERSIONS.iter().copied())
    }

    /// The host's name and version, sent in `tether/initialize` for the plugin's logs.
    pub fn host_info(mut self, name: impl Into<String>, version: impl Into<String>) -> Self {
        self.host = PeerInfo::new(name, version);
        self
    }

    /// How long the plugin has from its start to the end of the handshake (10 s by default).
    pub fn start_timeout(mut self, timeout: Duration) -> Self {
        self.start_timeout = timeout;
        self
    }

    /// A time-out for every call that does not set its own (none by default). A call that times
    /// out sends `$/cancelRequest`.
    pub fn call_timeout(mut self, timeout: Duration) -> Self {
        self.call_timeout = Some(timeout);
        self
    }

    /// The grace period of [`PluginProcess::shutdown`] (2 s by default, SPEC.md §4.6).
    pub fn grace_period(mut self, grace: Duration) -> Self {
        self.grace = grace;
        self
    }

    /// The maximum frame size for both directions (32 MiB by default, at least 1 MiB).
    pub fn max_frame_size(mut self, max: usize) -> Self {
        self.max_frame_size = max;
        self
    }

    /// Whether to announce the `attachments` capability (on by default): when the plugin
    /// announces it too, bytes values travel as raw attachments after the JSON of a frame instead
    /// of base64 (SPEC.md §2.8). Turn it off to see every byte as JSON, or for a plugin whose
    /// attachment support is broken.
    pub fn attachments(mut self, enabled: bool) -> Self {
        self.attachments = enabled;
        self
    }

    /// Whether to announce the `streams` capability (on by default): without it, calls whose
    /// params or result carry a stream fail to encode (SPEC.md §12).
    pub fn streams(mut self, enabled: bool) -> Self {
        self.streams = enabled.then_some(self.streams.unwrap_or(tether_spec::DEFAULT_INITIAL_CREDIT));
        self
    }

    /// The credit (bytes) the host grants the plugin on each stream it reads before granting
    /// more: the most a stream the host reads buffers in memory (1 MiB by default, at least 1
    /// byte; credit is granted back each time half of it is read). Turns streams on.
    pub fn stream_credit(mut self, bytes: u64) -> Self {
        self.streams = Some(bytes.max(1));
        self
    }

    /// Which descriptors carry the frames (SPEC.md §13): the plugin's stdin and stdout
    /// ([`Transport::Stdio`], the default), or two extra pipes it inherits as descriptors 3
    /// and 4 ([`Transport::Fds`]), so that its stdin, stdout and stderr stay the user's terminal
    /// (or what [`child_stdin`](Self::child_stdin), [`child_stdout`](Self::child_stdout) and
    /// [`child_stderr`](Self::child_stderr) say). The plugin must support the `fds`
    /// transport: one that does not reads its stdin for frames that never come, and the start
    /// fails at the start time-out.
    pub fn transport(mut self, transport: Transport) -> Self {
        self.transport = transport;
        self
    }

    /// The plugin's stdin in the `fds` transport (the host's own by default).
    pub fn child_stdin(mut self, stdin: impl Into<ChildStdio>) -> Self {
        self.child_stdio[0] = Some(stdin.into());
        self
    }

    /// The plugin's stdout in the `fds` transport (the host's own by default).
    pub fn child_stdout(mut self, stdout: impl Into<ChildStdio>) -> Self {
        self.child_stdio[1] = Some(stdout.into());
        self
    }

    /// The plugin's stderr in the `fds` transport (the host's own by default: it is then not
    /// forwarded to the host's logs, nor kept to explain a crash).
    pub fn child_stderr(mut self, stderr: impl Into<ChildStdio>) -> Self {
        self.child_stdio[2] = Some(stderr.into());
        self
    }

    /// The capabilities the host announces.
    pub(crate) fn capabilities(&self) -> tether_spec::Capabilities {
        tether_spec::Capabilities {
            attachments: self.attachments.then(tether_spec::AttachmentsCapability::default),
            streams: self.streams.map(|c| tether_spec::StreamsCapability {
                initial_credit: (c != tether_spec::DEFAULT_INITIAL_CREDIT).then_some(c),
            }),
            // The host reads `$/progress` and sends trace context with every plugin that takes
            // them (SPEC.md §14, §15): neither costs anything with one that does not.
            progress: Some(tether_spec::ProgressCapability::default()),
            trace_context: Some(tether_spec::TraceContextCapability::default()),
            other: Default::default(),
        }
    }

    /// The least severe `$/log` level the plugin sends (`info` by default).
    pub fn log_level(mut self, level: LogLevel) -> Self {
        self.log_level = level;
        self
    }

    /// The plugin's name in logs and errors. By default, the script's file stem when the program
    /// is a known interpreter (`python3 -u plugins/kv.py` is `kv`, `python3 -m my_plugin` is
    /// `my_plugin`, `node kv.mjs` is `kv`; also `ruby`, `perl`, `sh`, `bash`, `deno`, `bun`,
    /// … with any path and version suffix), else the program's file stem (`kv-rust`).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Pins the program's file to a SHA-256 digest (64 hex digits): the file is hashed before
    /// it runs, and the plugin is not started on a mismatch (SPEC.md §11.3).
    ///
    /// On Linux, a native executable is run from the very file descriptor that was hashed
    /// (`/proc/self/fd/N`), so the path cannot be swapped for another file between the check and
    /// the start. A script (a file beginning with `#!`) cannot be run that way (its interpreter
    /// would open a descriptor closed by the exec), so it is hashed and then run by its path:
    /// the check then covers the script file only (not its interpreter, nor the modules it
    /// loads), and leaves a short window in which the path could be replaced. Elsewhere, every
    /// program is hashed and then run by its path. Pin the interpreter too, by running it as the
    /// program with the script as an argument, if that matters.
    pub fn sha256(mut self, hex_digest: impl Into<String>) -> Self {
        self.sha256 = Some(hex_digest.into());
        self.pinned_file = None;
        self
    }

    /// Pins a file other than the program to a SHA-256 digest: the script an interpreter runs
    /// (`python3 kv.py` pins `kv.py`). The file is hashed before the plugin starts, which is not
    /// started on a mismatch; the program then runs by its path, so the check covers that file
    /// only and leaves the short window described at [`sha256`](Self::sha256). A relative
    /// `file` is taken from the working directory set by [`current_dir`](Self::current_dir).
    pub fn sha256_of(mut self, file: impl Into<PathBuf>, hex_digest: impl Into<String>) -> Self {
        self.sha256 = Some(hex_digest.into());
        self.pinned_file = Some(file.into());
        self
    }

    /// Whether, on Linux, the kernel also kills the plugin when the host dies
    /// (`PR_SET_PDEATHSIG`); off by default. Without it a plugin still ends with its host: the
    /// host's end of its stdin closes when the host dies, however it dies, and the SDKs exit at
    /// the end of stdin (SPEC.md §1.6; `rust-host/tests/orphans.rs` kills a host with SIGKILL
    /// and watches the Rust, Python and Node plugins exit). Turn it on for a plugin that may
    /// stop reading its stdin (a handler that blocks the reading thread, a program that does
    /// not speak Tether yet): the kernel then kills it whatever it is doing.
    ///
    /// It is off by default because of what it costs: setting the signal needs code between
    /// `fork` and `exec`, so the standard library cannot use `posix_spawn` (vfork) and copies
    /// the host's page tables instead, a cost that grows with the host's memory. Measured
    /// (BENCHMARKS.md, "issue 16, round 3"): about 0.3-0.4 ms more from start to the first
    /// answered call in a small host (1.6-2.5 ms against 1.2-1.3 ms), 54.9 ms against 5.7 ms
    /// in a host with 200 MiB of heap. The signal is tied to the thread that started the
    /// plugin: start such plugins from runtime worker threads or the main thread, not from a
    /// thread that ends before the host.
    pub fn parent_death_signal(mut self, enabled: bool) -> Self {
        self.parent_death_signal = enabled;
        self
    }

    /// Lets this plugin be handed over to another host process
    /// ([`PluginProcess::hand_over`]), so that a host can be upgraded without restarting it.
    /// Turns the parent-death signal off (the plugin must outlive this host), and the plugin is
    /// not tied to the host's child handle: it is still killed when the [`PluginProcess`] is
    /// dropped, but not by the kernel if the host process dies; it then exits at the end of its
    /// stdin (SPEC.md §1.6) unless it stopped reading.
    pub fn handover_capable(mut self) -> Self {
        self.handover = true;
        self.parent_death_signal = false;
        self
    }

    /// The plugin's name in logs and errors: the one given, else the script's file stem when
    /// the program is a known interpreter (`python3 kv.py` is `kv`), else the program's stem.
    pub(crate) fn plugin_name(&self) -> String {
        if let Some(name) = &self.name {
            return name.clone();
        }
        if is_interpreter(&self.program) {
            if let Some(script) = script_name(&self.args) {
                return script;
            }
        }
        stem(&self.program).unwrap_or_else(|| self.program.display().to_string())
    }

    pub(crate) fn validate(&self, plugin: &str) -> Result<(), Error> {
        let config = |reason: String| Error::Config { plugin: plugin.to_owned(), reason };
        if self.max_frame_size < MIN_MAX_FRAME_SIZE {
            return Err(config(format!(
                "max_frame_size {} is below the minimum of {MIN_MAX_FRAME_SIZE}",
                self.max_frame_size
            )));
        }
        if self.transport == Transport::Stdio && self.child_stdio.iter().any(Option::is_some) {
            return Err(config(
                "child_stdin, child_stdout and child_stderr need the fds transport: with stdio, those streams carry the protocol"
                    .to_owned(),
            ));
        }
        if let Some(digest) = &self.sha256 {
            parse_digest(digest)
                .ok_or_else(|| config(format!("{digest:?} is not a SHA-256 digest in hex")))?;
        }
        Ok(())
    }

    /// The file a pinned digest covers: the one given to [`sha256_of`](Self::sha256_of), else
    /// the program.
    pub(crate) fn pinned_path(&self) -> PathBuf {
        match &self.pinned_file {
            Some(file) => match &self.cwd {
                Some(cwd) if file.is_relative() => cwd.join(file),
                _ => file.clone(),
            },
            None => self.resolved_program(),
        }
    }

    /// Where the program is: as given when it has a `/`, else the first match in `PATH`.
    pub(crate) fn resolved_program(&self) -> PathBuf {
        resolve(&self.program, self.cwd.as_deref(), self.path_var().as_deref())
    }

    fn path_var(&self) -> Option<OsString> {
        match self.env.iter().rev().find(|(k, _)| k == "PATH") {
            Some((_, value)) => value.clone(),
            None if self.env_clear => None,
            None => std::env::var_os("PATH"),
        }
    }

    /// Spawns, handshakes and returns the running plugin; see [`PluginProcess`].
    pub async fn start(self) -> Result<PluginProcess, Error> {
        PluginProcess::start(self).await
    }
}

/// Interpreters that run a plugin given as a script (or module) argument.
const INTERPRETERS: &[&str] = &[
    "python", "pypy", "node", "nodejs", "deno", "bun", "ruby", "perl", "php", "lua", "luajit", "sh", "bash",
    "dash", "zsh", "ksh", "fish", "pwsh", "tclsh", "rscript", "julia", "elixir",
];

/// Whether `program` is a known interpreter, whatever its directory and version suffix
/// (`/usr/bin/python3.12`, `node22`, `ruby-3.3`).
fn is_interpreter(program: &Path) -> bool {
    let Some(name) = stem(program) else { return false };
    let name = name.to_ascii_lowercase();
    let base = name.trim_end_matches(|c: char| c.is_ascii_digit() || c == '.' || c == '-' || c == '_');
    INTERPRETERS.contains(&base)
}

/// The stem of the script (or `-m` module) an interpreter runs, from its arguments: the first
/// argument that is not an option and looks like a file (it has a `/` or a `.`). `None` when the
/// code is inline (`-c`, `-e`, `--eval`) or no argument looks like a file.
fn script_name(args: &[OsString]) -> Option<String> {
    let mut args = args.iter().map(|a| a.to_string_lossy());
    while let Some(arg) = args.next() {
        match arg.as_ref() {
            "-c" | "-e" | "-E" | "--eval" | "-p" | "--print" | "--command" => return None,
            "-m" => {
                let module = args.next()?;
                return module.rsplit('.').next().map(str::to_owned).filter(|m| !m.is_empty());
            }
            option if option.starts_with('-') => continue,
            candidate if candidate.contains('/') || candidate.contains('.') => {
                return stem(Path::new(candidate));
            }
            _ => continue,
        }
    }
    None
}

/// A path's file name without its extension (`kv.py` is `kv`).
fn stem(path: &Path) -> Option<String> {
    path.file_stem().map(|s| s.to_string_lossy().into_owned()).filter(|s| !s.is_empty())
}

/// Parses 64 hex digits.
pub(crate) fn parse_digest(hex: &str) -> Option<[u8; 32]> {
    let hex = hex.trim();
    if hex.len() != 64 || !hex.is_ascii() {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

fn resolve(program: &Path, cwd: Option<&Path>, path_var: Option<&OsStr>) -> PathBuf {
    if program.components().count() > 1 || program.is_absolute() {
        return match cwd {
            Some(cwd) if program.is_relative() => cwd.join(program),
            _ => program.to_owned(),
        };
    }
    path_var
        .into_iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| program.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_parse() {
        let hex = "00ff".repeat(16);
        assert_eq!(parse_digest(&hex).map(|d| (d[0], d[1])), Some((0, 255)));
        assert!(parse_digest("abc").is_none());
        assert!(parse_digest(&"zz".repeat(32)).is_none());
    }

    #[test]
    fn name_defaults_to_the_file_name() {
        assert_eq!(PluginBuilder::new("/opt/plugins/kv-python").plugin_name(), "kv-python");
        assert_eq!(PluginBuilder::new("x").name("mine").plugin_name(), "mine");
    }

    #[test]
    fn interpreted_plugins_are_named_after_their_script() {
        let name = |program: &str, args: &[&str]| PluginBuilder::new(program).args(args).plugin_name();
        assert_eq!(name("python3", &["examples-python/kv.py"]), "kv");
        assert_eq!(name("/usr/bin/python3.12", &["-u", "/opt/p/counter_plugin.py"]), "counter_plugin");
        assert_eq!(name("python", &["-X", "dev", "kv.py"]), "kv");
        assert_eq!(name("node", &["--no-warnings", "examples-node/kv.mjs"]), "kv");
        assert_eq!(name("/usr/local/bin/node22", &["plugin.js"]), "plugin");
        assert_eq!(name("ruby3.3", &["tools/greeter.rb"]), "greeter");
        assert_eq!(name("perl", &["-w", "x.pl"]), "x");
        assert_eq!(name("bash", &["run-plugin.sh"]), "run-plugin");
        assert_eq!(name("sh", &["-c", "exec ./p"]), "sh");
        assert_eq!(name("deno", &["run", "--allow-read", "kv.ts"]), "kv");
        assert_eq!(name("bun", &["run", "kv.ts"]), "kv");
        assert_eq!(name("python3", &[]), "python3");
        assert_eq!(name("python3", &["-m", "my_plugin"]), "my_plugin");
        assert_eq!(name("python3", &["-u"]), "python3");
        // Not an interpreter: the program's own stem.
        assert_eq!(name("/opt/plugins/kv-rust", &["kv.py"]), "kv-rust");
        assert_eq!(name("/opt/plugins/kv.exe", &[]), "kv");
        assert_eq!(name("pythonista", &["kv.py"]), "pythonista");
        assert_eq!(PluginBuilder::new("python3").arg("kv.py").name("mine").plugin_name(), "mine");
    }

    #[test]
    fn programs_are_found_in_path() {
        let sh = resolve(Path::new("sh"), None, Some(OsStr::new("/nonexistent:/bin:/usr/bin")));
        assert!(sh.is_absolute() && sh.ends_with("sh"));
        assert_eq!(resolve(Path::new("./p"), Some(Path::new("/d")), None), PathBuf::from("/d/./p"));
    }
}
