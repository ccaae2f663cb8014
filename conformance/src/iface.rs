//! The checks of an application's own interface (`--interface-file FILE`): a fresh plugin is
//! offered the file's interface at every version the file defines, and its initialize answer
//! is judged against the file.
//!
//! - `iface.<name>.declared`: the plugin declares the interface, at a version the file defines;
//! - `iface.<name>.schemas-compatible`: for each method of that version, the plugin declares it,
//!   accepts at least the params the file allows (file ⊆ plugin) and answers no more than the
//!   file's result allows (plugin ⊆ file), by the subset check of [`compat`]; the first
//!   incompatibility is reported with its JSON pointer, and what the check cannot decide is
//!   reported as a skip that says so, never as a pass;
//! - `iface.<name>.messages-valid` ([`messages_valid`]): what the plugin sent on the interface
//!   during the whole run, against the file's schemas.
//!
//! A file whose interface another file lists among its `handles` is served by the host
//! ([`host_served`]): it gets only `messages-valid`, for the plugin's invokes of such handles.

mod compat;
mod messages;

pub(crate) use messages::check as messages_valid;

use std::time::{Duration, Instant};

use serde_json::Value;
use tether_spec::{InterfaceDocument, LogLevel, Outcome};

use crate::checks::{Failure, Tier};
use crate::driver::{CookieMode, PluginSpec, Session};
use crate::report::{CheckResult, Status};

/// Whether the host serves `doc`'s interface as a handle: another file given lists it among its
/// `handles`. The plugin does not declare such an interface, so only its invokes are judged
/// (`iface.<name>.messages-valid`, by the file's last version).
pub(crate) fn host_served(doc: &InterfaceDocument, all: &[InterfaceDocument]) -> bool {
    all.iter().any(|d| d.name != doc.name && d.versions.iter().any(|v| v.handles.contains(&doc.name)))
}

/// Reads the interface files, naming the file that cannot be used.
pub(crate) fn load(paths: &[std::path::PathBuf]) -> anyhow::Result<Vec<InterfaceDocument>> {
    paths
        .iter()
        .map(|p| {
            let text = std::fs::read_to_string(p)
                .map_err(|e| anyhow::anyhow!("cannot read the interface file {}: {e}", p.display()))?;
            InterfaceDocument::from_json(&text).map_err(|e| anyhow::anyhow!("{}: {e}", p.display()))
        })
        .collect()
}

fn result(
    id: String,
    title: &str,
    status: Status,
    reason: String,
    failure: Option<Failure>,
    took: Duration,
) -> CheckResult {
    CheckResult {
        id,
        section: "§4.4".into(),
        title: title.into(),
        tier: Tier::Core,
        status,
        duration: took,
        reason,
        failure,
    }
}

/// What the plugin declared for the interface: the chosen version and its methods' schemas.
type Declared = Option<(u64, serde_json::Map<String, Value>)>;

/// Starts the plugin, offers it the file's interface and reads what it declares.
async fn handshake(
    doc: &InterfaceDocument,
    spec: &PluginSpec,
    timeout: Duration,
    grace: Duration,
) -> Result<Declared, Failure> {
    let mut s = Session::start(spec, CookieMode::Set, false)
        .map_err(|e| Failure::new(e.to_string()).fix("check the --plugin command line"))?;
    let offer = [(doc.name.as_str(), doc.version_numbers())];
    let params = crate::driver::init_params(&offer, LogLevel::Info);
    let answer = s.initialize(&params, timeout).await;
    let stderr = s.stderr_tail(20);
    let _ = s.finish(grace).await;
    let response = answer.map_err(|e| Failure::new(e.to_string()).got(stderr.clone()))?;
    let value: Value = match &response.outcome {
        Outcome::Result(raw) => serde_json::from_str(raw.get())
            .map_err(|e| Failure::new(format!("unreadable initialize result: {e}")))?,
        Outcome::Error(e) => {
            return Err(Failure::new(format!("tether/initialize answered error {}: {}", e.code, e.message))
                .expected(format!(
                    "a result declaring {} at one of the versions {:?}",
                    doc.name,
                    doc.version_numbers()
                ))
                .got(stderr))
        }
    };
    let declared = value.get("interfaces").and_then(|i| i.get(&doc.name));
    Ok(declared.map(|d| {
        let version = d.get("version").and_then(Value::as_u64).unwrap_or(0);
        let methods = d.get("methods").and_then(Value::as_object).cloned().unwrap_or_default();
        (version, methods)
    }))
}

/// Judges one plugin against one interface file; with the version of the file the plugin
/// declared, when it declared one.
pub(crate) async fn judge(
    doc: &InterfaceDocument,
    spec: &PluginSpec,
    timeout: Duration,
    grace: Duration,
) -> (Vec<CheckResult>, Option<u32>) {
    let mut version = None;
    let results = judge_declared(doc, spec, timeout, grace, &mut version).await;
    (results, version)
}

async fn judge_declared(
    doc: &InterfaceDocument,
    spec: &PluginSpec,
    timeout: Duration,
    grace: Duration,
    declared_version: &mut Option<u32>,
) -> Vec<CheckResult> {
    let started = Instant::now();
    let name = &doc.name;
    let declared_id = format!("iface.{name}.declared");
    let compat_id = format!("iface.{name}.schemas-compatible");
    let declared_title = format!("the plugin declares {name} at a version the interface file defines");
    let compat_title = format!("the plugin's {name} schemas accept what the file's do, and answer no more");
    let not_run = |why: &str| {
        result(
            compat_id.clone(),
            &compat_title,
            Status::NotRun,
            format!("not run: {why}"),
            None,
            Duration::ZERO,
        )
    };
    let fail = |id: &str, title: &str, f: Failure, took| {
        result(id.to_owned(), title, Status::Fail, f.summary.clone(), Some(f), took)
    };
    let (version, methods) = match handshake(doc, spec, timeout, grace).await {
        Err(f) => {
            return vec![
                fail(&declared_id, &declared_title, f, started.elapsed()),
                not_run("the handshake failed"),
            ]
        }
        Ok(None) => {
            let f = Failure::new(format!("the plugin does not declare {name}"))
                .expected(format!(
                    "interfaces.{name} in the initialize result, at one of {:?}",
                    doc.version_numbers()
                ))
                .got("no such interface")
                .fix(format!("serve the {name} interface under that exact name"));
            return vec![
                fail(&declared_id, &declared_title, f, started.elapsed()),
                not_run(&format!("{name} not declared")),
            ];
        }
        Ok(Some(d)) => d,
    };
    let Some(file_version) = u32::try_from(version).ok().and_then(|v| doc.version(v)) else {
        let f = Failure::new(format!(
            "the plugin declares {name} version {version}, which the interface file does not define"
        ))
        .expected(format!("one of the versions the host offered: {:?}", doc.version_numbers()))
        .got(format!("version {version}"))
        .fix("declare a version the host offered (SPEC.md §4.3: the highest both speak)");
        return vec![
            fail(&declared_id, &declared_title, f, started.elapsed()),
            not_run("the declared version is not in the file"),
        ];
    };
    *declared_version = Some(file_version.version);
    let took = started.elapsed();
    let mut out = vec![result(declared_id, &declared_title, Status::Pass, String::new(), None, took)];
    out.push(compatible(doc, file_version, &methods, &compat_id, &compat_title, took));
    out
}

fn compatible(
    doc: &InterfaceDocument,
    file: &tether_spec::InterfaceVersion,
    methods: &serde_json::Map<String, Value>,
    id: &str,
    title: &str,
    took: Duration,
) -> CheckResult {
    let name = &doc.name;
    let mut undecided = Vec::new();
    for (method, schema) in &file.methods {
        let full = format!("{name}.{method}");
        let Some(theirs) = methods.get(method) else {
            let f = Failure::new(format!("the plugin does not declare {full} (version {})", file.version))
                .expected(format!(
                    "every method of {name} version {}: {:?}",
                    file.version,
                    file.methods.keys().collect::<Vec<_>>()
                ))
                .got(format!("{:?}", methods.keys().collect::<Vec<_>>()))
                .fix(format!("serve {full}"));
            return result(id.to_owned(), title, Status::Fail, f.summary.clone(), Some(f), took);
        };
        let null = Value::Null;
        let (tp, tr) = (theirs.get("params").unwrap_or(&null), theirs.get("result").unwrap_or(&null));
        let rooted = |v| compat::Rooted { root: v, schema: v };
        // Params: what the file allows, the plugin must accept. Results: what the plugin
        // answers, the file must allow.
        let checks = [
            (
                "params",
                compat::subset(rooted(&schema.params), rooted(tp)),
                "accept at least the params the file's schema allows",
            ),
            (
                "result",
                compat::subset(rooted(tr), rooted(&schema.result)),
                "answer no more than the file's result schema allows",
            ),
        ];
        for (what, verdict, rule) in checks {
            match verdict {
                Ok(()) => {}
                Err(compat::Verdict::No { at, why }) => {
                    let f = Failure::new(format!("{full} {what} at {at}: {why}"))
                        .expected(format!("the plugin's {what} schema to {rule}"))
                        .got(format!(
                            "file: {}\nplugin: {}",
                            if what == "params" { &schema.params } else { &schema.result },
                            if what == "params" { tp } else { tr }
                        ))
                        .fix(format!(
                            "declare (and implement) the {what} of {full} as the interface file does"
                        ));
                    return result(id.to_owned(), title, Status::Fail, f.summary.clone(), Some(f), took);
                }
                Err(compat::Verdict::Undecided { at, why }) => {
                    undecided.push(format!("{full} {what} at {at}: {why}"))
                }
            }
        }
    }
    if undecided.is_empty() {
        result(id.to_owned(), title, Status::Pass, String::new(), None, took)
    } else {
        result(
            id.to_owned(),
            title,
            Status::Skip,
            format!("cannot decide: {}", undecided.join("; ")),
            None,
            took,
        )
    }
}

#[cfg(test)]
mod tests {
    use tether_spec::interfaces::{blob, counter, kv};

    #[test]
    fn the_judges_reference_knowledge_agrees_with_the_committed_interface_files() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../spec/interfaces");
        for (name, versions) in crate::checks::REFERENCE {
            let text = std::fs::read_to_string(dir.join(format!("{name}.json"))).unwrap_or_default();
            let file = tether_spec::InterfaceDocument::from_json(&text).map_err(|e| e.to_string());
            let built = match *name {
                "kv" => kv::document(),
                "counter" => counter::document(),
                _ => blob::document(),
            };
            assert_eq!(file.as_ref().map(|d| d.version_numbers()), Ok(versions.to_vec()), "{name}");
            // The methods and schemas the judge sends and expects are those of the files.
            assert_eq!(file, Ok(built), "{name}");
        }
    }
}
