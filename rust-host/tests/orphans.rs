//! What becomes of plugins when their host dies without a word (SIGKILL): with the default
//! options the Rust, Python and Node plugins see the end of their stdin and exit; a plugin that
//! does not exit at the end of stdin outlives its host unless it was started with
//! `parent_death_signal(true)`, in which case the kernel kills it.
//!
//! The test runs this binary a second time as the host (`TETHER_ORPHANS_HOST` set), reads the
//! plugins' process ids from it, kills it with SIGKILL and watches the process table. It has its
//! own `main` (no test harness), as the host role is no test.

// Without the harness, the lints that spare `cfg(test)` code apply: this is test code.
#![allow(clippy::panic, clippy::expect_used, clippy::unwrap_used)]

mod common;

use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{alive, eventually, python_kv, test_plugin};
use tether_host::{PluginBuilder, PluginProcess};
use tether_spec::interfaces::kv;
use tether_testkit::sdk_example;

const HOST_ENV: &str = "TETHER_ORPHANS_HOST";

fn main() {
    if std::env::var_os(HOST_ENV).is_some() {
        host();
        return;
    }
    print!("test plugins_end_with_a_killed_host_and_a_lingering_one_only_with_the_parent_death_signal ... ");
    plugins_end_with_a_killed_host_and_a_lingering_one_only_with_the_parent_death_signal();
    println!("ok");
}

fn kv_example(builder: PluginBuilder) -> PluginBuilder {
    builder.interface(kv::NAME, kv::VERSIONS.iter().copied()).start_timeout(Duration::from_secs(30))
}

/// The host role: starts the plugins with the default options (and one lingering plugin with
/// and one without the parent-death signal), prints `NAME PID` for each once all answered a
/// ping, and waits to be killed.
fn host() {
    let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() else {
        std::process::exit(3);
    };
    rt.block_on(async {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let plugins = [
            ("rust", kv_example(PluginProcess::builder(sdk_example("kv")))),
            ("python", python_kv("orphan-python")),
            ("node", kv_example(PluginProcess::builder("node").arg(root.join("examples-node/kv.mjs")))),
            // The test plugin in this mode does not exit at the end of its stdin.
            ("lingering", test_plugin("orphan-lingering", "ignore-sigterm")),
            (
                "lingering-pdeathsig",
                test_plugin("orphan-pdeathsig", "ignore-sigterm").parent_death_signal(true),
            ),
        ];
        let mut running = Vec::new();
        for (name, builder) in plugins {
            let plugin = builder.name(name).start().await.unwrap_or_else(|e| panic!("start {name}: {e}"));
            plugin.ping(Duration::from_secs(30)).await.unwrap_or_else(|e| panic!("ping {name}: {e}"));
            println!("{name} {}", plugin.pid());
            running.push(plugin);
        }
        println!("ready");
        std::future::pending::<()>().await;
    });
}

fn plugins_end_with_a_killed_host_and_a_lingering_one_only_with_the_parent_death_signal() {
    let exe = std::env::current_exe().expect("this test's executable");
    let mut host = Command::new(exe)
        .env(HOST_ENV, "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start the host");
    let stdout = host.stdout.take().expect("the host's stdout");
    let mut pids = Vec::new();
    for line in BufReader::new(stdout).lines() {
        let line = line.expect("a line from the host");
        if line == "ready" {
            break;
        }
        let (name, pid) = line.split_once(' ').expect("NAME PID");
        pids.push((name.to_owned(), pid.parse::<u32>().expect("a pid")));
    }
    assert_eq!(pids.len(), 5, "the host stopped before starting every plugin: {pids:?}");
    for (name, pid) in &pids {
        assert!(alive(*pid), "{name} ({pid}) is not running before the host is killed");
    }
    host.kill().expect("SIGKILL the host");
    let status = host.wait().expect("reap the host");
    assert_eq!(std::os::unix::process::ExitStatusExt::signal(&status), Some(9));

    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let mut outlived = Vec::new();
    let mut lingering = None;
    for (name, pid) in &pids {
        if name == "lingering" {
            lingering = Some(*pid);
        } else if !rt.block_on(eventually(Duration::from_secs(30), || !alive(*pid))) {
            outlived.push(format!("{name} ({pid})"));
        }
    }
    let lingering = lingering.expect("the lingering plugin's pid");
    // The lingering plugin exits neither at the end of its stdin nor by a signal of its host:
    // what the parent-death signal is for. Look, then end it (and any other left) by hand.
    let still = alive(lingering);
    for (_, pid) in &pids {
        if let Some(pid) = i32::try_from(*pid).ok().and_then(rustix::process::Pid::from_raw) {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
        }
    }
    assert!(outlived.is_empty(), "plugins outlived their killed host by 30 s: {outlived:?}");
    assert!(still, "the plugin that ignores the end of stdin was gone without the parent-death signal");
}
