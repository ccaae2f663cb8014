//! Delta debugging over a failing burst's inputs (Zeller's ddmin): the smallest list of inputs,
//! each trial on a fresh plugin, that still fails the same way.

use std::time::{Duration, Instant};

use super::burst::{FaultKind, Plugin, Setup};
use super::mutate::Item;

/// Limits on the search: each trial starts a plugin, and a silent plugin costs a time-out.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Budget {
    /// At most this many trials.
    pub(crate) trials: usize,
    /// And no trial started after this long.
    pub(crate) time: Duration,
}

/// Whether `items`, sent to a fresh plugin as one burst, fail with `kind`.
pub(crate) async fn fails(setup: &Setup, items: &[Item], kind: FaultKind) -> bool {
    let Ok(mut plugin) = Plugin::start(setup).await else { return false };
    let result = plugin.burst(items, setup.max_frame).await;
    plugin.finish().await;
    result.is_err_and(|f| f.kind == kind)
}

/// The smallest sublist of `items` (a failing input) that still fails with `kind`, within the
/// budget; and the number of trials run.
pub(crate) async fn minimize(
    setup: &Setup,
    mut items: Vec<Item>,
    kind: FaultKind,
    budget: Budget,
) -> (Vec<Item>, usize) {
    let started = Instant::now();
    let mut trials = 0;
    let mut n = 2usize;
    let within = |trials: usize| trials < budget.trials && started.elapsed() < budget.time;
    while items.len() >= 2 && within(trials) {
        let chunk = items.len().div_ceil(n);
        let parts: Vec<(usize, usize)> =
            (0..items.len()).step_by(chunk).map(|s| (s, (s + chunk).min(items.len()))).collect();
        let mut reduced = false;
        // A part alone, then everything but a part.
        for (start, end) in &parts {
            if !within(trials) {
                break;
            }
            trials += 1;
            let part = items[*start..*end].to_vec();
            if fails(setup, &part, kind).await {
                items = part;
                n = 2;
                reduced = true;
                break;
            }
        }
        if !reduced && parts.len() > 2 {
            for (start, end) in &parts {
                if !within(trials) {
                    break;
                }
                trials += 1;
                let mut rest = items[..*start].to_vec();
                rest.extend_from_slice(&items[*end..]);
                if fails(setup, &rest, kind).await {
                    items = rest;
                    n = (n - 1).max(2);
                    reduced = true;
                    break;
                }
            }
        }
        if !reduced {
            if n >= items.len() {
                break;
            }
            n = (n * 2).min(items.len());
        }
    }
    (items, trials)
}

/// The body of `wire` when it is exactly one frame in the writer form of §2.2.
fn body_of(wire: &[u8]) -> Option<&[u8]> {
    let rest = wire.strip_prefix(b"Content-Length: ".as_slice())?;
    let end = rest.windows(4).position(|w| w == b"\r\n\r\n")?;
    let n: usize = std::str::from_utf8(&rest[..end]).ok()?.parse().ok()?;
    let body = &rest[end + 4..];
    (body.len() == n && rest[..end].iter().all(u8::is_ascii_digit)).then_some(body)
}

/// Within one failing frame: removes runs of bytes from its body (halving their length, the
/// `Content-Length` rewritten) while it still fails with `kind`, within `trials`; the smaller
/// frame and the trials run. A frame that is not exactly one frame is left as it is.
pub(crate) async fn shrink_frame(setup: &Setup, item: Item, kind: FaultKind, trials: usize) -> (Item, usize) {
    let Some(body) = body_of(&item.wire) else { return (item, 0) };
    let mut body = body.to_vec();
    let mut run = 0;
    let mut chunk = body.len() / 2;
    while chunk >= 1 && run < trials {
        let mut start = 0;
        while start < body.len() && run < trials {
            let end = (start + chunk).min(body.len());
            let mut shorter = body[..start].to_vec();
            shorter.extend_from_slice(&body[end..]);
            let candidate = Item { wire: super::mutate::frame(&shorter), ..item.clone() };
            run += 1;
            if fails(setup, std::slice::from_ref(&candidate), kind).await {
                body = shorter;
            } else {
                start += chunk;
            }
        }
        chunk /= 2;
    }
    (Item { wire: super::mutate::frame(&body), ..item }, run)
}
