//! Tether benchmarks: the host against the Rust, Python and Node example plugins and against a
//! raw pipe baseline measured in the same run, so that every figure is also a ratio that a
//! noisy machine distorts much less than an absolute time.
//!
//! Run it with `cargo bench -p tether-bench` (see `BENCHMARKS.md` at the repository root for
//! the flags, what each row measures and where the JSON goes). `tests/smoke.rs` runs the same
//! code paths with tiny counts, so the benchmark cannot rot. `-- --soak` runs [`soak`] instead:
//! whether the host's resources stay constant over a million calls and thousands of plugin
//! starts (`tests/soak.rs` runs it short).

pub mod child;
pub mod config;
pub mod direct;
pub mod go_plugin;
pub mod host;
pub mod in_memory;
pub mod inproc;
pub mod memory;
pub mod mini;
pub mod pipe;
pub mod plot;
pub mod plugins;
pub mod report;
pub mod scaling;
pub mod scenario;
pub mod soak;
pub mod stats;
pub mod streams;
pub mod trace;
pub mod workload;

use std::path::Path;

use anyhow::Context as _;

pub use crate::config::{Flavor, Lang, Mode, Options};
use crate::report::{ids, Results, Unit};

const KIB: usize = 1024;
const MIB: usize = 1024 * 1024;

/// Runs the benchmark, prints progress on stderr and returns the figures (with ratios and
/// targets filled in). Does not write the JSON; see [`run_and_report`].
pub fn run(opts: &Options) -> anyhow::Result<Results> {
    let c = opts.mode.counts();
    let mut r = Results::default();
    let helper = opts.helper.as_path();

    const PIPE: &str = "Raw pipe baseline (blocking read/write on the child's stdin/stdout, no runtime)";
    eprintln!("measuring the raw pipe baseline...");
    let pp = pipe::ping_pong(helper, 64, c.warmup, c.ping_pong, false).context("pipe ping-pong")?;
    r.add(ids::PIPE_PING_PONG, PIPE, "ping-pong, 64 B message", Unit::Micros, stats::of_costs(&pp.micros));
    let pinned = pipe::ping_pong(helper, 64, c.warmup, c.ping_pong, true).context("pinned pipe ping-pong")?;
    r.add(
        ids::PIPE_PING_PONG_PINNED,
        PIPE,
        "ping-pong, both on one CPU",
        Unit::Micros,
        stats::of_costs(&pinned.micros),
    );
    r.note_last("context switches on one CPU instead of cross-CPU wake-ups");
    if let Some(cpu) = pp.cpu_micros {
        r.add(ids::PIPE_CPU, PIPE, "CPU time per ping-pong, both processes", Unit::Micros, stats::one(cpu));
    }
    let s = pipe::echo_bandwidth(helper, 64 * KIB, c.echo_total, c.echo_reps).context("pipe echo")?;
    r.add(
        ids::PIPE_ECHO_BW,
        PIPE,
        "echo bandwidth, 64 KiB blocks",
        Unit::MegabytesPerSec,
        stats::of_rates(c.echo_total as f64 / 1e6, &s),
    );
    let (puts, gets) = pipe::attachment(helper, 16 * MIB, c.attach_reps).context("pipe attachment")?;
    let mb16 = (16 * MIB) as f64 / 1e6;
    r.add(
        ids::ATTACH_PUT_16M,
        PIPE,
        "what-if: 16 MiB put as raw bytes",
        Unit::MegabytesPerSec,
        stats::of_rates(mb16, &puts),
    );
    r.note_last("a binary attachment after a header instead of base64 in JSON");
    r.add(
        ids::ATTACH_GET_16M,
        PIPE,
        "what-if: 16 MiB get as raw bytes",
        Unit::MegabytesPerSec,
        stats::of_rates(mb16, &gets),
    );
    let s = pipe::spawn_to_first_echo(helper, c.spawn_reps).context("pipe spawn")?;
    r.add(ids::PIPE_SPAWN, PIPE, "spawn + first echo (raw helper)", Unit::Millis, stats::of_costs(&s));
    for (lang, program, args, id) in [
        (Lang::Python, &opts.python, &["-c", "pass"][..], ids::BARE_PYTHON),
        (Lang::Node, &opts.node, &["-e", "0"][..], ids::BARE_NODE),
    ] {
        if !opts.langs.contains(&lang) {
            continue;
        }
        if !program.exists() {
            continue;
        }
        let s = pipe::bare_start(program, args, c.spawn_reps)
            .with_context(|| format!("{} start", program.display()))?;
        let label = format!("bare {} {}", program.display(), args.join(" "));
        r.add(id, PIPE, label, Unit::Millis, stats::of_costs(&s));
    }

    // go-plugin in the same run, when Go and its packages are installed (bench/go-plugin/).
    let mut go = None;
    if opts.go_plugin {
        eprintln!("building and measuring go-plugin...");
        match go_plugin::build() {
            Ok(Ok(built)) => {
                go_plugin::measure(&built, &c, &mut r);
                go = Some(built);
            }
            Ok(Err(skipped)) => r.note(skipped),
            Err(e) => r.note(format!("go-plugin: {e:#}")),
        }
    }

    // The connection alone, in memory (no process): what it costs per call by itself.
    for &flavor in &opts.flavors {
        let rt = flavor.runtime().context("building the tokio runtime")?;
        let prefix = format!("mem.{}", flavor.id());
        let section =
            format!("The connection alone, in memory (tokio duplex, no process), {}", flavor.title());
        eprintln!("measuring: {section}...");
        if let Err(e) = rt.block_on(in_memory::measure(&c, &prefix, &section, &mut r)) {
            r.note(format!("{section}: {e:#}"));
        }
    }

    let host_backend = host::HostBackend::default();
    for &lang in &opts.langs {
        let plugins = match plugins::find(lang, opts) {
            Ok(p) => p,
            Err(e) => {
                r.note(format!("{} plugins skipped: {e:#}", lang.title()));
                continue;
            }
        };
        if plugins.counter.is_none() {
            r.note(format!("{}: no counter plugin, callback figure skipped", lang.title()));
        }
        let slow = lang != Lang::Rust;
        for &flavor in &opts.flavors {
            let rt = flavor.runtime().context("building the tokio runtime")?;
            let sel = scenario::Selection {
                start: true,
                checksum: lang == Lang::Rust,
                callback: true,
                one_cpu: flavor == Flavor::CurrentThread,
            };
            let prefix = format!("{}.{}", lang.id(), flavor.id());
            let section = format!("{} plugins through tether-host, {}", lang.title(), flavor.title());
            eprintln!("measuring: {section}...");
            rt.block_on(scenario::measure(
                &host_backend,
                helper,
                &plugins.kv,
                plugins.counter.as_ref(),
                &c,
                slow,
                sel,
                &prefix,
                &section,
                &mut r,
            ));
            match memory::measure(helper, flavor, c.mem_plugins, &plugins.kv) {
                Ok((host, plugin)) => {
                    let label = format!("host RSS per live plugin (fresh process, over {})", c.mem_plugins);
                    r.add(
                        format!("{prefix}.{}", ids::MEM_PER_PLUGIN),
                        &section,
                        label,
                        Unit::Kib,
                        stats::one(host),
                    );
                    r.add(
                        format!("{prefix}.plugin_rss"),
                        &section,
                        "the plugin process's own RSS",
                        Unit::Kib,
                        stats::one(plugin),
                    );
                }
                Err(e) => r.note(format!("{section}: memory figure failed: {e:#}")),
            }
        }
        // Attachments and streams (SPEC.md §2.8, §12), on the first runtime flavor: whether the
        // 16 MiB rows above carried attachments, and 1 GiB through a stream each way.
        if let Some(&flavor) = opts.flavors.first() {
            let rt = flavor.runtime().context("building the tokio runtime")?;
            let prefix = format!("{}.{}", lang.id(), flavor.id());
            let section = format!("{} streams through tether-host, {}", lang.title(), flavor.title());
            rt.block_on(streams::note_attachments(&plugins.kv, lang.title(), &mut r));
            match &plugins.blob {
                None => r.note(format!("{section}: no blob plugin, stream rows skipped")),
                Some(blob) => {
                    eprintln!("measuring: {section}...");
                    if let Err(e) = rt.block_on(streams::measure(blob, &c, &prefix, &section, &mut r)) {
                        r.note(format!("{section}: {e:#}"));
                    }
                }
            }
        }
        if lang == Lang::Rust && !opts.flavors.is_empty() {
            let file = &plugins.kv.checksum_file;
            let size = std::fs::metadata(file).map(|m| m.len()).unwrap_or(0);
            let mut s = Vec::new();
            for _ in 0..c.start_reps.max(1) {
                let t = std::time::Instant::now();
                tether_host::sha256_file(file).context("hashing the kv plugin")?;
                s.push(t.elapsed().as_secs_f64() * 1e3);
            }
            let label = format!("SHA-256 of the kv binary ({:.1} MiB), alone", size as f64 / MIB as f64);
            r.add("rust.sha256_file", "The checksum option's cost", label, Unit::Millis, stats::of_costs(&s));
        }
        // Start in a fresh host process (nothing allocated yet), and for Rust how it depends on the
        // host's heap; current_thread runtime, 21 starts each.
        {
            const SECTION: &str =
                "Start in a fresh host process, and vs the host's heap (current_thread, 21 starts)";
            let mut runs = vec![(
                "start",
                0usize,
                format!("{}.fresh.{}", lang.id(), ids::START),
                format!("{}: tether-host start, parent-death signal on (fork), fresh host", lang.title()),
            )];
            if lang == Lang::Rust {
                runs.push((
                    "start",
                    200,
                    "rust.heap200.start_first_call".into(),
                    "Rust: tether-host start, signal on, host heap +200 MiB".into(),
                ));
                runs.push((
                    "start-no-pdeathsig",
                    0,
                    "rust.fresh.start_first_call_no_pdeathsig".into(),
                    "Rust: the same, signal off (the default: posix_spawn)".into(),
                ));
                runs.push((
                    "start-no-pdeathsig",
                    200,
                    "rust.heap200.start_first_call_no_pdeathsig".into(),
                    "Rust: heap +200 MiB, signal off (the default)".into(),
                ));
                runs.push((
                    "start-floor",
                    0,
                    "floor.rust.fresh.start_first_call".into(),
                    "Rust: floor client start, fresh host process".into(),
                ));
                runs.push((
                    "start-floor",
                    200,
                    "floor.rust.heap200.start_first_call".into(),
                    "Rust: floor client start, host heap +200 MiB".into(),
                ));
            }
            for (what, mib, id, label) in runs {
                match workload::run_start(helper, what, mib, &plugins.kv) {
                    Ok(ms) => r.add(id, SECTION, label, Unit::Millis, stats::of_costs(&ms)),
                    Err(e) => r.note(format!("{label}: {e:#}")),
                }
            }
        }
        // How cost grows with calls in flight, value size and live plugins (Rust, current_thread),
        // beside go-plugin and the pipe; plotted by `run_and_report`.
        if lang == Lang::Rust && opts.scaling {
            const SECTION: &str = "How cost grows";
            eprintln!("measuring: {SECTION}...");
            let rt = Flavor::CurrentThread.runtime().context("building the tokio runtime")?;
            if let Err(e) =
                rt.block_on(scaling::measure(helper, &plugins.kv, go.as_ref(), &c, opts.mode, &mut r))
            {
                r.note(format!("{SECTION}: {e:#}"));
            }
            scaling::measure_fleet(helper, &plugins.kv, &c, opts.mode, &mut r);
        }
        // The Rust plugins through the connection alone (`Session` over the child's pipes, no
        // tether-host supervision), on the first runtime flavor: what the host adds.
        if lang == Lang::Rust {
            if let Some(&flavor) = opts.flavors.first() {
                let rt = flavor.runtime().context("building the tokio runtime")?;
                let sel =
                    scenario::Selection { start: false, checksum: false, callback: true, one_cpu: false };
                let prefix = format!("direct.{}.{}", lang.id(), flavor.id());
                let section = format!(
                    "Rust plugins through the tether connection alone (no tether-host), {}",
                    flavor.title()
                );
                eprintln!("measuring: {section}...");
                rt.block_on(scenario::measure(
                    &direct::DirectBackend,
                    helper,
                    &plugins.kv,
                    plugins.counter.as_ref(),
                    &c,
                    slow,
                    sel,
                    &prefix,
                    &section,
                    &mut r,
                ));
            }
        }
        // What `tether trace` adds to a call (rust-host/cli/).
        if lang == Lang::Rust {
            let measured = trace::build_tether(opts.release_plugins).and_then(|tether| {
                let rt = Flavor::MultiThread.runtime().context("building the tokio runtime")?;
                eprintln!("measuring: tether trace vs direct...");
                rt.block_on(trace::measure(&tether, &plugins.kv, &c, &mut r))
            });
            if let Err(e) = measured {
                r.note(format!("tether trace rows skipped: {e:#}"));
            }
        }
        // The same Rust plugins built as libraries and loaded into the bench's process
        // (`rust-host/IN_PROCESS.md`), through the same host and typed clients, on the first
        // runtime flavor: the in-process trade-off against the process rows above.
        if lang == Lang::Rust {
            if let Some(&flavor) = opts.flavors.first() {
                let section =
                    format!("Rust plugins in-process (cdylib loaded by tether-host), {}", flavor.title());
                match plugins::build_rust_libraries(opts.release_plugins) {
                    Ok((kv_lib, counter_lib)) => {
                        let rt = flavor.runtime().context("building the tokio runtime")?;
                        let backend = host::HostBackend::in_process();
                        let sel = scenario::Selection {
                            start: true,
                            checksum: false,
                            callback: true,
                            one_cpu: false,
                        };
                        let prefix = format!("inproc.{}.{}", lang.id(), flavor.id());
                        eprintln!("measuring: {section}...");
                        rt.block_on(scenario::measure(
                            &backend,
                            helper,
                            &kv_lib,
                            counter_lib.as_ref(),
                            &c,
                            slow,
                            sel,
                            &prefix,
                            &section,
                            &mut r,
                        ));
                    }
                    Err(e) => r.note(format!("{section}: {e:#}")),
                }
            }
        }
        // The floor beside the Rust figures: the same scenarios through a minimal client.
        if lang == Lang::Rust {
            for &flavor in &opts.flavors {
                let rt = flavor.runtime().context("building the tokio runtime")?;
                let sel = scenario::Selection {
                    start: true,
                    checksum: false,
                    callback: true,
                    one_cpu: flavor == Flavor::CurrentThread,
                };
                let prefix = format!("floor.{}.{}", lang.id(), flavor.id());
                let section = format!(
                    "Floor: Rust plugins through the bench's minimal client (not a host), {}",
                    flavor.title()
                );
                eprintln!("measuring: {section}...");
                rt.block_on(scenario::measure(
                    &mini::MiniBackend,
                    helper,
                    &plugins.kv,
                    plugins.counter.as_ref(),
                    &c,
                    slow,
                    sel,
                    &prefix,
                    &section,
                    &mut r,
                ));
            }
        }
    }

    // The baseline again, to show how much the machine drifted during the run.
    let pp = pipe::ping_pong(helper, 64, c.warmup, c.ping_pong, false).context("pipe ping-pong")?;
    r.add(
        ids::PIPE_PING_PONG_END,
        "Raw pipe baseline, measured again at the end of the run",
        "ping-pong, 64 B message (end of run)",
        Unit::Micros,
        stats::of_costs(&pp.micros),
    );

    r.finish();
    Ok(r)
}

/// Runs, prints the table on stdout and writes the JSON to `opts.json`.
pub fn run_and_report(opts: &Options) -> anyhow::Result<Results> {
    let load = report::loadavg();
    let results = run(opts)?;
    println!("{}", results.table());
    let machine = report::Machine::now(load);
    println!(
        "machine: {} cores, kernel {}, load average {} at start, {} at end",
        machine.cores, machine.kernel, machine.loadavg_start, machine.loadavg_end
    );
    write_json(opts, machine, &results)?;
    if opts.scaling {
        let dir = opts.json.parent().map(Path::to_path_buf).unwrap_or_default();
        match plot::draw_scaling(&results, &dir) {
            Ok(paths) => {
                for p in paths {
                    println!("plot written to {}", p.display());
                }
            }
            Err(e) => eprintln!("note: the scaling plots were not drawn: {e:#}"),
        }
    }
    Ok(results)
}

fn write_json(opts: &Options, machine: report::Machine, results: &Results) -> anyhow::Result<()> {
    let path: &Path = &opts.json;
    report::write_json(path, opts.mode.name(), machine, results)
        .with_context(|| format!("writing {}", path.display()))?;
    println!("results written to {}", path.display());
    Ok(())
}
