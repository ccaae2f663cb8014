//! The example plugins as processes, driven over pipes by a tiny host built on the connection.
#![allow(missing_docs)]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::Events;
use tether::interfaces::{Adder, AdderServer, CounterClient, KvClient};
use tether::spec::interfaces::{counter, kv};
use tether::spec::{
    Empty, Initialize, InitializeParams, InitializeResult, LogParams, PeerInfo, Shutdown,
    DEFAULT_MAX_FRAME_SIZE, REFERENCE_COOKIE_KEY, REFERENCE_COOKIE_VALUE,
};
use tether::{CallError, Error, Peer, Router, Session};
use tokio::io::AsyncReadExt;
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

struct Plugin {
    child: Child,
    peer: Peer,
    logs: mpsc::UnboundedReceiver<LogParams>,
    events: Events,
}

fn start(name: &str, args: &[&str], host: Router) -> Plugin {
    let mut child = Command::from(tether_testkit::plugin_command(&tether_testkit::sdk_example(name)))
        .args(args)
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let (tx, logs) = mpsc::unbounded_channel();
    let host = host.on_notification(move |method, params, _| {
        if method == "$/log" {
            let _ = tx.send(serde_json::from_str::<LogParams>(params.get()).unwrap());
        }
    });
    let events = Events::default();
    let stdout = child.stdout.take().unwrap();
    let stdin = child.stdin.take().unwrap();
    let peer = Session::start(stdout, stdin, events.options(), host).into_peer();
    Plugin { child, peer, logs, events }
}

fn init_params(interfaces: &[(&str, &[u32])], log_level: &str) -> InitializeParams {
    InitializeParams {
        protocol_versions: vec![1],
        interfaces: interfaces.iter().map(|(n, v)| ((*n).to_owned(), v.to_vec())).collect(),
        host: PeerInfo::new("test-host", "0"),
        capabilities: Default::default(),
        max_frame_size: DEFAULT_MAX_FRAME_SIZE as u64,
        log_level: Some(log_level.parse().unwrap()),
    }
}

async fn initialize(peer: &Peer, interfaces: &[(&str, &[u32])], log_level: &str) -> InitializeResult {
    peer.call::<Initialize>(&init_params(interfaces, log_level)).await.unwrap()
}

impl Plugin {
    /// Shuts down, closes stdin and returns the exit status.
    async fn stop(mut self) -> i32 {
        self.peer.call::<Shutdown>(&Empty {}).await.unwrap();
        self.peer.close("test over");
        let status = tokio::time::timeout(Duration::from_secs(2), self.child.wait()).await.unwrap().unwrap();
        assert!(self.events.all().is_empty(), "{:?}", self.events.all());
        status.code().unwrap()
    }
}

fn put(key: &str, value: &[u8]) -> kv::PutParams {
    kv::PutParams { key: key.into(), value: value.to_vec().into() }
}

fn key(key: &str) -> kv::KeyParams {
    kv::KeyParams { key: key.into() }
}

#[tokio::test]
async fn kv_roundtrip_on_version_2() {
    let mut plugin = start("kv", &[], Router::new());
    let init = initialize(&plugin.peer, &[("kv", &[1, 2]), ("other", &[1])], "debug").await;
    assert_eq!(init.plugin.name, "kv-rust");
    let kv_iface = &init.interfaces["kv"];
    assert_eq!(kv_iface.version, 2);
    assert_eq!(kv_iface.methods.keys().collect::<Vec<_>>(), ["delete", "get", "put"]);
    assert!(!init.interfaces.contains_key("other"));
    assert_eq!(kv_iface.methods["put"].params["type"], "object");

    let kv = KvClient::new(plugin.peer.clone());
    kv.put(&put("hello", b"world")).await.unwrap();
    assert_eq!(&kv.get(&key("hello")).await.unwrap().value[..], b"world");
    let log = plugin.logs.recv().await.unwrap();
    assert_eq!((log.level.as_str(), log.message.as_str()), ("debug", "put"));
    assert_eq!(log.fields.unwrap()["key"], "hello");
    assert!(kv.delete(&key("hello")).await.unwrap().existed);
    let err = kv.get(&key("hello")).await.unwrap_err();
    assert_eq!(
        serde_json::to_string(err.remote().unwrap()).unwrap(),
        r#"{"code":1001,"message":"key not found: hello","data":{"key":"hello"}}"#
    );
    assert_eq!(plugin.stop().await, 0);
}

#[tokio::test]
async fn kv_negotiates_version_1_and_refuses_mismatches() {
    let mut plugin = start("kv", &[], Router::new());
    // Before initialize: -32002.
    let err = KvClient::new(plugin.peer.clone()).get(&key("a")).await.unwrap_err();
    assert_eq!(err.remote().unwrap().code, -32002);
    let err = plugin.peer.call::<Initialize>(&init_params(&[("kv", &[9])], "info")).await.unwrap_err();
    assert_eq!(
        serde_json::to_string(err.remote().unwrap()).unwrap(),
        r#"{"code":-32001,"message":"no common version for interface kv: host speaks [9], plugin speaks [1, 2]","data":{"interface":"kv","host":[9],"plugin":[1,2]}}"#
    );
    let mut params = init_params(&[("kv", &[1])], "info");
    params.protocol_versions = vec![7];
    let err = plugin.peer.call::<Initialize>(&params).await.unwrap_err();
    assert_eq!(err.remote().unwrap().data.as_ref().unwrap()["interface"], "tether");
    // The session stayed uninitialized: another initialize is allowed.
    let init = initialize(&plugin.peer, &[("kv", &[1])], "info").await;
    assert_eq!(init.interfaces["kv"].version, 1);
    assert_eq!(init.interfaces["kv"].methods.keys().collect::<Vec<_>>(), ["get", "put"]);
    let err = plugin.peer.call::<Initialize>(&init_params(&[("kv", &[1])], "info")).await.unwrap_err();
    assert_eq!(err.remote().unwrap().code, -32600);
    let kv = KvClient::new(plugin.peer.clone());
    kv.put(&put("a", b"")).await.unwrap();
    let err = kv.delete(&key("a")).await.unwrap_err();
    let remote = err.remote().unwrap();
    assert_eq!(remote.code, -32601);
    assert_eq!(
        remote.data.as_ref().unwrap()["reason"],
        "kv.delete needs kv version 2; this session uses kv version 1"
    );
    // The log level is info: no debug log was sent for the put.
    plugin.peer.call::<tether::spec::Ping>(&Empty {}).await.unwrap();
    assert!(plugin.logs.try_recv().is_err());
    assert_eq!(plugin.stop().await, 0);
}

#[tokio::test]
async fn kv_persists_to_a_directory() {
    let dir = std::env::temp_dir().join(format!("tether-kv-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let plugin = start("kv", &[dir.to_str().unwrap()], Router::new());
    initialize(&plugin.peer, &[("kv", &[1, 2])], "info").await;
    let kv = KvClient::new(plugin.peer.clone());
    kv.put(&put("a/b", b"\x00\xff")).await.unwrap();
    assert_eq!(std::fs::read(dir.join("kv_a%2Fb")).unwrap(), b"\x00\xff");
    assert_eq!(&kv.get(&key("a/b")).await.unwrap().value[..], b"\x00\xff");
    assert_eq!(plugin.stop().await, 0);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn sixteen_mib_values() {
    let plugin = start("kv", &[], Router::new());
    initialize(&plugin.peer, &[("kv", &[1, 2])], "info").await;
    let kv = KvClient::new(plugin.peer.clone());
    let value: Vec<u8> = (0..16 << 20).map(|i: u32| (i % 251) as u8).collect();
    kv.put(&put("big", &value)).await.unwrap();
    assert!(kv.get(&key("big")).await.unwrap().value[..] == value[..]);
    assert_eq!(plugin.stop().await, 0);
}

/// An adder that, while its `sum` is pending, reads the counter back through the plugin.
struct ReentrantAdder {
    plugin: Peer,
    seen: Arc<Mutex<Vec<i64>>>,
}

impl Adder for ReentrantAdder {
    async fn sum(&self, p: counter::SumParams) -> Result<counter::SumResult, Error> {
        let during =
            CounterClient::new(self.plugin.clone()).get(&counter::GetParams { key: "k".into() }).await?;
        self.seen.lock().unwrap().push(during.value);
        Ok(counter::SumResult { result: p.a + p.b })
    }
}

#[tokio::test]
async fn counter_calls_back_into_the_host() {
    let plugin = start("counter", &[], Router::new());
    initialize(&plugin.peer, &[("counter", &[1])], "info").await;
    let counter = CounterClient::new(plugin.peer.clone());
    let seen = Arc::new(Mutex::new(Vec::new()));
    for value in [5, 7] {
        let adder = plugin.peer.serve_handle(AdderServer::new(ReentrantAdder {
            plugin: plugin.peer.clone(),
            seen: seen.clone(),
        }));
        let params = counter::PutParams { key: "k".into(), value, adder: adder.clone() };
        counter.put(&params).handle(&adder).await.unwrap();
        assert!(!plugin.peer.serves_handle(&adder));
    }
    assert_eq!(*seen.lock().unwrap(), [0, 5]);
    assert_eq!(counter.get(&counter::GetParams { key: "k".into() }).await.unwrap().value, 12);
    assert_eq!(counter.get(&counter::GetParams { key: "never".into() }).await.unwrap().value, 0);
    assert_eq!(plugin.stop().await, 0);
}

/// An adder that never answers and says when its `sum` was cancelled.
struct StuckAdder(mpsc::UnboundedSender<()>);

struct SignalOnDrop(mpsc::UnboundedSender<()>);
impl Drop for SignalOnDrop {
    fn drop(&mut self) {
        let _ = self.0.send(());
    }
}

impl Adder for StuckAdder {
    async fn sum(&self, _: counter::SumParams) -> Result<counter::SumResult, Error> {
        let _signal = SignalOnDrop(self.0.clone());
        std::future::pending::<()>().await;
        unreachable!()
    }
}

#[tokio::test]
async fn cancelling_a_put_cancels_its_callback() {
    let plugin = start("counter", &[], Router::new());
    initialize(&plugin.peer, &[("counter", &[1])], "info").await;
    let (tx, mut cancelled) = mpsc::unbounded_channel();
    let adder = plugin.peer.serve_handle(AdderServer::new(StuckAdder(tx)));
    let params = counter::PutParams { key: "k".into(), value: 1, adder: adder.clone() };
    let err = CounterClient::new(plugin.peer.clone())
        .put(&params)
        .handle(&adder)
        .timeout(Duration::from_millis(200))
        .await
        .unwrap_err();
    assert!(matches!(err, CallError::Timeout(_)));
    // The plugin sent $/cancelRequest for its pending `sum` invoke.
    tokio::time::timeout(Duration::from_secs(2), cancelled.recv()).await.unwrap().unwrap();
    let counter = CounterClient::new(plugin.peer.clone());
    assert_eq!(counter.get(&counter::GetParams { key: "k".into() }).await.unwrap().value, 0);
    assert_eq!(plugin.stop().await, 0);
}

#[tokio::test]
async fn stray_output_and_panics_do_not_break_the_session() {
    let plugin = start("misbehaving", &[], Router::new());
    initialize(&plugin.peer, &[("kv", &[2])], "info").await;
    let kv = KvClient::new(plugin.peer.clone());
    kv.put(&put("a", b"1")).await.unwrap();
    let err = kv.put(&put("panic", b"1")).await.unwrap_err();
    assert_eq!(err.remote().unwrap().code, -32603);
    kv.put(&put("b", b"1")).await.unwrap();
    assert_eq!(plugin.stop().await, 0);
}

#[tokio::test]
async fn without_the_cookie_it_exits_1_at_once() {
    let mut child = Command::new(tether_testkit::sdk_example("kv"))
        .env_remove(REFERENCE_COOKIE_KEY)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let status = tokio::time::timeout(Duration::from_secs(5), child.wait()).await.unwrap().unwrap();
    assert_eq!(status.code(), Some(1));
    let mut stdout = String::new();
    child.stdout.take().unwrap().read_to_string(&mut stdout).await.unwrap();
    assert_eq!(stdout, "");
    let mut stderr = String::new();
    child.stderr.take().unwrap().read_to_string(&mut stderr).await.unwrap();
    assert!(stderr.contains("kv-rust is a Tether plugin"), "{stderr}");
    assert!(stderr.contains("not meant to be run directly"), "{stderr}");
}

#[test]
fn end_of_stdin_exits_0_and_cancels_in_flight_work() {
    use tether_testkit::{plugin_command, ProcessPlugin};
    // Frame by frame, so that the host side keeps reading after it closes the plugin's stdin.
    let mut plugin = ProcessPlugin::spawn(plugin_command(&tether_testkit::sdk_example("counter"))).unwrap();
    let init = serde_json::json!({"jsonrpc": "2.0", "id": 1, "method": "tether/initialize",
        "params": init_params(&[("counter", &[1])], "error")});
    plugin.send(init.to_string().as_bytes()).unwrap();
    let answer: serde_json::Value = serde_json::from_slice(&plugin.recv().unwrap().unwrap()).unwrap();
    assert!(answer.get("result").is_some(), "{answer}");
    // A put whose callback the host never answers: the put's handler is in flight, waiting.
    let put = r#"{"jsonrpc":"2.0","id":2,"method":"counter.put","params":{"key":"k","value":1,"adder":{"$handle":"h1","interface":"adder"}}}"#;
    plugin.send(put.as_bytes()).unwrap();
    let invoke: serde_json::Value = serde_json::from_slice(&plugin.recv().unwrap().unwrap()).unwrap();
    assert_eq!(invoke["method"], "tether/invoke", "{invoke}");
    // The host closes stdin without a shutdown: the plugin cancels the put (SPEC.md §1.6) and
    // answers it as cancelled (-32800) before it exits with status 0, within 2 s.
    let started = std::time::Instant::now();
    let (rest, code) = plugin.finish().unwrap();
    let elapsed = started.elapsed();
    let answers: Vec<serde_json::Value> = rest.iter().map(|b| serde_json::from_slice(b).unwrap()).collect();
    let put_answer = answers.iter().find(|m| m["id"] == 2);
    assert_eq!(
        put_answer.map(|m| &m["error"]["code"]),
        Some(&serde_json::json!(-32800)),
        "the in-flight put was not answered as cancelled: {answers:?}"
    );
    assert_eq!(code, Some(0));
    assert!(elapsed < Duration::from_secs(2), "the plugin took {elapsed:?} to exit after the end of stdin");
}

/// The kv example with the cookie and its three standard streams piped, driven by hand.
fn spawn_kv() -> std::process::Child {
    std::process::Command::new(tether_testkit::sdk_example("kv"))
        .env(REFERENCE_COOKIE_KEY, REFERENCE_COOKIE_VALUE)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// The kv example with the host's end of its stdout already closed.
fn start_deaf() -> std::process::Child {
    let mut child = spawn_kv();
    drop(child.stdout.take());
    child
}

/// Sends a request whose answer (-32002, before initialize) is a write; false once stdin is
/// closed.
fn send_ping(child: &mut std::process::Child) -> bool {
    use std::io::Write as _;
    let ping = br#"{"jsonrpc":"2.0","id":1,"method":"tether/ping"}"#;
    let Some(stdin) = child.stdin.as_mut() else { return false };
    write!(stdin, "Content-Length: {}\r\n\r\n", ping.len()).and_then(|()| stdin.write_all(ping)).is_ok()
}

/// Waits for the exit, generously; kills the child when it does not come. `between` runs
/// every 50 ms while waiting.
fn exit_status_within(
    child: &mut std::process::Child,
    limit: Duration,
    mut between: impl FnMut(&mut std::process::Child),
) -> Option<i32> {
    let started = std::time::Instant::now();
    while started.elapsed() < limit {
        if let Some(status) = child.try_wait().unwrap() {
            return status.code();
        }
        between(child);
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    panic!("the plugin did not exit within {limit:?}");
}

#[test]
fn stdout_closed_while_stdin_stays_open_exits_2() {
    let mut child = start_deaf();
    // A ping every 50 ms: a child that another test spawns at the same moment holds a copy of
    // the pipe's read end until it execs, and a write in that window still succeeds.
    let status = exit_status_within(&mut child, Duration::from_secs(10), |child| {
        send_ping(child);
    });
    assert_eq!(status, Some(2));
    let mut stderr = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    assert!(stderr.contains("giving up on the session"), "{stderr}");
}

#[test]
fn both_pipes_closed_at_once_is_the_host_leaving_exit_0() {
    let mut child = start_deaf();
    assert!(send_ping(&mut child));
    // Closing stdin a moment later lets the failed write come first, as it may when a host
    // closes both pipes at once; the plugin waits a second for the end of stdin (SPEC.md §1.5).
    std::thread::sleep(Duration::from_millis(20));
    drop(child.stdin.take());
    assert_eq!(exit_status_within(&mut child, Duration::from_secs(10), |_| ()), Some(0));
}

/// A host that closes the plugin's stdin while it never reads the plugin's stdout, with answers
/// larger than the pipe holds on their way: the plugin's writes block, and it still exits on
/// its own, with status 0, soon after the end of its input (SPEC.md §1.6).
#[test]
fn a_host_that_closes_stdin_and_never_reads_the_answers_sees_the_plugin_exit() {
    use std::io::Write as _;
    let mut child = spawn_kv();
    // Kept open and never read.
    let _stdout = child.stdout.take();
    let mut stdin = child.stdin.take().unwrap();
    let mut send = |body: String| {
        write!(stdin, "Content-Length: {}\r\n\r\n{body}", body.len()).unwrap();
    };
    send(r#"{"jsonrpc":"2.0","id":1,"method":"tether/initialize","params":{"protocolVersions":[1],"host":{"name":"deaf","version":"0"},"interfaces":{"kv":[2]},"maxFrameSize":67108864}}"#.to_owned());
    // Base64 of 768 KiB of zeros: its answer (the same again) is far larger than a pipe holds.
    let value = "A".repeat(1 << 20);
    send(format!(
        r#"{{"jsonrpc":"2.0","id":2,"method":"kv.put","params":{{"key":"big","value":"{value}"}}}}"#
    ));
    for id in 3..6 {
        send(format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"kv.get","params":{{"key":"big"}}}}"#));
    }
    drop(stdin);
    let started = std::time::Instant::now();
    let status = exit_status_within(&mut child, Duration::from_secs(15), |_| ());
    assert_eq!(status, Some(0));
    // Its deadline is 1.9 s after the hang-up; the bound is generous for a loaded machine.
    assert!(started.elapsed() < Duration::from_secs(10), "exited after {:?}", started.elapsed());
    let mut stderr = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    assert!(stderr.contains("did not read the last answers"), "{stderr}");
}
