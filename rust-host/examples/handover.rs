//! A host that hands a running kv plugin to a successor host process over a Unix socket, and
//! the successor; used by `rust-host/tests/handover.rs`.
//!
//! ```text
//! handover take SOCKET                 # the successor: adopts a plugin, gets key `k` once a
//!                                      # line comes on stdin, stops it
//! handover give SOCKET PROGRAM [ARGS]  # the first host: starts the plugin, puts `k`, hands over
//! handover exec-give PROGRAM [ARGS]    # the same, handing over to a new image of itself (exec)
//! ```
//!
//! Each prints `pid N` (the plugin's process id); `take` prints `got VALUE` and `stopped HOW`;
//! across exec, both images print `host N` (the host's process id, which exec keeps).

use std::os::unix::net::{UnixListener, UnixStream};
use std::time::Duration;

use anyhow::{bail, Context};
use tether_host::interfaces::KvClient;
use tether_host::spec::interfaces::kv;
use tether_host::{Handover, PluginProcess};

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.as_slice() {
        [role, socket] if role == "take" => take(socket).await,
        [role, socket, program, rest @ ..] if role == "give" => give(socket, program, rest).await,
        [role, program, rest @ ..] if role == "exec-give" => exec_give(program, rest).await,
        [role] if role == "exec-take" => exec_take().await,
        _ => bail!("usage: handover take SOCKET | handover give SOCKET PROGRAM [ARGS]"),
    }
}

async fn start(program: &str, args: &[String]) -> anyhow::Result<PluginProcess> {
    let plugin = PluginProcess::builder(program)
        .args(args)
        .name("kv")
        .offer::<KvClient>()
        .handover_capable()
        .call_timeout(Duration::from_secs(30))
        .start()
        .await?;
    println!("pid {}", plugin.pid());
    let store = plugin.client::<KvClient>()?;
    store.put(&kv::PutParams { key: "k".into(), value: "from the first host".into() }).await?;
    Ok(plugin)
}

async fn give(socket: &str, program: &str, args: &[String]) -> anyhow::Result<()> {
    let plugin = start(program, args).await?;
    let handover = plugin.hand_over(Duration::from_secs(5)).await.map_err(|(e, _)| e)?;
    let stream = UnixStream::connect(socket).with_context(|| format!("connecting to {socket}"))?;
    tokio::task::spawn_blocking(move || handover.send(&stream)).await??;
    // This host now exits: the plugin, started without the parent-death signal, lives on.
    Ok(())
}

/// Hands the plugin over to a new image of this very program, through `exec`.
async fn exec_give(program: &str, args: &[String]) -> anyhow::Result<()> {
    println!("host {}", std::process::id());
    let plugin = start(program, args).await?;
    let handover = plugin.hand_over(Duration::from_secs(5)).await.map_err(|(e, _)| e)?;
    let mut command = std::process::Command::new(std::env::current_exe()?);
    command.arg("exec-take");
    Err(handover.exec(command).into())
}

async fn exec_take() -> anyhow::Result<()> {
    println!("host {}", std::process::id());
    let handover = Handover::from_exec()?.context("no hand-over in the environment")?;
    let plugin = PluginProcess::adopt(handover)?;
    println!("pid {}", plugin.pid());
    let got = plugin.client::<KvClient>()?.get(&kv::KeyParams { key: "k".into() }).await?;
    println!("got {}", String::from_utf8_lossy(&got.value));
    let report = plugin.shutdown().await;
    println!("stopped {:?}", report.stopped);
    // After exec the plugin is this image's child (same pid as the first host): it is reaped
    // here, with its status.
    println!("exit {:?}", report.exit.code);
    Ok(())
}

async fn take(socket: &str) -> anyhow::Result<()> {
    let listener = UnixListener::bind(socket).with_context(|| format!("binding {socket}"))?;
    println!("listening");
    let handover = tokio::task::spawn_blocking(move || -> anyhow::Result<Handover> {
        let (stream, _) = listener.accept()?;
        Ok(Handover::receive(&stream)?)
    })
    .await??;
    let plugin = PluginProcess::adopt(handover)?;
    println!("pid {}", plugin.pid());
    // Used only once a line comes on stdin: the test sends it after the first host has exited,
    // to show that the plugin outlives it.
    let mut line = String::new();
    tokio::task::spawn_blocking(move || std::io::stdin().read_line(&mut line)).await??;
    let store = plugin.client::<KvClient>()?;
    let got = store.get(&kv::KeyParams { key: "k".into() }).await?;
    println!("got {}", String::from_utf8_lossy(&got.value));
    let report = plugin.shutdown().await;
    println!("stopped {:?}", report.stopped);
    Ok(())
}
