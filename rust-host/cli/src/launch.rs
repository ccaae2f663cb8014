//! What `inspect` and `call` share: the plugin's command line, the cookie, what to offer, and
//! the discovery of what a plugin declares when nothing is offered.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use clap::Args;
use tether_host::spec::MagicCookie;
use tether_host::{Error, PluginBuilder, PluginProcess};

/// The interfaces every discovery asks about: the reference interfaces of SPEC.md §9.
const REFERENCE_INTERFACES: &[&str] = &["kv", "counter", "blob", "adder"];
/// The versions a discovery offers of each interface.
const DISCOVERY_VERSIONS: std::ops::RangeInclusive<u32> = 1..=16;
/// A version no plugin speaks: offering it alone makes a plugin that implements the interface
/// answer -32001 with the versions it speaks (SPEC.md §4.3).
const UNSPOKEN_VERSION: u32 = u32::MAX;

/// How to start the plugin.
#[derive(Debug, Args)]
pub(crate) struct LaunchArgs {
    /// The magic cookie, `NAME=VALUE` (default: the reference cookie of SPEC.md §1.4).
    #[arg(long, value_name = "NAME=VALUE", value_parser = parse_cookie)]
    cookie: Option<MagicCookie>,
    /// Offer this interface with these versions (`kv=1,2`); repeatable. Without it, the
    /// plugin's own declaration is found first (every version 1..=16 of every interface named
    /// by SPEC.md §9 or `--interface`).
    #[arg(long, value_name = "NAME=V1,V2", value_parser = parse_offer)]
    offer: Vec<(String, Vec<u32>)>,
    /// Also ask about this interface when discovering what the plugin declares; repeatable.
    #[arg(long, value_name = "NAME")]
    interface: Vec<String>,
    /// Seconds the plugin has to complete its handshake.
    #[arg(long, value_name = "SECONDS", default_value_t = 10.0)]
    start_timeout: f64,
}

impl LaunchArgs {
    /// A builder for `argv` with the cookie and start time-out, offering nothing yet.
    pub(crate) fn builder(&self, argv: &[String]) -> anyhow::Result<PluginBuilder> {
        let (program, args) = argv.split_first().ok_or_else(|| anyhow::anyhow!("no plugin command line"))?;
        let timeout = Duration::try_from_secs_f64(self.start_timeout)
            .map_err(|e| anyhow::anyhow!("--start-timeout {}: {e}", self.start_timeout))?;
        Ok(PluginBuilder::new(program)
            .args(args)
            .cookie(self.cookie.clone().unwrap_or_else(MagicCookie::reference))
            .host_info("tether-cli", env!("CARGO_PKG_VERSION"))
            .start_timeout(timeout))
    }

    /// The interfaces named with `--interface`.
    pub(crate) fn interfaces(&self) -> &[String] {
        &self.interface
    }

    /// Starts the plugin with `--offer`, or with what it declares when there is none; says how
    /// long the start (of that session) took.
    pub(crate) async fn start(&self, argv: &[String]) -> anyhow::Result<Started> {
        if !self.offer.is_empty() {
            let offer: BTreeMap<String, Vec<u32>> = self.offer.iter().cloned().collect();
            return start_with(self.builder(argv)?, &offer).await.map_err(Into::into);
        }
        let mut offer: BTreeMap<String, Vec<u32>> = REFERENCE_INTERFACES
            .iter()
            .map(|name| (*name).to_owned())
            .chain(self.interface.iter().cloned())
            .map(|name| (name, DISCOVERY_VERSIONS.collect()))
            .collect();
        // Each -32001 answer names an interface whose versions all lie outside 1..=16, and the
        // versions the plugin speaks: offer exactly those next time.
        let mut adjusted = std::collections::BTreeSet::new();
        for _ in 0..=offer.len() {
            match start_with(self.builder(argv)?, &offer).await {
                Err(Error::VersionMismatch { interface, plugin_versions, .. })
                    if offer.contains_key(&interface)
                        && !plugin_versions.is_empty()
                        && adjusted.insert(interface.clone()) =>
                {
                    offer.insert(interface, plugin_versions);
                }
                other => return other.map_err(Into::into),
            }
        }
        anyhow::bail!("the plugin kept refusing the versions it says it speaks")
    }

    /// The versions the plugin speaks of `interface`, from the -32001 answer to an offer of a
    /// version nobody speaks (one more start of the plugin); `None` when it does not say.
    pub(crate) async fn supported_versions(&self, argv: &[String], interface: &str) -> Option<Vec<u32>> {
        let builder = self.builder(argv).ok()?.interface(interface, [UNSPOKEN_VERSION]);
        match builder.start().await {
            Err(Error::VersionMismatch { interface: named, plugin_versions, .. }) if named == interface => {
                Some(plugin_versions)
            }
            Err(_) => None,
            Ok(plugin) => {
                let _ = plugin.shutdown().await;
                None
            }
        }
    }
}

/// A started plugin and how long its start took.
pub(crate) struct Started {
    pub(crate) plugin: PluginProcess,
    pub(crate) start_time: Duration,
}

async fn start_with(builder: PluginBuilder, offer: &BTreeMap<String, Vec<u32>>) -> Result<Started, Error> {
    let builder =
        offer.iter().fold(builder, |b, (name, versions)| b.interface(name, versions.iter().copied()));
    let started = Instant::now();
    let plugin = builder.start().await?;
    Ok(Started { plugin, start_time: started.elapsed() })
}

fn parse_cookie(text: &str) -> Result<MagicCookie, String> {
    match text.split_once('=') {
        Some((name, value)) if !name.is_empty() => Ok(MagicCookie::new(name, value)),
        _ => Err(format!("{text:?} is not NAME=VALUE")),
    }
}

fn parse_offer(text: &str) -> Result<(String, Vec<u32>), String> {
    let (name, versions) = text.split_once('=').ok_or_else(|| format!("{text:?} is not NAME=V1,V2"))?;
    let versions = versions
        .split(',')
        .map(|v| v.trim().parse::<u32>().map_err(|e| format!("version {v:?} in {text:?}: {e}")))
        .collect::<Result<Vec<u32>, String>>()?;
    if name.is_empty() {
        return Err(format!("{text:?} names no interface"));
    }
    Ok((name.to_owned(), versions))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offers_and_cookies_parse() {
        assert_eq!(parse_offer("kv=1,2"), Ok(("kv".to_owned(), vec![1, 2])));
        assert!(parse_offer("kv").is_err());
        assert!(parse_offer("kv=x").is_err());
        assert!(parse_cookie("K=V").is_ok_and(|c| c.key == "K" && c.value == "V"));
        assert!(parse_cookie("=V").is_err());
    }
}
