//! `tether call`: one call (or `--repeat N` of the same) to a plugin, the result pretty-printed
//! on stdout, an error answer's code, message and data on stderr (exit status 1).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Args;
use serde::Serialize;
use serde_json::{Map, Value};
use tether_host::spec::Bytes;
use tether_host::{CallError, PluginProcess};

use crate::builtin_handle::BuiltinHandle;
use crate::launch::LaunchArgs;
use crate::progress::ProgressMode;
use crate::shown::Shown;
use crate::Failure;

/// `tether call [options] -- <plugin command line> <method> [params-json | -]`.
#[derive(Debug, Args)]
pub(crate) struct CallArgs {
    #[command(flatten)]
    launch: LaunchArgs,
    /// Put the raw bytes of FILE (`-` for stdin) into the bytes param FIELD (as an attachment
    /// when the plugin negotiated them, else base64); repeatable.
    #[arg(long, value_name = "FIELD=FILE", value_parser = parse_pair)]
    bytes: Vec<(String, PathBuf)>,
    /// Serve a built-in object (it answers `sum` and `echo`) as a handle of INTERFACE in the
    /// param FIELD (`--handle adder=adder` for `counter.put`; INTERFACE defaults to FIELD).
    #[arg(long, value_name = "FIELD[=INTERFACE]")]
    handle: Vec<String>,
    /// Seconds a call may take before it is cancelled.
    #[arg(long, value_name = "SECONDS", default_value_t = 30.0)]
    timeout: f64,
    /// Make the same call N times, one after the other, and print latency percentiles on stderr.
    #[arg(long, value_name = "N", default_value_t = 1)]
    repeat: u32,
    /// How to show the progress the plugin reports (SPEC.md §14): a bar on a terminal (`auto`),
    /// `bar`, one `progress: DONE/TOTAL MESSAGE` line per report on stderr (`lines`), or `off`
    /// (progress is then not asked for).
    #[arg(long, value_enum, default_value_t = ProgressMode::Auto)]
    progress: ProgressMode,
    /// The plugin's command line, then the method, then optionally the params: a JSON object,
    /// or `-` to read it from stdin (`{}` when left out).
    #[arg(last = true, required = true, value_name = "PLUGIN COMMAND LINE> <METHOD> [PARAMS")]
    words: Vec<String>,
}

/// What the words after `--` mean.
#[derive(Debug, PartialEq)]
struct Words<'a> {
    command: &'a [String],
    method: &'a str,
    params: Option<&'a str>,
}

/// Splits `<command line> <method> [params]`: the last word is the params when it is `-` or
/// starts with `{`, and the method is the word before them.
fn split_words(words: &[String]) -> anyhow::Result<Words<'_>> {
    let (params, rest) = match words.split_last() {
        Some((last, rest)) if last == "-" || last.trim_start().starts_with('{') => {
            (Some(last.as_str()), rest)
        }
        _ => (None, words),
    };
    match rest.split_last() {
        Some((method, command)) if !command.is_empty() => Ok(Words { command, method, params }),
        _ => anyhow::bail!("expected `-- <plugin command line> <method> [params]`, got {words:?}"),
    }
}

/// The params as sent: the JSON object with the `--bytes` fields beside it, serialized together
/// so that the bytes become attachments when the session negotiated them.
#[derive(Serialize)]
struct Params<'a> {
    #[serde(flatten)]
    json: &'a Map<String, Value>,
    #[serde(flatten)]
    bytes: &'a BTreeMap<String, Bytes>,
}

pub(crate) async fn run(args: CallArgs) -> Result<u8, Failure> {
    let words = split_words(&args.words).map_err(Failure::failed)?;
    let json = read_params(words.params).await.map_err(Failure::failed)?;
    let mut bytes = BTreeMap::new();
    for (field, path) in &args.bytes {
        bytes.insert(field.clone(), Bytes::from(read_file(path).await.map_err(Failure::failed)?));
    }
    let timeout = Duration::try_from_secs_f64(args.timeout)
        .map_err(|e| Failure::failed(anyhow::anyhow!("--timeout {}: {e}", args.timeout)))?;
    let started = args.launch.start(words.command).await.map_err(Failure::not_started)?;
    let plugin = started.plugin;
    let mut latencies = Vec::new();
    let mut outcome = Ok(Value::Null);
    for _ in 0..args.repeat.max(1) {
        let mut json = json.clone();
        for spec in &args.handle {
            let (field, interface) = spec.split_once('=').unwrap_or((spec, spec));
            let handle = plugin.serve_handle(BuiltinHandle::new(interface));
            let value = serde_json::to_value(&handle).map_err(Failure::failed)?;
            json.insert(field.to_owned(), value);
        }
        let sent = Instant::now();
        let call = plugin
            .peer()
            .call_as::<_, Shown>(words.method.to_owned(), &Params { json: &json, bytes: &bytes });
        outcome = match args.progress.resolved() {
            ProgressMode::Off | ProgressMode::Auto => call.timeout(timeout).await.map(|Shown(v)| v),
            // Every report, as it comes (the hook runs on the session's reader: one short write).
            ProgressMode::Lines => call
                .on_progress(|p| eprintln!("{}", crate::progress::line(p)))
                .timeout(timeout)
                .await
                .map(|Shown(v)| v),
            // A bar only needs the latest report.
            ProgressMode::Bar => {
                let (call, rx) = call.watch_progress();
                let (done, ended) = tokio::sync::oneshot::channel();
                let shown = tokio::spawn(crate::progress::show_bar(rx, ended));
                let result = call.timeout(timeout).await.map(|Shown(v)| v);
                let _ = done.send(());
                let _ = shown.await;
                result
            }
        };
        latencies.push(sent.elapsed());
        if outcome.is_err() {
            break;
        }
    }
    let status = match outcome {
        Ok(result) => {
            let text = serde_json::to_string_pretty(&result).map_err(Failure::failed)?;
            println!("{text}");
            if args.repeat > 1 {
                eprintln!("{}", percentiles(&mut latencies));
            }
            0
        }
        Err(error) => {
            eprint!("{}", describe(&plugin, words.method, &error).await);
            crate::EXIT_CALL_FAILED
        }
    };
    let _ = plugin.shutdown().await;
    Ok(status)
}

/// An error for a person: the error object's code, message and data, or what else happened.
async fn describe(plugin: &PluginProcess, method: &str, error: &CallError) -> String {
    let name = plugin.name();
    match error.remote() {
        Some(remote) => {
            let mut text =
                format!("plugin {name}: {method} failed: error {}: {}\n", remote.code, remote.message);
            if let Some(data) = &remote.data {
                let data = serde_json::to_string_pretty(data).unwrap_or_else(|_| data.to_string());
                text.push_str(&format!("data: {data}\n"));
            }
            text
        }
        None => {
            // When the session ended because the plugin exited, say how (status and stderr).
            let exit = match error.close_reason() {
                Some(_) => tokio::time::timeout(Duration::from_secs(2), plugin.exited()).await.ok(),
                None => None,
            };
            match exit {
                Some(exit) => format!("plugin {name}: {method} failed: the plugin exited with {exit}\n"),
                None => format!("plugin {name}: {method} failed: {error}\n"),
            }
        }
    }
}

/// `n=… p50=… p90=… p99=… max=…` in milliseconds (nearest rank).
fn percentiles(latencies: &mut [Duration]) -> String {
    latencies.sort();
    let at = |p: f64| {
        let rank = ((p / 100.0) * latencies.len() as f64).ceil() as usize;
        let index = rank.clamp(1, latencies.len().max(1)) - 1;
        latencies.get(index).map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    };
    format!(
        "n={} p50={:.3}ms p90={:.3}ms p99={:.3}ms max={:.3}ms",
        latencies.len(),
        at(50.0),
        at(90.0),
        at(99.0),
        at(100.0)
    )
}

async fn read_params(params: Option<&str>) -> anyhow::Result<Map<String, Value>> {
    let text = match params {
        None => return Ok(Map::new()),
        Some("-") => {
            let bytes = read_file(&PathBuf::from("-")).await?;
            String::from_utf8(bytes).context("the params on stdin are not UTF-8")?
        }
        Some(text) => text.to_owned(),
    };
    match serde_json::from_str::<Value>(&text).context("the params are not JSON")? {
        Value::Object(map) => Ok(map),
        other => anyhow::bail!("the params must be a JSON object, not {other}"),
    }
}

/// A file's bytes, or stdin's for `-`.
async fn read_file(path: &PathBuf) -> anyhow::Result<Vec<u8>> {
    if path.as_os_str() == "-" {
        let mut buf = Vec::new();
        tokio::io::AsyncReadExt::read_to_end(&mut tokio::io::stdin(), &mut buf)
            .await
            .context("reading stdin")?;
        return Ok(buf);
    }
    tokio::fs::read(path).await.with_context(|| format!("reading {}", path.display()))
}

fn parse_pair(text: &str) -> Result<(String, PathBuf), String> {
    match text.split_once('=') {
        Some((field, file)) if !field.is_empty() && !file.is_empty() => Ok((field.to_owned(), file.into())),
        _ => Err(format!("{text:?} is not FIELD=FILE")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(list: &[&str]) -> Vec<String> {
        list.iter().map(|w| (*w).to_owned()).collect()
    }

    #[test]
    fn the_method_and_params_come_last() {
        let w = words(&["python3", "kv.py", "kv.get", r#"{"key":"a"}"#]);
        let split = split_words(&w).ok();
        assert_eq!(
            split.as_ref().map(|s| (s.command.len(), s.method, s.params)),
            Some((2, "kv.get", Some(r#"{"key":"a"}"#)))
        );
        let w = words(&["kv", "tether/ping"]);
        assert_eq!(
            split_words(&w).ok().map(|s| (s.command.len(), s.method, s.params)),
            Some((1, "tether/ping", None))
        );
        assert!(split_words(&words(&["kv.get"])).is_err());
    }

    #[test]
    fn percentiles_use_the_nearest_rank() {
        let mut l: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(percentiles(&mut l), "n=100 p50=50.000ms p90=90.000ms p99=99.000ms max=100.000ms");
    }
}
