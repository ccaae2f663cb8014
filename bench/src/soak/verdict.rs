//! Whether anything grew: the soak's judgement on a language's samples, per resource.
//!
//! The counts (descriptors, threads, zombies, descendants, strays, stalled handlers, tasks) must be
//! exactly what they were at the baseline (taken after a warm-up, with no plugin running)
//! whenever no plugin of the soak is running, and must not move while the same plugins run.
//! Memory may not be exact (the allocator keeps what it freed), so it gets two bounds: the end
//! within [`RSS_BOUND_KIB`] of the baseline, and no phase's second half higher than its first
//! half by more than [`RSS_FLAT_KIB`] (growth that goes on is a leak; a step that stays is not).
//! The plugins' memory is judged by the second rule alone, with [`PLUGIN_RSS_FLAT_KIB`] (an
//! interpreter's heap breathes with its collector), in the phases where they run.

use serde::Serialize;

use super::sample::{Resources, Sample, COLUMNS};

/// How far above the baseline the host's resident memory may end (KiB).
pub const RSS_BOUND_KIB: u64 = 8 * 1024;
/// How much higher a phase's second half may peak than its first half (KiB).
pub const RSS_FLAT_KIB: u64 = 2 * 1024;
/// The same for the running plugins' memory together (KiB).
pub const PLUGIN_RSS_FLAT_KIB: u64 = 4 * 1024;
/// The phase of the reading every other is compared with.
pub const BASELINE: &str = "baseline";
/// The phase before the warm-up, shown but not judged (the first start creates the runtime's
/// signal pipe and the host's spawner thread, once per process).
pub const START: &str = "start";

/// The verdict on one resource.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Verdict {
    /// The column (`rss_kib`, `fds`, ...).
    pub resource: &'static str,
    /// Whether it stayed within its constant.
    pub pass: bool,
    /// Why, in words: the bound and the first reading that broke it.
    pub why: String,
}

/// Judges every resource column of `samples` (see the module's doc).
pub fn judge(samples: &[Sample]) -> Vec<Verdict> {
    let Some(base) = samples.iter().find(|s| s.phase == BASELINE) else {
        return COLUMNS
            .iter()
            .map(|(name, _)| Verdict { resource: name, pass: false, why: "no baseline sample".into() })
            .collect();
    };
    let judged: Vec<&Sample> = samples.iter().filter(|s| s.phase != START && s.phase != BASELINE).collect();
    COLUMNS
        .iter()
        .map(|&(name, get)| match name {
            "rss_kib" => rss(base, &judged, get),
            "plugin_rss_kib" => match flat(name, &judged, get, PLUGIN_RSS_FLAT_KIB) {
                Ok(worst) => Verdict {
                    resource: name,
                    pass: true,
                    why: format!(
                        "second halves at most {worst} KiB above first halves (bound {PLUGIN_RSS_FLAT_KIB})"
                    ),
                },
                Err(failed) => failed,
            },
            _ => exact(name, base, &judged, get),
        })
        .collect()
}

/// Phases in order of first appearance, with their samples.
fn phases<'a>(judged: &[&'a Sample]) -> Vec<(&'a str, Vec<&'a Sample>)> {
    let mut out: Vec<(&str, Vec<&Sample>)> = Vec::new();
    for s in judged {
        match out.iter_mut().find(|(p, _)| *p == s.phase) {
            Some((_, list)) => list.push(s),
            None => out.push((&s.phase, vec![s])),
        }
    }
    out
}

fn exact(name: &'static str, base: &Sample, judged: &[&Sample], get: fn(&Resources) -> u64) -> Verdict {
    let b = get(&base.res);
    for (phase, list) in phases(judged) {
        // With no plugin running the reading is the baseline's; with plugins running, the
        // phase's first reading (its own plugins' pipes, threads and processes).
        let expected = match list.first() {
            Some(first) if first.live_plugins > 0 => get(&first.res),
            _ => b,
        };
        if let Some(bad) = list.iter().find(|s| get(&s.res) != expected) {
            return Verdict {
                resource: name,
                pass: false,
                why: format!("{} at {phase} {} (expected {expected}, baseline {b})", get(&bad.res), bad.done),
            };
        }
    }
    let end = judged.last().map_or(b, |s| get(&s.res));
    Verdict { resource: name, pass: true, why: format!("{b} at the baseline, {end} at the end, never moved") }
}

fn rss(base: &Sample, judged: &[&Sample], get: fn(&Resources) -> u64) -> Verdict {
    let b = get(&base.res);
    let end = judged.last().map_or(b, |s| get(&s.res));
    let grown = end.saturating_sub(b);
    if grown > RSS_BOUND_KIB {
        return Verdict {
            resource: "rss_kib",
            pass: false,
            why: format!(
                "ended {grown} KiB above the baseline ({b} -> {end} KiB; bound {RSS_BOUND_KIB} KiB)"
            ),
        };
    }
    let worst = match flat("rss_kib", judged, get, RSS_FLAT_KIB) {
        Ok(worst) => worst,
        Err(failed) => return failed,
    };
    Verdict {
        resource: "rss_kib",
        pass: true,
        why: format!(
            "{b} -> {end} KiB ({grown} KiB, bound {RSS_BOUND_KIB}); second halves at most {worst} KiB above first halves (bound {RSS_FLAT_KIB})"
        ),
    }
}

/// Whether no phase's second half peaked more than `bound` above its first half (phases of
/// fewer than four samples are too short to tell); the worst rise, or the failed verdict.
fn flat(
    name: &'static str,
    judged: &[&Sample],
    get: fn(&Resources) -> u64,
    bound: u64,
) -> Result<u64, Verdict> {
    let mut worst = 0u64;
    for (phase, list) in phases(judged) {
        if list.len() < 4 {
            continue;
        }
        let (first, second) = list.split_at(list.len() / 2);
        let peak = |half: &[&Sample]| half.iter().map(|s| get(&s.res)).max().unwrap_or(0);
        let rise = peak(second).saturating_sub(peak(first));
        if rise > bound {
            return Err(Verdict {
                resource: name,
                pass: false,
                why: format!(
                    "still growing in {phase}: its second half peaked {rise} KiB above its first (bound {bound} KiB)"
                ),
            });
        }
        worst = worst.max(rise);
    }
    Ok(worst)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(phase: &str, done: u64, live: u64, rss: u64, fds: u64) -> Sample {
        Sample {
            phase: phase.into(),
            done,
            live_plugins: live,
            res: Resources { rss_kib: rss, fds, threads: 4, ..Default::default() },
            secs: 0.0,
            settle_ms: 0.0,
        }
    }

    fn verdict<'a>(v: &'a [Verdict], name: &str) -> &'a Verdict {
        v.iter().find(|v| v.resource == name).expect("every column is judged")
    }

    fn steady() -> Vec<Sample> {
        let mut v = vec![s(START, 0, 0, 1000, 5), s(BASELINE, 0, 0, 9000, 9)];
        for i in 0..=10 {
            v.push(s("calls", i * 100, 2, 12_000 + (i % 3) * 100, 15));
        }
        v.push(s("after-calls", 0, 0, 10_000, 9));
        for i in 1..=10 {
            v.push(s("kill-cycles", i * 100, 0, 10_000, 9));
        }
        v
    }

    #[test]
    fn flat_samples_pass_every_resource() {
        let v = judge(&steady());
        assert_eq!(v.len(), COLUMNS.len());
        assert!(v.iter().all(|v| v.pass), "{v:#?}");
    }

    #[test]
    fn a_descriptor_left_open_after_the_plugins_end_fails() {
        let mut samples = steady();
        if let Some(last) = samples.last_mut() {
            last.res.fds = 10;
        }
        let v = judge(&samples);
        let fds = verdict(&v, "fds");
        assert!(!fds.pass && fds.why.contains("10 at kill-cycles 1000"), "{fds:?}");
        assert!(verdict(&v, "threads").pass);
    }

    #[test]
    fn descriptors_growing_while_the_plugins_run_fail() {
        let mut samples = steady();
        for (i, x) in samples.iter_mut().filter(|x| x.phase == "calls").enumerate() {
            x.res.fds = 15 + i as u64;
        }
        assert!(!verdict(&judge(&samples), "fds").pass);
    }

    #[test]
    fn a_zombie_at_the_end_fails() {
        let mut samples = steady();
        if let Some(last) = samples.last_mut() {
            last.res.zombies = 1;
        }
        assert!(!verdict(&judge(&samples), "zombies").pass);
    }

    #[test]
    fn memory_growing_through_a_phase_fails_though_it_ends_within_the_bound() {
        let mut samples = steady();
        for (i, x) in samples.iter_mut().filter(|x| x.phase == "calls").enumerate() {
            x.res.rss_kib = 12_000 + i as u64 * 600;
        }
        let rss = judge(&samples).into_iter().find(|v| v.resource == "rss_kib");
        let rss = rss.expect("rss is judged");
        assert!(!rss.pass && rss.why.contains("still growing in calls"), "{rss:?}");
    }

    #[test]
    fn plugin_memory_growing_while_it_runs_fails() {
        let mut samples = steady();
        for (i, x) in samples.iter_mut().filter(|x| x.phase == "calls").enumerate() {
            x.res.plugin_rss_kib = 20_000 + i as u64 * 1000;
        }
        assert!(!verdict(&judge(&samples), "plugin_rss_kib").pass);
        assert!(verdict(&judge(&samples), "rss_kib").pass);
    }

    #[test]
    fn memory_ending_far_above_the_baseline_fails() {
        let mut samples = steady();
        if let Some(last) = samples.last_mut() {
            last.res.rss_kib = 9000 + RSS_BOUND_KIB + 1;
        }
        assert!(!verdict(&judge(&samples), "rss_kib").pass);
    }

    #[test]
    fn without_a_baseline_nothing_passes() {
        let samples: Vec<Sample> = steady().into_iter().filter(|x| x.phase != BASELINE).collect();
        assert!(judge(&samples).iter().all(|v| !v.pass));
    }
}
