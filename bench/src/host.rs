//! The figures that count: plugins started, called and shut down through `tether-host`, with
//! the typed clients of `tether::interfaces`.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::Context as _;
use tether::interfaces::{CounterClient, KvClient};
use tether::spec::interfaces::{counter, kv};
use tether_host::{PluginProcess, Stopped};

use crate::direct::{DirectCounter, DirectKv};
use crate::scenario::{Backend, PluginCmd};

/// `tether-host` as a benchmark backend.
#[derive(Default)]
pub struct HostBackend {
    /// Loads the plugin's program as a library into the bench's process
    /// (`PluginBuilder::in_process`) instead of running it as a child process.
    pub in_process: bool,
    /// SHA-256 digests already computed (outside the timed region), by file.
    digests: Mutex<Vec<(PathBuf, String)>>,
}

impl HostBackend {
    /// The backend that loads plugins as libraries into the bench's process.
    pub fn in_process() -> Self {
        HostBackend { in_process: true, ..Default::default() }
    }

    /// The digest of `file`, computed once.
    pub fn digest(&self, file: &Path) -> anyhow::Result<String> {
        let mut known = self.digests.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
        if let Some((_, d)) = known.iter().find(|(f, _)| f == file) {
            return Ok(d.clone());
        }
        let d = tether_host::sha256_file(file).with_context(|| format!("hashing {}", file.display()))?;
        known.push((file.to_owned(), d.clone()));
        Ok(d)
    }
}

fn builder(
    cmd: &PluginCmd,
    in_process: bool,
    interface: &str,
    versions: &[u32],
) -> tether_host::PluginBuilder {
    let builder = match in_process {
        true => PluginProcess::library(&cmd.program),
        false => PluginProcess::builder(&cmd.program).args(&cmd.args),
    };
    builder.interface(interface, versions.iter().copied())
}

impl Backend for HostBackend {
    type Kv = DirectKv;
    type Counter = DirectCounter;
    type PluginProcess = PluginProcess;

    async fn start_kv(&self, cmd: &PluginCmd, checksum: bool) -> anyhow::Result<(DirectKv, PluginProcess)> {
        let mut b = builder(cmd, self.in_process, kv::NAME, kv::VERSIONS);
        if checksum {
            // The digest is known beforehand, as an application pins it; the host hashes the
            // file again at each start, which is the cost measured.
            b = b.sha256(self.digest(&cmd.checksum_file)?);
        }
        let plugin = b.start().await?;
        let client = plugin.client::<KvClient>()?;
        Ok((DirectKv::new(client), plugin))
    }

    async fn start_counter(&self, cmd: &PluginCmd) -> anyhow::Result<(DirectCounter, PluginProcess)> {
        let plugin = builder(cmd, self.in_process, counter::NAME, counter::VERSIONS).start().await?;
        // Typed client first, so that a missing interface fails here.
        plugin.client::<CounterClient>()?;
        Ok((DirectCounter::new(plugin.peer().clone()), plugin))
    }

    fn pid(&self, plugin: &PluginProcess) -> Option<u32> {
        // An in-process plugin has no process of its own (its `pid()` is the host's).
        (!self.in_process).then(|| plugin.pid())
    }

    async fn stop(&self, plugin: PluginProcess) -> anyhow::Result<()> {
        let report = plugin.shutdown().await;
        anyhow::ensure!(
            report.stopped == Stopped::Gracefully && report.exit.success(),
            "plugin stopped {:?}, {}",
            report.stopped,
            report.exit.status_text()
        );
        Ok(())
    }
}
