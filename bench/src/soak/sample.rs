//! What the soak run watches in its own process, read from `/proc`: resident memory, open
//! descriptors, threads, zombie children, live descendants, and processes left in the process
//! groups of plugins that were ended.

use std::collections::HashMap;

use serde::Serialize;

/// One reading of the host's resources.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Sample {
    /// The part of the run it was taken in (`baseline`, `calls`, `after-calls`,
    /// `shutdown-cycles`, `kill-cycles`; `start` is before the warm-up and not judged).
    pub phase: String,
    /// Calls or cycles done in that phase when it was taken.
    pub done: u64,
    /// Plugins running when it was taken (the phase's own, expected in `children`).
    pub live_plugins: u64,
    /// Resource readings.
    pub res: Resources,
    /// Seconds since the language's soak began.
    pub secs: f64,
    /// Milliseconds waited, with no plugin running, for the ended plugins' tasks to finish
    /// before the reading (see `soak::Watch::sample`).
    pub settle_ms: f64,
}

/// The resources of one sample, each a whole number so that "back to the baseline" is exact.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Resources {
    /// `VmRSS` of `/proc/self/status`, in KiB.
    pub rss_kib: u64,
    /// Entries of `/proc/self/fd`.
    pub fds: u64,
    /// Entries of `/proc/self/task`.
    pub threads: u64,
    /// Children of this process in state Z (exited, not reaped).
    pub zombies: u64,
    /// Live (not zombie) descendants of this process: the plugins and anything they started.
    pub children: u64,
    /// Live processes in the process group of a plugin that was shut down or killed.
    pub strays: u64,
    /// Host `adder` handlers of cancelled puts still running (see `soak::cancel`).
    pub stalled: u64,
    /// Tasks alive in the host's tokio runtime (each plugin's session, supervisor and stderr
    /// reader run as tasks).
    pub tasks: u64,
    /// `VmRSS` of the running plugins together, in KiB (0 with none): what the SDK keeps.
    pub plugin_rss_kib: u64,
}

/// Reads one column out of [`Resources`].
pub type Column = fn(&Resources) -> u64;

/// The resource columns, in table order, with how each is read out of [`Resources`].
pub const COLUMNS: [(&str, Column); 9] = [
    ("rss_kib", |r| r.rss_kib),
    ("fds", |r| r.fds),
    ("threads", |r| r.threads),
    ("zombies", |r| r.zombies),
    ("children", |r| r.children),
    ("strays", |r| r.strays),
    ("stalled", |r| r.stalled),
    ("tasks", |r| r.tasks),
    ("plugin_rss_kib", |r| r.plugin_rss_kib),
];

/// One line of `/proc/PID/stat`, the fields the soak needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stat {
    /// Process id.
    pub pid: u32,
    /// State letter (`R`, `S`, `Z`, ...).
    pub state: char,
    /// Parent process id.
    pub ppid: u32,
    /// Process group.
    pub pgrp: u32,
    /// Session.
    pub session: u32,
}

/// Parses `/proc/PID/stat`. The command name is in parentheses and may hold spaces and
/// parentheses itself, so the fields are counted from the last `)`.
pub fn parse_stat(line: &str) -> Option<Stat> {
    let (head, tail) = line.rsplit_once(')')?;
    let pid = head.split_once('(')?.0.trim().parse().ok()?;
    let mut fields = tail.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let ppid = fields.next()?.parse().ok()?;
    let pgrp = fields.next()?.parse().ok()?;
    let session = fields.next()?.parse().ok()?;
    Some(Stat { pid, state, ppid, pgrp, session })
}

/// Every process's `/proc/PID/stat` that could be read (processes come and go while reading).
fn all_processes() -> Vec<Stat> {
    let Ok(dir) = std::fs::read_dir("/proc") else { return Vec::new() };
    dir.filter_map(Result::ok)
        .filter(|e| e.file_name().to_str().is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit())))
        .filter_map(|e| std::fs::read_to_string(e.path().join("stat")).ok())
        .filter_map(|line| parse_stat(&line))
        .collect()
}

/// Zombies, live descendants and strays of `me` among `procs`; `ended` are the process groups
/// of plugins that were ended (a plugin leads its own group, so its group id is its pid).
pub fn count_processes(procs: &[Stat], me: Stat, ended: &[u32]) -> (u64, u64, u64) {
    let mut by_parent: HashMap<u32, Vec<&Stat>> = HashMap::new();
    for p in procs {
        by_parent.entry(p.ppid).or_default().push(p);
    }
    let zombies = by_parent.get(&me.pid).map_or(0, |c| c.iter().filter(|p| p.state == 'Z').count());
    let mut live = 0;
    let mut todo = vec![me.pid];
    while let Some(pid) = todo.pop() {
        for child in by_parent.get(&pid).into_iter().flatten() {
            if child.state != 'Z' {
                live += 1;
            }
            todo.push(child.pid);
        }
    }
    // Only our session: a group id of another session is another program's (pids are reused).
    let strays = procs
        .iter()
        .filter(|p| p.session == me.session && p.state != 'Z' && p.pid != me.pid)
        .filter(|p| ended.contains(&p.pgrp))
        .count();
    (zombies as u64, live as u64, strays as u64)
}

fn count_dir(path: &str) -> u64 {
    std::fs::read_dir(path).map(|d| d.count() as u64).unwrap_or(0)
}

fn rss_kib(process: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{process}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// Reads this process's resources now, and the memory of the plugins `live`. `ended` as in
/// [`count_processes`]; `stalled` and `tasks` are passed through.
pub fn read(ended: &[u32], stalled: u64, tasks: u64, live: &[u32]) -> Resources {
    let me = std::fs::read_to_string("/proc/self/stat").ok().and_then(|l| parse_stat(&l));
    let (zombies, children, strays) = match me {
        Some(me) => count_processes(&all_processes(), me, ended),
        None => (0, 0, 0),
    };
    Resources {
        rss_kib: rss_kib("self"),
        // The directory handle that lists `/proc/self/fd` is one of its entries: not ours.
        fds: count_dir("/proc/self/fd").saturating_sub(1),
        threads: count_dir("/proc/self/task"),
        zombies,
        children,
        strays,
        stalled,
        tasks,
        plugin_rss_kib: live.iter().map(|pid| rss_kib(&pid.to_string())).sum(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn st(pid: u32, state: char, ppid: u32, pgrp: u32) -> Stat {
        Stat { pid, state, ppid, pgrp, session: 1 }
    }

    #[test]
    fn stat_lines_with_odd_command_names_parse() {
        let line = "4242 (a (weird) name) S 17 4242 1 0 -1 4194560 0 0";
        assert_eq!(parse_stat(line), Some(Stat { pid: 4242, state: 'S', ppid: 17, pgrp: 4242, session: 1 }));
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn zombies_descendants_and_strays_are_counted() {
        let me = st(10, 'S', 1, 10);
        let procs = [
            me,
            st(11, 'S', 10, 11), // a live plugin
            st(12, 'S', 11, 11), // its own child, in its group
            st(13, 'Z', 10, 13), // a zombie plugin
            st(20, 'S', 1, 14),  // reparented to init, in an ended plugin's group
            st(21, 'S', 1, 99),  // unrelated
        ];
        assert_eq!(count_processes(&procs, me, &[14]), (1, 2, 1));
        assert_eq!(count_processes(&procs, me, &[11]), (1, 2, 2));
    }

    #[test]
    fn reading_this_process_sees_its_threads_and_descriptors() {
        let me = std::process::id();
        let r = read(&[], 0, 0, &[me]);
        assert!(r.rss_kib > 0 && r.fds >= 3 && r.threads >= 1, "{r:?}");
        assert!(r.plugin_rss_kib > 0, "{r:?}");
    }
}
