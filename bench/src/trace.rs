//! What `tether trace` (`rust-host/cli/`) adds to a call: sequential `kv.get`s on the Rust kv
//! example started directly and through the proxy (its log written to a file), in alternating
//! blocks so that both see the same machine.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, Context as _};
use tether_host::interfaces::KvClient;
use tether_host::spec::interfaces::kv;
use tether_host::{PluginBuilder, PluginProcess};

use crate::config::{Counts, Options};
use crate::report::{Results, Unit};
use crate::scenario::PluginCmd;
use crate::stats;

const SECTION: &str =
    "tether trace: the Rust kv example through the proxy vs directly (tether-host, multi-thread)";
/// Blocks of calls, alternating between the two plugins.
const BLOCKS: usize = 10;

/// Builds the `tether` binary (package `tether-cli`) like the example plugins.
pub fn build_tether(release: bool) -> anyhow::Result<PathBuf> {
    tether_testkit::cargo_build("tether-cli", tether_testkit::Target::Bin, "tether", release)
        .map_err(|e| anyhow!("{e}"))
}

/// Adds `trace.rust.get_seq_direct` and `trace.rust.get_seq_traced` (µs per call).
pub async fn measure(tether: &Path, kv_cmd: &PluginCmd, c: &Counts, r: &mut Results) -> anyhow::Result<()> {
    let log = std::env::temp_dir().join(format!("tether-bench-trace-{}.log", std::process::id()));
    let direct = PluginProcess::builder(&kv_cmd.program).args(&kv_cmd.args);
    let traced = PluginProcess::builder(tether)
        .args(["trace", "--out"])
        .arg(&log)
        .arg("--")
        .arg(&kv_cmd.program)
        .args(&kv_cmd.args);
    let result = series(direct, traced, c).await;
    let _ = std::fs::remove_file(&log);
    let (d, t) = result?;
    r.add(
        "trace.rust.get_seq_direct",
        SECTION,
        "sequential kv.get, 16 B value, direct",
        Unit::Micros,
        stats::of_costs(&d),
    );
    r.add(
        "trace.rust.get_seq_traced",
        SECTION,
        "sequential kv.get, 16 B value, through tether trace",
        Unit::Micros,
        stats::of_costs(&t),
    );
    r.note_last("the proxy relays both pipes and writes a text line per frame to a file");
    Ok(())
}

async fn series(
    direct: PluginBuilder,
    traced: PluginBuilder,
    c: &Counts,
) -> anyhow::Result<(Vec<f64>, Vec<f64>)> {
    let start = |b: PluginBuilder| async move {
        let plugin = b.interface(kv::NAME, kv::VERSIONS.iter().copied()).start().await?;
        let client = plugin.client::<KvClient>()?;
        client
            .put(&kv::PutParams { key: "bench-16".into(), value: b"0123456789abcdef".to_vec().into() })
            .await?;
        anyhow::Ok((plugin, client))
    };
    let (direct, direct_kv) = start(direct).await.context("starting kv")?;
    let (traced, traced_kv) = start(traced).await.context("starting kv through tether trace")?;
    let key = kv::KeyParams { key: "bench-16".into() };
    for _ in 0..c.warmup {
        direct_kv.get(&key).await?;
        traced_kv.get(&key).await?;
    }
    let per_block = (c.get_seq / BLOCKS).max(1);
    let (mut d, mut t) = (Vec::new(), Vec::new());
    for _ in 0..BLOCKS {
        for (client, out) in [(&direct_kv, &mut d), (&traced_kv, &mut t)] {
            for _ in 0..per_block {
                let started = std::time::Instant::now();
                client.get(&key).await?;
                out.push(started.elapsed().as_secs_f64() * 1e6);
            }
        }
    }
    direct.shutdown().await;
    traced.shutdown().await;
    Ok((d, t))
}

/// `--trace-only`: the two rows above and nothing else.
pub fn run_only(opts: &Options) -> anyhow::Result<Results> {
    let mut r = Results::default();
    let c = opts.mode.counts();
    let tether = build_tether(opts.release_plugins)?;
    let (kv, _, _) = crate::plugins::build_rust(opts.release_plugins)?;
    let kv = PluginCmd { program: kv.clone(), args: Vec::new(), checksum_file: kv };
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("tokio runtime")?;
    eprintln!("measuring: {SECTION}...");
    rt.block_on(measure(&tether, &kv, &c, &mut r))?;
    r.finish();
    println!("{}", r.table());
    Ok(r)
}
