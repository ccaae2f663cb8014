//! Transport: what only the `fds` transport asks of a plugin (§13), run with `--transport fds`.
//! Every other check runs over that transport too, with "stdin" and "stdout" meaning the two
//! frame descriptors.

use super::*;

/// Where each descriptor of `pid` leads (`pipe:[1234]`, `/dev/pts/0`), from `/proc`.
fn fd_links(pid: i32) -> Vec<(u32, String)> {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/fd")) else { return Vec::new() };
    let mut links: Vec<(u32, String)> = dir
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let fd = entry.file_name().to_str()?.parse().ok()?;
            Some((fd, std::fs::read_link(entry.path()).ok()?.display().to_string()))
        })
        .collect();
    links.sort();
    links
}

/// Whether descriptor `fd` of `pid` is close-on-exec (`O_CLOEXEC` in `/proc/<pid>/fdinfo`).
fn close_on_exec(pid: i32, fd: u32) -> Option<bool> {
    let info = std::fs::read_to_string(format!("/proc/{pid}/fdinfo/{fd}")).ok()?;
    let flags = info.lines().find_map(|l| l.strip_prefix("flags:"))?;
    Some(u32::from_str_radix(flags.trim(), 8).ok()? & 0o2_000_000 != 0)
}

async fn stdin_not_the_end(ctx: Arc<Ctx>) -> ScenarioOut {
    scenario!(ctx, LogLevel::Info, |s| {
        ping(&ctx, &mut s, "initialize").await?;
        s.close_real_stdin();
        // A plugin that takes the end of stdin for the end of the session exits within the
        // grace period of §1.6 (2 s); one that knows better is still there after it.
        if let Some(status) = s.exits_within(ctx.opts.grace).await {
            return Err(Failure::new(format!("{status} after the end of its real stdin"))
                .expected("the session goes on until the end of descriptor 3")
                .got(status.to_string())
                .fix("with TETHER_TRANSPORT=fds:R,W, end the session at the end of descriptor R, not of stdin (§13.3)"));
        }
        ping(&ctx, &mut s, "the end of its real stdin").await
    })
}

async fn frame_fds_private(ctx: Arc<Ctx>) -> ScenarioOut {
    scenario!(ctx, LogLevel::Info, |s| {
        ping(&ctx, &mut s, "initialize").await?;
        let Some(pid) = s.pgid() else { return Ok(()) };
        let pipes: Vec<String> = s.frame_pipes.iter().map(|ino| format!("pipe:[{ino}]")).collect();
        let links = fd_links(pid);
        let held: Vec<u32> = links.iter().filter(|(_, l)| pipes.contains(l)).map(|(fd, _)| *fd).collect();
        let inherited: Vec<u32> =
            held.iter().copied().filter(|fd| close_on_exec(pid, *fd) == Some(false)).collect();
        if !inherited.is_empty() {
            return Err(Failure::new(format!(
                "descriptor(s) {inherited:?} of the frame pipes would be inherited by the plugin's children"
            ))
            .expected("every descriptor of the frame pipes close-on-exec")
            .got(format!("descriptors: {links:?}"))
            .fix("set FD_CLOEXEC on both descriptors of TETHER_TRANSPORT (Python: os.set_inheritable(fd, False)) (§13.3)"));
        }
        Ok(())
    })
}

async fn stdio_left_alone(ctx: Arc<Ctx>) -> ScenarioOut {
    scenario!(ctx, LogLevel::Info, |s| {
        ping(&ctx, &mut s, "initialize").await?;
        let Some(pid) = s.pgid() else { return Ok(()) };
        let links = fd_links(pid);
        let link = |fd: u32| links.iter().find(|(n, _)| *n == fd).map(|(_, l)| l.clone());
        for (fd, name, inode) in [(0, "stdin", s.stdio_pipes[0]), (1, "stdout", s.stdio_pipes[1])] {
            let Some(inode) = inode else { continue };
            let expected = format!("pipe:[{inode}]");
            if link(fd).as_deref() != Some(expected.as_str()) {
                return Err(Failure::new(format!("descriptor {fd} is no longer the {name} the judge gave"))
                    .expected(format!("descriptor {fd} left as it was ({expected})"))
                    .got(link(fd).unwrap_or_else(|| "closed".to_owned()))
                    .fix("with TETHER_TRANSPORT=fds:R,W, leave descriptors 0, 1 and 2 alone: they are the user's terminal (do not protect stdout as §8.4 says for stdio) (§13.3)"));
            }
        }
        Ok(())
    })
}

/// The checks of this section, in report order.
pub(super) fn checks() -> Vec<Check> {
    vec![
        Check {
            id: "transport.stdin-not-the-end",
            section: "§13.3",
            title: "fds: the end of stdin does not end the session",
            needs: Needs::FdsTransport,
            tier: Tier::Core,
            kind: s!(stdin_not_the_end),
        },
        Check {
            id: "transport.fds-close-on-exec",
            section: "§13.3",
            title: "fds: the frame descriptors are close-on-exec",
            needs: Needs::FdsTransport,
            tier: Tier::Core,
            kind: s!(frame_fds_private),
        },
        Check {
            id: "transport.stdio-left-alone",
            section: "§13.3",
            title: "fds: stdin and stdout stay what the host gave",
            needs: Needs::FdsTransport,
            tier: Tier::Core,
            kind: s!(stdio_left_alone),
        },
    ]
}
