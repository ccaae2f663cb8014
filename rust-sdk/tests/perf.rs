//! A quick throughput measurement, not run by default:
//! `cargo test --release -p tether --test perf -- --ignored --nocapture`.
#![allow(missing_docs)]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::process::Stdio;
use std::time::{Duration, Instant};

use common::MemKv;
use tether::interfaces::{KvClient, KvServer};
use tether::spec::interfaces::kv;
use tether::spec::{Initialize, InitializeParams, PeerInfo, REFERENCE_COOKIE_KEY, REFERENCE_COOKIE_VALUE};
use tether::{Connection, Options, Peer, Router};

const SEQUENTIAL: u32 = 20_000;
const PER_TASK: u32 = 2_000;
const IN_FLIGHT: u32 = 64;

async fn measure(label: &str, peer: Peer) {
    let kv = KvClient::new(peer);
    kv.put(&kv::PutParams { key: "k".into(), value: b"hello".to_vec().into() }).await.unwrap();
    let get = kv::KeyParams { key: "k".into() };
    for _ in 0..1000 {
        kv.get(&get).await.unwrap();
    }
    let start = Instant::now();
    for _ in 0..SEQUENTIAL {
        kv.get(&get).await.unwrap();
    }
    let sequential = start.elapsed() / SEQUENTIAL;
    let start = Instant::now();
    let tasks: Vec<_> = (0..IN_FLIGHT)
        .map(|_| {
            let kv = kv.clone();
            let get = get.clone();
            tokio::spawn(async move {
                for _ in 0..PER_TASK {
                    kv.get(&get).await.unwrap();
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let rate = f64::from(IN_FLIGHT * PER_TASK) / start.elapsed().as_secs_f64();
    println!(
        "{label}: {:.1} µs per sequential kv.get, {:.0} kv.get/s with {IN_FLIGHT} in flight",
        sequential.as_secs_f64() * 1e6,
        rate
    );
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

#[test]
#[ignore = "a measurement; run it in release mode"]
fn in_memory() {
    runtime().block_on(async {
        let (a, b) = tokio::io::duplex(1 << 16);
        let (ar, aw) = tokio::io::split(a);
        let (br, bw) = tokio::io::split(b);
        let (host, _) = Connection::spawn(ar, aw, Options::new(), Router::new());
        let _plugin = Connection::spawn(
            br,
            bw,
            Options::new(),
            Router::new().interface(KvServer::new(MemKv::default())),
        );
        measure("in memory (duplex, one current-thread runtime for both sides)", host).await;
    });
}

/// Starts a built example plugin (next to this test binary) and a host connection to it; call
/// inside the runtime. The child is killed when dropped.
fn spawn_example(name: &str, options: Options) -> (tokio::process::Child, Peer) {
    let exe = std::env::current_exe().unwrap();
    let path = exe.parent().unwrap().parent().unwrap().join("examples").join(name);
    let mut child = tokio::process::Command::new(path)
        .env(REFERENCE_COOKIE_KEY, REFERENCE_COOKIE_VALUE)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let (host, _) =
        Connection::spawn(child.stdout.take().unwrap(), child.stdin.take().unwrap(), options, Router::new());
    (child, host)
}

/// Opens the session, offering one interface.
async fn initialize(host: &Peer, interface: &str, versions: Vec<u32>) {
    host.call::<Initialize>(&InitializeParams {
        protocol_versions: vec![1],
        interfaces: [(interface.to_owned(), versions)].into(),
        host: PeerInfo::new("perf", "0"),
        capabilities: Default::default(),
        max_frame_size: tether::spec::DEFAULT_MAX_FRAME_SIZE as u64,
        log_level: None,
    })
    .await
    .unwrap();
}

#[test]
#[ignore = "a measurement; run it in release mode"]
fn kv_example_over_pipes() {
    runtime().block_on(async {
        let (_child, host) = spawn_example("kv", Options::new().default_timeout(Duration::from_secs(10)));
        let start = Instant::now();
        initialize(&host, "kv", vec![1, 2]).await;
        println!(
            "kv example: {:.2} ms from spawn to the initialize answer",
            start.elapsed().as_secs_f64() * 1e3
        );
        measure("kv example over pipes (host on a current-thread runtime)", host).await;
    });
}

struct HostAdder;

impl tether::interfaces::Adder for HostAdder {
    async fn sum(
        &self,
        p: tether::spec::interfaces::counter::SumParams,
    ) -> Result<tether::spec::interfaces::counter::SumResult, tether::Error> {
        Ok(tether::spec::interfaces::counter::SumResult { result: p.a + p.b })
    }
}

#[test]
#[ignore = "a measurement; run it in release mode"]
fn counter_example_callbacks() {
    use tether::interfaces::{AdderServer, CounterClient};
    use tether::spec::interfaces::counter;
    runtime().block_on(async {
        let (_child, host) = spawn_example("counter", Options::new());
        initialize(&host, "counter", vec![1]).await;
        let counter = CounterClient::new(host.clone());
        let n = 10_000u32;
        let start = Instant::now();
        for _ in 0..n {
            let adder = host.serve_handle(AdderServer::new(HostAdder));
            let params = counter::PutParams { key: "k".into(), value: 1, adder: adder.clone() };
            counter.put(&params).handle(&adder).await.unwrap();
        }
        println!(
            "counter example: {:.1} µs per counter.put with one sum callback (sequential)",
            (start.elapsed() / n).as_secs_f64() * 1e6
        );
    });
}
