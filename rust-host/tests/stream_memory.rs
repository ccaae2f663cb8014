//! A producer 100× faster than its consumer keeps both processes' memory within the stream's
//! window plus a constant (SPEC.md §12.3): the `blob` example produces as fast as it can, and
//! this host reads slowly. Its own file, so that no other test shares this process's RSS.
//!
//! Run with `--nocapture` to see the figures.

#![allow(clippy::expect_used, clippy::panic, clippy::unwrap_used)]

use std::time::{Duration, Instant};

use futures::StreamExt as _;
use tether_host::interfaces::blob::ProduceParams;
use tether_host::interfaces::BlobClient;
use tether_host::PluginProcess;
use tether_testkit::sdk_example;

/// `VmRSS` and `VmHWM` (peak) of a process, in KiB, from `/proc/<pid>/status`.
fn rss_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc status");
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("field")
    };
    (field("VmRSS:"), field("VmHWM:"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_consumer_bounds_both_processes_memory() {
    const SIZE: u64 = 32 << 20;
    const WINDOW_KIB: u64 = 1024;
    // Generous: allocator slack, the write buffers of both sides, a chunk in flight each way.
    const CONSTANT_KIB: u64 = 24 * 1024;
    let plugin = PluginProcess::builder(sdk_example("blob"))
        .offer::<BlobClient>()
        .call_timeout(Duration::from_secs(60))
        .start()
        .await
        .expect("start");
    let blob = plugin.client::<BlobClient>().expect("client");
    // Warm both sides up with a stream read as fast as possible (the producer's rate when
    // nothing holds it back), then take the baselines.
    let warm = blob.produce(&ProduceParams { size: 64 << 20 }).await.expect("produce");
    let mut r = warm.data.into_reader().expect("reader");
    let fast = Instant::now();
    while let Some(chunk) = r.next().await {
        chunk.expect("chunk");
    }
    let fast_rate = (64u64 << 20) as f64 / fast.elapsed().as_secs_f64() / 1e6;
    let host_pid = std::process::id();
    let (host_base, _) = rss_kib(host_pid);
    let (plugin_base, _) = rss_kib(plugin.pid());

    let produced = blob.produce(&ProduceParams { size: SIZE }).await.expect("produce");
    let mut reader = produced.data.into_reader().expect("reader");
    let (mut got, mut host_peak, mut plugin_peak) = (0u64, host_base, plugin_base);
    let started = Instant::now();
    // The consumer takes 64 KiB every 6 ms (about 10 MB/s at most, 100× below the ~1 GB/s of the producer; the producer's rate is
    // printed beside it), and samples both processes' RSS as it goes.
    let mut pending = bytes::Bytes::new();
    while got < SIZE {
        if pending.is_empty() {
            pending = reader.next().await.expect("more data").expect("chunk");
        }
        let n = pending.len().min(64 * 1024);
        let _ = pending.split_to(n);
        got += n as u64;
        if got % (1 << 20) < 64 * 1024 {
            host_peak = host_peak.max(rss_kib(host_pid).0);
            plugin_peak = plugin_peak.max(rss_kib(plugin.pid()).0);
        }
        tokio::time::sleep(Duration::from_millis(6)).await;
    }
    assert!(reader.next().await.is_none(), "the stream ends after {SIZE} bytes");
    let secs = started.elapsed().as_secs_f64();
    let (host_growth, plugin_growth) = (host_peak - host_base, plugin_peak - plugin_base);
    println!(
        "producer unthrottled {fast_rate:.0} MB/s; consumer {} MiB at {:.1} MB/s: host RSS {host_base} KiB -> peak {host_peak} KiB (+{host_growth}), plugin RSS {plugin_base} KiB -> peak {plugin_peak} KiB (+{plugin_growth}); bound {} KiB",
        SIZE >> 20,
        SIZE as f64 / secs / 1e6,
        WINDOW_KIB + CONSTANT_KIB
    );
    assert!(host_growth <= WINDOW_KIB + CONSTANT_KIB, "the host grew by {host_growth} KiB");
    assert!(plugin_growth <= WINDOW_KIB + CONSTANT_KIB, "the plugin grew by {plugin_growth} KiB");
    plugin.shutdown().await;
}
