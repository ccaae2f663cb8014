//! Host memory per live plugin, measured in a fresh process (the `memory` mode of
//! `tether-bench-helper`), so that memory the benchmark process freed earlier (16 MiB values)
//! and that the allocator kept cannot hide the growth.
//!
//! The child starts one plugin through `tether-host` and calls it (the runtime, the host's
//! statics and the first buffers now exist), reads its own `VmRSS`, starts `N` more plugins and
//! calls each once, reads `VmRSS` again, and prints one line:
//! `host_kib_per_plugin=<f64> plugin_kib=<f64>`, the second being the mean `VmRSS` of the plugin
//! processes themselves.

use std::path::Path;

use anyhow::{anyhow, bail, Context as _};
use tether::interfaces::KvClient;
use tether::spec::interfaces::kv;
use tether_host::PluginProcess;

use crate::config::Flavor;
use crate::scenario::{helper_field, rss_kib, run_helper, PluginCmd};

/// `VmRSS` of a process in KiB.
fn rss_of(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

async fn start_and_call(program: &str, args: &[String]) -> anyhow::Result<PluginProcess> {
    let plugin = PluginProcess::builder(program)
        .args(args)
        .interface(kv::NAME, kv::VERSIONS.iter().copied())
        .start()
        .await?;
    let client = plugin.client::<KvClient>()?;
    client.put(&kv::PutParams { key: "k".into(), value: b"0123456789abcdef".to_vec().into() }).await?;
    client.get(&kv::KeyParams { key: "k".into() }).await?;
    Ok(plugin)
}

/// The child side: `memory <ct|mt> <n> <program> [args...]`.
pub fn child_main(args: &[String]) -> anyhow::Result<()> {
    let [flavor, n, program, rest @ ..] = args else {
        bail!("usage: tether-bench-helper memory ct|mt N PROGRAM [ARGS...]");
    };
    let flavor = match flavor.as_str() {
        "ct" => Flavor::CurrentThread,
        "mt" => Flavor::MultiThread,
        other => bail!("unknown runtime {other}"),
    };
    let n: usize = n.parse().context("N")?;
    let rt = flavor.runtime()?;
    rt.block_on(async {
        let first = start_and_call(program, rest).await?;
        let before = rss_kib().ok_or_else(|| anyhow!("no VmRSS"))?;
        let mut plugins = Vec::with_capacity(n);
        for _ in 0..n {
            plugins.push(start_and_call(program, rest).await?);
        }
        let after = rss_kib().ok_or_else(|| anyhow!("no VmRSS"))?;
        let children: Vec<f64> = plugins.iter().filter_map(|p| rss_of(p.pid())).collect();
        let plugin_kib = children.iter().sum::<f64>() / children.len().max(1) as f64;
        println!("host_kib_per_plugin={} plugin_kib={plugin_kib}", (after - before) / n as f64);
        for p in plugins {
            p.shutdown().await;
        }
        first.shutdown().await;
        anyhow::Ok(())
    })
}

/// The parent side: runs the helper's memory mode; `(host KiB per plugin, plugin RSS KiB)`.
pub fn measure(helper: &Path, flavor: Flavor, n: usize, cmd: &PluginCmd) -> anyhow::Result<(f64, f64)> {
    let text = run_helper(helper, &["memory", flavor.id(), &n.to_string()], cmd, "memory child")?;
    let field = |name: &str| -> anyhow::Result<f64> {
        helper_field(&text, name)?.parse().with_context(|| format!("{name} in {text:?}"))
    };
    Ok((field("host_kib_per_plugin")?, field("plugin_kib")?))
}
