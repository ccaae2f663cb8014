//! Plugins called through the `tether` connection directly (`Session::start` over a spawned
//! child's pipes, the typed `KvClient`/`CounterClient`), without `tether-host`'s supervision.

use anyhow::{anyhow, Context as _};
use tether::interfaces::{Adder, AdderServer, CounterClient, KvClient};
use tether::spec::interfaces::{counter, kv};
use tether::spec::{Empty, Initialize, InitializeParams, PeerInfo, Shutdown, PROTOCOL_VERSION};
use tether::{Options, Peer, Router, Session};
use tokio::process::{Child, Command};

use crate::scenario::{Backend, CounterConn, KvConn, PluginCmd};

/// The `tether` connection without the host crate.
pub struct DirectBackend;

/// A running plugin and its session.
pub struct DirectPlugin {
    peer: Peer,
    child: Child,
}

async fn start(cmd: &PluginCmd, interface: &str, versions: &[u32]) -> anyhow::Result<DirectPlugin> {
    let mut child = Command::from(tether_testkit::plugin_command(&cmd.program))
        .args(&cmd.args)
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("spawning {}", cmd.program.display()))?;
    let stdin = child.stdin.take().ok_or_else(|| anyhow!("no stdin pipe"))?;
    let stdout = child.stdout.take().ok_or_else(|| anyhow!("no stdout pipe"))?;
    let peer = Session::start(stdout, stdin, Options::new(), Router::new()).into_peer();
    let params = InitializeParams {
        protocol_versions: vec![PROTOCOL_VERSION],
        interfaces: [(interface.to_owned(), versions.to_vec())].into_iter().collect(),
        host: PeerInfo::new("tether-bench", env!("CARGO_PKG_VERSION")),
        capabilities: Default::default(),
        max_frame_size: tether::spec::DEFAULT_MAX_FRAME_SIZE as u64,
        log_level: None,
    };
    peer.call::<Initialize>(&params).await.context("tether/initialize")?;
    Ok(DirectPlugin { peer, child })
}

/// A `kv` client.
#[derive(Clone)]
pub struct DirectKv(KvClient);

impl DirectKv {
    /// Wraps a typed client.
    pub fn new(client: KvClient) -> Self {
        DirectKv(client)
    }
}

impl KvConn for DirectKv {
    fn put(&self, key: &str, value: &[u8]) -> impl std::future::Future<Output = anyhow::Result<()>> + Send {
        let call = self.0.put(&kv::PutParams { key: key.to_owned(), value: value.into() });
        async move { call.await.map(drop).map_err(anyhow::Error::from) }
    }

    fn get(&self, key: &str) -> impl std::future::Future<Output = anyhow::Result<usize>> + Send {
        let call = self.0.get(&kv::KeyParams { key: key.to_owned() });
        async move { Ok(call.await?.value.len()) }
    }
}

/// The host's `adder`.
pub struct HostAdder;

impl Adder for HostAdder {
    async fn sum(&self, p: counter::SumParams) -> Result<counter::SumResult, tether::Error> {
        Ok(counter::SumResult { result: p.a + p.b })
    }
}

/// A `counter` client that serves a fresh, call-scoped `adder` handle for each put.
#[derive(Clone)]
pub struct DirectCounter(Peer);

impl DirectCounter {
    /// Calls through `peer`.
    pub fn new(peer: Peer) -> Self {
        DirectCounter(peer)
    }
}

impl CounterConn for DirectCounter {
    fn put(&self, key: &str, value: i64) -> impl std::future::Future<Output = anyhow::Result<()>> + Send {
        let adder = self.0.serve_handle(AdderServer::new(HostAdder));
        let call = CounterClient::new(self.0.clone())
            .put(&counter::PutParams { key: key.to_owned(), value, adder: adder.clone() })
            .handle(&adder);
        async move { call.await.map(drop).map_err(anyhow::Error::from) }
    }
}

impl Backend for DirectBackend {
    type Kv = DirectKv;
    type Counter = DirectCounter;
    type PluginProcess = DirectPlugin;

    async fn start_kv(&self, cmd: &PluginCmd, _checksum: bool) -> anyhow::Result<(DirectKv, DirectPlugin)> {
        let p = start(cmd, kv::NAME, kv::VERSIONS).await?;
        Ok((DirectKv(KvClient::new(p.peer.clone())), p))
    }

    async fn start_counter(&self, cmd: &PluginCmd) -> anyhow::Result<(DirectCounter, DirectPlugin)> {
        let p = start(cmd, counter::NAME, counter::VERSIONS).await?;
        Ok((DirectCounter(p.peer.clone()), p))
    }

    fn pid(&self, plugin: &DirectPlugin) -> Option<u32> {
        plugin.child.id()
    }

    async fn stop(&self, mut plugin: DirectPlugin) -> anyhow::Result<()> {
        plugin.peer.call::<Shutdown>(&Empty {}).await.context("tether/shutdown")?;
        plugin.peer.close("shut down");
        let status = plugin.child.wait().await?;
        anyhow::ensure!(status.success(), "plugin exited with {status}");
        Ok(())
    }
}
