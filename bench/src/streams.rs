//! Bulk bytes through streams (SPEC.md §12) and the attachment check of a language's plugins:
//! `stream_total` bytes (1 GiB) read from `blob.produce` and written to `blob.count` through
//! `tether-host`, in MB/s (so with `vs_pipe` against the echo bandwidth), and the peak RSS of
//! both processes while a stream runs.

use std::time::{Duration, Instant};

use anyhow::Context as _;
use futures::StreamExt as _;
use tether_host::interfaces::blob::{CountParams, ProduceParams};
use tether_host::interfaces::{BlobClient, KvClient};
use tether_host::stream::ReadStream;
use tether_host::PluginProcess;

use crate::config::Counts;
use crate::report::{Results, Unit};
use crate::scenario::PluginCmd;
use crate::stats;

/// `VmRSS` and `VmHWM` of a process in KiB.
fn rss(pid: u32) -> Option<(f64, f64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| -> Option<f64> {
        status.lines().find_map(|l| l.strip_prefix(name))?.trim().trim_end_matches("kB").trim().parse().ok()
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

/// Notes whether the `kv` plugin negotiated attachments, which decides whether the language's
/// `put_16m`/`get_16m` rows carried raw attachments or base64.
pub async fn note_attachments(kv: &PluginCmd, title: &str, r: &mut Results) {
    let started = PluginProcess::builder(&kv.program).args(&kv.args).offer::<KvClient>().start().await;
    match started {
        Ok(plugin) => {
            let negotiated = plugin.initialize_result().capabilities.attachments.is_some();
            r.note(if negotiated {
                format!("{title}: the kv plugin negotiated attachments: its 16 MiB put/get rows carry raw bytes")
            } else {
                format!(
                    "{title}: the kv plugin does not announce attachments: its 16 MiB put/get rows are base64 (the same code path uses attachments once it does)"
                )
            });
            plugin.shutdown().await;
        }
        Err(e) => r.note(format!("{title}: cannot check the kv plugin's attachments: {e:#}")),
    }
}

/// The stream rows of one language, with `blob` the language's blob plugin.
pub async fn measure(
    blob: &PluginCmd,
    c: &Counts,
    prefix: &str,
    section: &str,
    r: &mut Results,
) -> anyhow::Result<()> {
    let plugin = PluginProcess::builder(&blob.program)
        .args(&blob.args)
        .offer::<BlobClient>()
        .call_timeout(Duration::from_secs(600))
        .start()
        .await
        .context("starting the blob plugin")?;
    if plugin.initialize_result().capabilities.streams.is_none() {
        r.note(format!("{section}: the blob plugin does not announce streams; stream rows skipped"));
        plugin.shutdown().await;
        return Ok(());
    }
    let client = plugin.client::<BlobClient>()?;
    let total = c.stream_total;
    let mb = total as f64 / 1e6;
    let host_pid = std::process::id();
    let (host_before, _) = rss(host_pid).unwrap_or_default();

    // The plugin produces, the host reads every chunk.
    let t = Instant::now();
    let produced = client.produce(&ProduceParams { size: total }).await.context("blob.produce")?;
    let mut reader = produced.data.into_reader().map_err(|e| anyhow::anyhow!("{e}"))?;
    let (mut got, mut host_peak, mut next_sample) = (0u64, host_before, 0u64);
    while let Some(chunk) = reader.next().await {
        got += chunk.map_err(|e| anyhow::anyhow!("{e}"))?.len() as u64;
        if got >= next_sample {
            host_peak = host_peak.max(rss(host_pid).map_or(0.0, |r| r.0));
            next_sample += 64 << 20;
        }
    }
    let produce_secs = t.elapsed().as_secs_f64();
    anyhow::ensure!(got == total, "blob.produce streamed {got} bytes, not {total}");

    // The host writes, the plugin reads and hashes: one shared 1 MiB block, sent again and again.
    let block: bytes::Bytes = vec![0x5a; 1 << 20].into();
    let t = Instant::now();
    let (data, mut writer) = ReadStream::new();
    let call = client.count(&CountParams { data });
    let write = async move {
        let mut left = total;
        while left > 0 {
            let n = left.min(block.len() as u64) as usize;
            writer.send(block.slice(..n)).await?;
            left -= n as u64;
        }
        writer.finish().await
    };
    let (digest, written) = tokio::join!(call, write);
    let count_secs = t.elapsed().as_secs_f64();
    written.map_err(|e| anyhow::anyhow!("{e}"))?;
    let digest = digest.context("blob.count")?;
    anyhow::ensure!(digest.size == total, "blob.count read {} bytes, not {total}", digest.size);
    let (_, plugin_peak) = rss(plugin.pid()).unwrap_or_default();
    host_peak = host_peak.max(rss(host_pid).map_or(0.0, |r| r.0));

    let gib = total as f64 / (1u64 << 30) as f64;
    let label = |what: &str| {
        if gib >= 1.0 {
            format!("{what}, {gib:.0} GiB through one stream")
        } else {
            format!("{what}, {:.0} MiB through one stream", total as f64 / (1 << 20) as f64)
        }
    };
    r.add(
        format!("{prefix}.stream_produce"),
        section,
        label("blob.produce -> host reads"),
        Unit::MegabytesPerSec,
        stats::of_rates(mb, &[produce_secs]),
    );
    r.add(
        format!("{prefix}.stream_count"),
        section,
        label("host writes -> blob.count"),
        Unit::MegabytesPerSec,
        stats::of_rates(mb, &[count_secs]),
    );
    r.add(
        format!("{prefix}.stream_host_rss"),
        section,
        "host RSS during the streams (sampled peak; the bench process)",
        Unit::Kib,
        stats::one(host_peak),
    );
    r.note_last(format!("{:.0} KiB before the streams", host_before));
    r.add(
        format!("{prefix}.stream_plugin_rss"),
        section,
        "plugin peak RSS (VmHWM, whole life of the process)",
        Unit::Kib,
        stats::one(plugin_peak),
    );
    plugin.shutdown().await;
    Ok(())
}
