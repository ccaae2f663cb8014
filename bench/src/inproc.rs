//! `--inproc-only`: the in-process rows (issue 15, `rust-host/IN_PROCESS.md`) beside the same rows
//! through a plugin process, in one short run on the first runtime flavor: sequential `kv.get`,
//! 64 calls in flight, `counter.put` with its callback, start to first call, bulk values. The
//! ratio of the two is what the in-process section of BENCHMARKS.md reports.

use anyhow::Context as _;

use crate::config::{Flavor, Lang, Options};
use crate::report::Results;
use crate::{host, plugins, scenario};

/// Measures the Rust plugins through `tether-host` as processes and as libraries, and prints
/// the table (no JSON: a partial run must not replace the full run's results).
pub fn run_only(opts: &Options) -> anyhow::Result<Results> {
    let mut r = Results::default();
    let c = opts.mode.counts();
    let procs = plugins::find(Lang::Rust, opts)?;
    let (kv_lib, counter_lib) = plugins::build_rust_libraries(opts.release_plugins)?;
    let flavor = opts.flavors.first().copied().unwrap_or(Flavor::CurrentThread);
    let rt = flavor.runtime().context("building the tokio runtime")?;
    let sel = scenario::Selection { start: true, checksum: false, callback: true, one_cpu: false };
    let process = host::HostBackend::default();
    let library = host::HostBackend::in_process();
    let runs = [
        (&process, &procs.kv, procs.counter.as_ref(), "rust", "Rust plugins through tether-host"),
        (
            &library,
            &kv_lib,
            counter_lib.as_ref(),
            "inproc.rust",
            "Rust plugins in-process (cdylib loaded by tether-host)",
        ),
    ];
    for (backend, kv, counter, id, title) in runs {
        let prefix = format!("{id}.{}", flavor.id());
        let section = format!("{title}, {}", flavor.title());
        eprintln!("measuring: {section}...");
        rt.block_on(scenario::measure(
            backend,
            &opts.helper,
            kv,
            counter,
            &c,
            false,
            sel,
            &prefix,
            &section,
            &mut r,
        ));
    }
    r.finish();
    println!("{}", r.table());
    Ok(r)
}
