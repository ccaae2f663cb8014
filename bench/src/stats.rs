//! Median and p99 of a set of repetitions.

use serde::Serialize;

/// The summary of one figure's repetitions, in the figure's unit.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Summary {
    /// The median repetition.
    pub median: f64,
    /// The slow tail: the 99th percentile of the time per repetition. For a rate (calls/s, MB/s)
    /// this is the rate of that slow repetition, so it is lower than the median.
    pub p99: f64,
    /// The fastest repetition (lowest time, highest rate).
    pub best: f64,
    /// How many repetitions were measured (after the warm-up).
    pub samples: usize,
}

/// Nearest-rank percentile of sorted values, `q` in 0..=1.
fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Sorts ascending, NaN last.
fn sorted(values: &[f64]) -> Vec<f64> {
    let mut v = values.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    v
}

/// Summarises times (or any cost where lower is better): median, p99 and the lowest value.
pub fn of_costs(values: &[f64]) -> Summary {
    let v = sorted(values);
    Summary {
        median: percentile(&v, 0.5),
        p99: percentile(&v, 0.99),
        best: v.first().copied().unwrap_or(f64::NAN),
        samples: v.len(),
    }
}

/// Summarises rates computed as `work / seconds` per repetition: the median rate, the rate of the
/// p99 repetition time (the slow tail) and the best rate.
pub fn of_rates(work_per_rep: f64, seconds: &[f64]) -> Summary {
    let t = of_costs(seconds);
    Summary {
        median: work_per_rep / t.median,
        p99: work_per_rep / t.p99,
        best: work_per_rep / t.best,
        samples: t.samples,
    }
}

/// A figure measured once (a total divided by a count): median, p99 and best are the same.
pub fn one(v: f64) -> Summary {
    Summary { median: v, p99: v, best: v, samples: 1 }
}

/// CPU time consumed so far by every live thread of a process (this one for `None`), in
/// nanoseconds, from `/proc/<pid>/task/*/schedstat`: exact, unlike the 10 ms ticks of
/// `/proc/<pid>/stat`. Threads that already exited are not counted, so take both readings
/// while the same threads run.
pub fn cpu_ns(pid: Option<u32>) -> Option<u64> {
    let dir = match pid {
        Some(pid) => format!("/proc/{pid}/task"),
        None => "/proc/self/task".to_owned(),
    };
    let mut total = 0u64;
    for task in std::fs::read_dir(dir).ok()? {
        let Ok(task) = task else { continue };
        let Ok(text) = std::fs::read_to_string(task.path().join("schedstat")) else { continue };
        total += text.split_whitespace().next().and_then(|n| n.parse::<u64>().ok()).unwrap_or(0);
    }
    Some(total)
}

/// CPU time of this process and of `other` together, in nanoseconds.
pub fn cpu_pair_ns(other: Option<u32>) -> Option<u64> {
    Some(cpu_ns(None)? + cpu_ns(Some(other?))?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_and_p99() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        let s = of_costs(&v);
        assert_eq!(s.median, 50.0);
        assert_eq!(s.p99, 99.0);
        assert_eq!(s.best, 1.0);
        let r = of_rates(10.0, &[1.0, 2.0, 5.0]);
        assert_eq!(r.median, 5.0);
        assert_eq!(r.p99, 2.0);
        assert_eq!(r.best, 10.0);
    }
}
