//! Processes: killing a plugin's process group, finding what is left of it in `/proc`, and
//! making sure no plugin outlives the judge (a registry of live groups for SIGINT/SIGTERM, and a
//! parent-death signal for a judge that is killed outright).

use std::collections::BTreeSet;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rustix::process::{kill_process_group, Pid, Signal};

/// Sends SIGKILL to a process group; a group that no longer exists is fine.
pub(crate) fn kill_group(pgid: i32) {
    if let Some(pid) = Pid::from_raw(pgid) {
        let _ = kill_process_group(pid, Signal::KILL);
    }
}

/// The process groups of the plugins running now. A plugin runs in its own group, which a
/// terminal's Ctrl-C does not reach: the judge kills these itself when it is interrupted.
static LIVE_GROUPS: Mutex<BTreeSet<i32>> = Mutex::new(BTreeSet::new());

/// Records a plugin's group as live.
pub(crate) fn register_group(pgid: i32) {
    if let Ok(mut live) = LIVE_GROUPS.lock() {
        live.insert(pgid);
    }
}

/// Forgets a group (its session ended and killed it).
pub(crate) fn forget_group(pgid: i32) {
    if let Ok(mut live) = LIVE_GROUPS.lock() {
        live.remove(&pgid);
    }
}

/// Kills every live plugin group; returns how many there were. Called on SIGINT and SIGTERM.
pub(crate) fn kill_all_groups() -> usize {
    let groups: Vec<i32> = LIVE_GROUPS.lock().map(|live| live.iter().copied().collect()).unwrap_or_default();
    for pgid in &groups {
        kill_group(*pgid);
    }
    groups.len()
}

/// Gives the plugin a parent-death signal: the kernel sends it SIGKILL when the judge's thread
/// that started it ends, so that even a judge killed with SIGKILL (which it cannot catch) leaves
/// no plugin behind. The judge starts plugins from its runtime's worker threads, which live as
/// long as the judge. (Processes the plugin starts itself are its own to stop: §1.6, checked by
/// `stop.no-leftovers`.)
pub(crate) fn die_with_parent(cmd: &mut tokio::process::Command) {
    let parent = rustix::process::getpid();
    // SAFETY: the closure runs in the child between fork and exec, where only async-signal-safe
    // calls are allowed: it makes two system calls (prctl, getppid) through rustix, which neither
    // allocates nor takes locks.
    #[allow(unsafe_code)]
    unsafe {
        cmd.pre_exec(move || {
            rustix::process::set_parent_process_death_signal(Some(Signal::KILL))?;
            // The judge may have died between fork and prctl: then nothing would fire.
            if rustix::process::getppid() != Some(parent) {
                return Err(std::io::Error::other("the judge exited while starting the plugin"));
            }
            Ok(())
        });
    }
}

/// A live (non-zombie) process of a group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Member {
    /// Its pid.
    pub(crate) pid: i32,
    /// Its command name.
    pub(crate) comm: String,
}

/// The processes of group `pgid` that are alive, zombies excluded, read from `/proc`.
pub(crate) fn group_members(pgid: i32) -> Vec<Member> {
    let Ok(dir) = std::fs::read_dir("/proc") else { return Vec::new() };
    let mut out = Vec::new();
    for entry in dir.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(|s| s.parse::<i32>().ok()) else { continue };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else { continue };
        if let Some(member) = parse_stat(pid, &stat).filter(|(_, group, _)| *group == pgid) {
            let (state, _, comm) = member;
            if state != 'Z' && state != 'X' {
                out.push(Member { pid, comm });
            }
        }
    }
    out
}

/// `(state, pgrp, comm)` from the text of `/proc/<pid>/stat`. The command name is in parentheses
/// and may itself hold spaces and parentheses, so the fields after it are found from the last `)`.
fn parse_stat(_pid: i32, stat: &str) -> Option<(char, i32, String)> {
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let comm = stat.get(open + 1..close)?.to_owned();
    let mut rest = stat.get(close + 1..)?.split_whitespace();
    let state = rest.next()?.chars().next()?;
    let _ppid = rest.next()?;
    let pgrp = rest.next()?.parse().ok()?;
    Some((state, pgrp, comm))
}

/// Polls until group `pgid` has no live process or `timeout` passes; returns what is left.
pub(crate) async fn wait_group_empty(pgid: i32, timeout: Duration) -> Vec<Member> {
    let deadline = Instant::now() + timeout;
    loop {
        let left = group_members(pgid);
        if left.is_empty() || Instant::now() >= deadline {
            return left;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_odd_names() {
        let stat = "1234 (my (odd) prog) S 1 1234 1234 0 -1 4194560 1 0 0 0";
        assert_eq!(parse_stat(1234, stat), Some(('S', 1234, "my (odd) prog".to_owned())));
        assert_eq!(parse_stat(1, "garbage"), None);
    }

    #[test]
    fn finds_its_own_group() {
        let me = rustix::process::getpgid(None).map(|p| p.as_raw_nonzero().get()).unwrap_or(0);
        let members = group_members(me);
        assert!(members.iter().any(|m| m.pid == std::process::id() as i32), "{members:?}");
    }
}
