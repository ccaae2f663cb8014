//! [`Manifest`]: a plugin described by a TOML file next to it (`tether-plugin.toml` or
//! `NAME.tether.toml`), validated strictly, and turned into a [`PluginBuilder`] with its
//! checksum pinned.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use tether_spec::MagicCookie;

use crate::builder::{parse_digest, PluginBuilder};

/// The file name of a manifest alone in its directory.
pub const MANIFEST_FILE: &str = "tether-plugin.toml";
/// The suffix of a manifest that shares its directory with others (`kv.tether.toml`).
pub const MANIFEST_SUFFIX: &str = ".tether.toml";

/// A manifest that cannot be used: the file, the field when one is at fault, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("plugin manifest {}{}: {reason}", file.display(), field.as_ref().map(|f| format!(": field `{f}`")).unwrap_or_default())]
pub struct ManifestError {
    /// The manifest file.
    pub file: PathBuf,
    /// The field at fault (`interfaces.kv`, `sha256`), when one is.
    pub field: Option<String>,
    /// What is wrong.
    pub reason: String,
}

/// The manifest as written: every field, unknown ones rejected.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    name: String,
    command: Option<Vec<String>>,
    library: Option<String>,
    interfaces: BTreeMap<String, Vec<u32>>,
    sha256: String,
    cookie: Option<RawCookie>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    #[serde(default)]
    env_clear: bool,
    start_timeout_ms: Option<u64>,
    call_timeout_ms: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCookie {
    key: String,
    value: String,
}

/// A validated plugin manifest (see `rust-host/README.md`, "Discovery", for the format).
///
/// ```toml
/// name = "kv"
/// command = ["python3", "-u", "kv.py"]  # relative paths are taken from the manifest's directory
/// interfaces = { kv = [1, 2] }
/// sha256 = "…"                          # of kv.py here; of the program when it is a path
/// ```
///
/// or, for a plugin library loaded into the host (`rust-host/IN_PROCESS.md`):
///
/// ```toml
/// name = "kv"
/// library = "libkv_plugin.so"           # relative to the manifest's directory
/// interfaces = { kv = [2] }
/// sha256 = "…"                          # of the library file
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    /// The manifest file.
    pub file: PathBuf,
    /// The plugin's name in logs and errors.
    pub name: String,
    /// The directory of the manifest: the plugin's working directory.
    pub dir: PathBuf,
    /// The program: a path inside [`dir`](Self::dir), or a name looked up in `PATH` (an
    /// interpreter such as `python3` or `node`); for an in-process plugin, the library file.
    pub program: PathBuf,
    /// Whether the manifest names a `library` (loaded into the host, [`PluginBuilder::in_process`])
    /// rather than a `command` (run as a process).
    pub in_process: bool,
    /// The arguments, as written.
    pub args: Vec<String>,
    /// The file the checksum covers, inside [`dir`](Self::dir): the program when it is a path,
    /// else the script (the first argument that is not an option).
    pub pinned_file: PathBuf,
    /// The SHA-256 of [`pinned_file`](Self::pinned_file), in hex.
    pub sha256: String,
    /// The interfaces and versions the plugin speaks.
    pub interfaces: BTreeMap<String, Vec<u32>>,
    /// The magic cookie (the reference cookie when the manifest sets none).
    pub cookie: MagicCookie,
    /// Environment variables set for the plugin.
    pub env: BTreeMap<String, String>,
    /// Whether the plugin starts with an empty environment but for [`env`](Self::env).
    pub env_clear: bool,
    /// The start time-out, when the manifest sets one.
    pub start_timeout: Option<Duration>,
    /// The default call time-out, when the manifest sets one.
    pub call_timeout: Option<Duration>,
}

impl Manifest {
    /// Reads and validates a manifest file.
    pub fn load(file: impl AsRef<Path>) -> Result<Manifest, ManifestError> {
        let file = file.as_ref();
        let text =
            std::fs::read_to_string(file).map_err(|e| error(file, None, format!("cannot be read: {e}")))?;
        Manifest::parse(file, &text)
    }

    /// Validates the text of a manifest; `file` names it in errors and gives the directory that
    /// relative paths are taken from.
    pub fn parse(file: &Path, text: &str) -> Result<Manifest, ManifestError> {
        let raw: Raw = toml::from_str(text).map_err(|e| {
            let message = e.message().to_owned();
            let field = backticked(&message)
                .filter(|_| message.starts_with("unknown field") || message.starts_with("missing field"));
            let line = e
                .span()
                .map(|span| text[..span.start.min(text.len())].matches('\n').count() + 1)
                .map(|line| format!(" (line {line})"))
                .unwrap_or_default();
            error(file, field, format!("{message}{line}"))
        })?;
        let dir = file.parent().map(Path::to_path_buf).unwrap_or_default();
        let dir = if dir.as_os_str().is_empty() { PathBuf::from(".") } else { dir };
        let bad = |field: &str, reason: String| error(file, Some(field.to_owned()), reason);

        if raw.name.is_empty()
            || !raw.name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        {
            return Err(bad(
                "name",
                format!("{:?} is not a name (letters, digits, `-`, `_`, `.`)", raw.name),
            ));
        }
        let (program, args, pinned, program_is_path, in_process) = match (&raw.command, &raw.library) {
            (Some(_), Some(_)) => {
                return Err(bad(
                    "library",
                    "a manifest names either `command` (a process) or `library` (a library loaded \
                     into the host), not both"
                        .into(),
                ))
            }
            (None, None) => {
                return Err(bad(
                    "command",
                    "missing: a manifest names either `command` (a process) or `library` (a library \
                     loaded into the host)"
                        .into(),
                ))
            }
            (None, Some(library)) => {
                if library.is_empty() {
                    return Err(bad("library", "is an empty string".into()));
                }
                inside(library)
                    .map_err(|reason| bad("library", format!("the library {library:?} {reason}")))?;
                // What a process is given and a library cannot use is refused, not ignored.
                let unused = [
                    ("env", !raw.env.is_empty()),
                    ("env_clear", raw.env_clear),
                    ("cookie", raw.cookie.is_some()),
                ];
                if let Some((field, _)) = unused.iter().find(|(_, set)| *set) {
                    return Err(bad(
                        field,
                        "does not apply to a library: it runs in the host's process, with the host's \
                         environment"
                            .into(),
                    ));
                }
                (library, &[][..], library.clone(), true, true)
            }
            (Some(command), None) => {
                let Some((program, args)) = command.split_first() else {
                    return Err(bad("command", "is empty: it needs at least the program".into()));
                };
                let program_is_path = program.contains('/');
                if program_is_path {
                    inside(program)
                        .map_err(|reason| bad("command", format!("the program {program:?} {reason}")))?;
                } else if program.is_empty() {
                    return Err(bad("command", "the program is an empty string".into()));
                }
                let pinned = if program_is_path {
                    program.clone()
                } else {
                    let script = args.iter().find(|a| !a.starts_with('-')).ok_or_else(|| {
                        bad(
                            "command",
                            format!(
                                "{program:?} is looked up in PATH, and no argument names the script that \
                                 `sha256` covers (the first argument that is not an option)"
                            ),
                        )
                    })?;
                    inside(script)
                        .map_err(|reason| bad("command", format!("the script {script:?} {reason}")))?;
                    script.clone()
                };
                (program, args, pinned, program_is_path, false)
            }
        };
        if parse_digest(&raw.sha256).is_none() {
            return Err(bad("sha256", format!("{:?} is not a SHA-256 digest (64 hex digits)", raw.sha256)));
        }
        if raw.interfaces.is_empty() {
            return Err(bad("interfaces", "declares no interface".into()));
        }
        for (name, versions) in &raw.interfaces {
            if versions.is_empty() || versions.contains(&0) {
                return Err(bad(
                    &format!("interfaces.{name}"),
                    format!("{versions:?}: versions are a non-empty list of numbers from 1"),
                ));
            }
        }
        let cookie = match raw.cookie {
            Some(c) if c.key.is_empty() || c.key.contains('=') => {
                return Err(bad("cookie.key", format!("{:?} is not an environment variable name", c.key)))
            }
            Some(c) => MagicCookie::new(c.key, c.value),
            None => MagicCookie::reference(),
        };
        if let Some(key) = raw.env.keys().find(|k| k.is_empty() || k.contains('=')) {
            return Err(bad("env", format!("{key:?} is not an environment variable name")));
        }
        let program = if program_is_path { dir.join(program) } else { PathBuf::from(program) };
        Ok(Manifest {
            file: file.to_owned(),
            name: raw.name,
            program,
            in_process,
            args: args.to_vec(),
            pinned_file: dir.join(pinned),
            dir,
            sha256: raw.sha256.trim().to_ascii_lowercase(),
            interfaces: raw.interfaces,
            cookie,
            env: raw.env,
            env_clear: raw.env_clear,
            start_timeout: raw.start_timeout_ms.map(Duration::from_millis),
            call_timeout: raw.call_timeout_ms.map(Duration::from_millis),
        })
    }

    /// A builder for the plugin: its program and arguments, working directory (the manifest's
    /// directory), environment, cookie, time-outs and interfaces, with the checksum pinned
    /// ([`PluginBuilder::sha256`] for a program given as a path, [`PluginBuilder::sha256_of`]
    /// for an interpreter's script). Change what the host decides (limits, host info) on it.
    /// For a manifest that names a `library`, a builder that loads it into the host
    /// ([`PluginBuilder::in_process`]), its checksum pinned the same way.
    pub fn builder(&self) -> PluginBuilder {
        if self.in_process {
            return self.library_builder();
        }
        let mut builder = PluginBuilder::new(&self.program).args(&self.args).name(&self.name);
        if self.env_clear {
            builder = builder.env_clear();
        }
        for (key, value) in &self.env {
            builder = builder.env(key, value);
        }
        builder = builder.current_dir(&self.dir).cookie(self.cookie.clone());
        builder = if self.pinned_file == self.program {
            builder.sha256(&self.sha256)
        } else {
            builder.sha256_of(&self.pinned_file, &self.sha256)
        };
        self.with_interfaces_and_timeouts(builder)
    }

    /// The builder of a plugin library: loaded into the host, its file's checksum checked first
    /// (and the checked file is the one loaded, `rust-host/IN_PROCESS.md`).
    fn library_builder(&self) -> PluginBuilder {
        let builder =
            PluginBuilder::new(&self.program).in_process(true).name(&self.name).sha256(&self.sha256);
        self.with_interfaces_and_timeouts(builder)
    }

    /// What a process and a library manifest set alike: the interfaces and the time-outs.
    fn with_interfaces_and_timeouts(&self, mut builder: PluginBuilder) -> PluginBuilder {
        for (name, versions) in &self.interfaces {
            builder = builder.interface(name, versions.iter().copied());
        }
        if let Some(timeout) = self.start_timeout {
            builder = builder.start_timeout(timeout);
        }
        if let Some(timeout) = self.call_timeout {
            builder = builder.call_timeout(timeout);
        }
        builder
    }

    /// Keeps, of each interface, the versions the host speaks too (`speaks`: name and versions);
    /// an error naming the field when an interface is unknown to the host or has no common
    /// version.
    pub fn restrict_to(&mut self, speaks: &BTreeMap<String, Vec<u32>>) -> Result<(), ManifestError> {
        for (name, versions) in &mut self.interfaces {
            let field = Some(format!("interfaces.{name}"));
            let Some(host) = speaks.get(name) else {
                let known: Vec<&String> = speaks.keys().collect();
                return Err(error(
                    &self.file,
                    field,
                    format!("the host does not speak interface {name} (it speaks {known:?})"),
                ));
            };
            let common: Vec<u32> = versions.iter().copied().filter(|v| host.contains(v)).collect();
            if common.is_empty() {
                return Err(error(
                    &self.file,
                    field,
                    format!("no common version: the plugin speaks {versions:?}, the host {host:?}"),
                ));
            }
            *versions = common;
        }
        Ok(())
    }
}

fn error(file: &Path, field: Option<String>, reason: String) -> ManifestError {
    ManifestError { file: file.to_owned(), field, reason }
}

/// Checks that a path stays inside the manifest's directory: relative, without `..`.
fn inside(path: &str) -> Result<(), String> {
    let path = Path::new(path);
    if path.is_absolute() {
        return Err("must be relative to the manifest's directory".into());
    }
    if path.components().any(|c| matches!(c, Component::ParentDir)) {
        return Err("leaves the manifest's directory (`..`)".into());
    }
    Ok(())
}

/// The first `backticked` word of a message.
fn backticked(message: &str) -> Option<String> {
    let start = message.find('`')? + 1;
    let len = message[start..].find('`')?;
    Some(message[start..start + len].to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    const HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

    fn parse(text: &str) -> Result<Manifest, ManifestError> {
        Manifest::parse(Path::new("plugins/kv/tether-plugin.toml"), text)
    }

    fn field(text: &str) -> Option<String> {
        parse(text).err().and_then(|e| e.field)
    }

    #[test]
    fn an_interpreted_plugin_pins_its_script() {
        let m = parse(&format!(
            "name = 'kv'\ncommand = ['python3', '-u', 'kv.py']\ninterfaces = {{ kv = [1, 2] }}\nsha256 = '{HASH}'\n"
        ))
        .map_err(|e| e.to_string());
        let m = m.as_ref().map(|m| (&m.program, &m.pinned_file, &m.dir));
        assert_eq!(
            m,
            Ok((&PathBuf::from("python3"), &PathBuf::from("plugins/kv/kv.py"), &PathBuf::from("plugins/kv")))
        );
    }

    #[test]
    fn a_native_plugin_pins_its_program() {
        let m = parse(&format!(
            "name = 'kv'\ncommand = ['./kv']\ninterfaces = {{ kv = [2] }}\nsha256 = '{HASH}'\n"
        ));
        assert_eq!(m.map(|m| m.pinned_file == m.program), Ok(true));
    }

    #[test]
    fn bad_fields_are_named() {
        let ok = format!("name = 'kv'\ncommand = ['./kv']\ninterfaces = {{ kv = [2] }}\nsha256 = '{HASH}'\n");
        assert_eq!(field(&format!("{ok}colour = 'red'\n")), Some("colour".into()));
        assert_eq!(field(&ok.replace("name = 'kv'\n", "")), Some("name".into()));
        assert_eq!(field(&ok.replace(HASH, "abc")), Some("sha256".into()));
        assert_eq!(field(&ok.replace("./kv", "../kv")), Some("command".into()));
        assert_eq!(field(&ok.replace("./kv", "/bin/kv")), Some("command".into()));
        assert_eq!(field(&ok.replace("[2]", "[0]")), Some("interfaces.kv".into()));
        assert_eq!(field(&ok.replace("['./kv']", "['python3', '-u']")), Some("command".into()));
        let message = parse(&format!("{ok}colour = 'red'\n")).map(|_| ()).map_err(|e| e.to_string());
        assert!(
            message
                .as_ref()
                .is_err_and(|m| m.contains("plugins/kv/tether-plugin.toml") && m.contains("line 5")),
            "{message:?}"
        );
    }

    #[test]
    fn a_library_is_pinned_and_loaded_in_process() {
        let m = parse(&format!(
            "name = 'kv'\nlibrary = 'libkv.so'\ninterfaces = {{ kv = [2] }}\nsha256 = '{HASH}'\n"
        ));
        let m = m.map(|m| (m.in_process, m.program.clone(), m.pinned_file == m.program, m.args.len()));
        assert_eq!(m, Ok((true, PathBuf::from("plugins/kv/libkv.so"), true, 0)));
    }

    #[test]
    fn a_manifest_names_exactly_one_of_command_and_library() {
        let both = format!(
            "name = 'kv'\ncommand = ['./kv']\nlibrary = 'libkv.so'\ninterfaces = {{ kv = [2] }}\nsha256 = '{HASH}'\n"
        );
        let error = parse(&both).err();
        assert_eq!(error.as_ref().and_then(|e| e.field.as_deref()), Some("library"));
        assert!(error.is_some_and(|e| e.to_string().contains("either `command` (a process) or `library`")));
        let neither = format!("name = 'kv'\ninterfaces = {{ kv = [2] }}\nsha256 = '{HASH}'\n");
        let error = parse(&neither).err();
        assert_eq!(error.as_ref().and_then(|e| e.field.as_deref()), Some("command"));
        assert!(error.is_some_and(|e| e.reason.starts_with("missing: a manifest names either")));
    }

    #[test]
    fn a_library_refuses_what_only_a_process_can_use() {
        let ok =
            format!("name = 'kv'\nlibrary = 'libkv.so'\ninterfaces = {{ kv = [2] }}\nsha256 = '{HASH}'\n");
        assert_eq!(field(&format!("{ok}env = {{ A = '1' }}\n")), Some("env".into()));
        assert_eq!(field(&format!("{ok}env_clear = true\n")), Some("env_clear".into()));
        assert_eq!(field(&format!("{ok}cookie = {{ key = 'K', value = 'V' }}\n")), Some("cookie".into()));
        assert_eq!(field(&ok.replace("libkv.so", "../libkv.so")), Some("library".into()));
        assert_eq!(field(&ok.replace("libkv.so", "/lib/libkv.so")), Some("library".into()));
    }

    #[test]
    fn versions_are_restricted_to_the_hosts() {
        let text = format!(
            "name = 'kv'\ncommand = ['./kv']\ninterfaces = {{ kv = [1, 2, 3] }}\nsha256 = '{HASH}'\n"
        );
        let host = BTreeMap::from([("kv".to_owned(), vec![1, 2])]);
        let restricted = parse(&text).and_then(|mut m| m.restrict_to(&host).map(|()| m.interfaces));
        assert_eq!(restricted, Ok(BTreeMap::from([("kv".to_owned(), vec![1, 2])])));
        let none = BTreeMap::from([("kv".to_owned(), vec![7])]);
        let err = parse(&text).and_then(|mut m| m.restrict_to(&none)).err().and_then(|e| e.field);
        assert_eq!(err, Some("interfaces.kv".into()));
    }
}
