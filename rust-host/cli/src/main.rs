//! The `tether` command line: `inspect` a plugin, `call` one of its methods, `trace` the frames
//! between a host and a plugin, `interface export` what it declares as an interface file
//! (`rust-host/cli/README.md` documents each subcommand).

mod builtin_handle;
mod call;
mod clock;
mod export;
mod inspect;
mod launch;
mod progress;
mod shown;
mod trace;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Exit status: the call failed (an error answer, a time-out, the plugin exited during it).
const EXIT_CALL_FAILED: u8 = 1;
/// Exit status: the plugin could not be started (spawn, cookie, handshake, versions).
const EXIT_NOT_STARTED: u8 = 3;

/// Poke a Tether plugin: see what it declares, call it, or watch its frames.
#[derive(Debug, Parser)]
#[command(name = "tether", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Start a plugin and print what it declares: info, versions, methods with their schemas,
    /// capabilities, start time and stderr.
    Inspect(inspect::InspectArgs),
    /// Start a plugin, call one method (or the same one `--repeat` times) and print the result.
    Call(call::CallArgs),
    /// Run as the plugin: start the real one, relay every byte both ways unchanged and log every
    /// frame (to stderr, or `--out FILE`).
    Trace(trace::TraceArgs),
    /// Application interfaces as interface files (spec/schema/interface.schema.json).
    #[command(subcommand)]
    Interface(InterfaceCommand),
}

#[derive(Debug, Subcommand)]
enum InterfaceCommand {
    /// Start a plugin and write the interface file of what it declares: every version it speaks
    /// (or each `--version`), with its methods' params and result schemas. `--interface NAME`
    /// chooses the interface (needed when the plugin declares several, or none of SPEC.md §9).
    Export(export::ExportArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Command::Trace(args) = cli.command {
        // The trace relays with blocking threads and exits with the plugin's status at once, so
        // that a blocking read of its own stdin cannot hold the process open.
        std::process::exit(trace::run(args));
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("tether: cannot start the async runtime: {e}");
            return ExitCode::from(EXIT_NOT_STARTED);
        }
    };
    let status = runtime.block_on(async {
        match cli.command {
            Command::Inspect(args) => inspect::run(args).await,
            Command::Call(args) => call::run(args).await,
            Command::Interface(InterfaceCommand::Export(args)) => export::run(args).await,
            Command::Trace(_) => Ok(0),
        }
    });
    match status {
        Ok(code) => ExitCode::from(code),
        Err(failure) => {
            eprintln!("tether: {:#}", failure.error);
            ExitCode::from(failure.status)
        }
    }
}

/// A failure of a subcommand and the exit status it means.
#[derive(Debug)]
struct Failure {
    status: u8,
    error: anyhow::Error,
}

impl Failure {
    /// The plugin could not be started.
    fn not_started(error: impl Into<anyhow::Error>) -> Self {
        Failure { status: EXIT_NOT_STARTED, error: error.into() }
    }

    /// The call (or what the subcommand did with a running plugin) failed.
    fn failed(error: impl Into<anyhow::Error>) -> Self {
        Failure { status: EXIT_CALL_FAILED, error: error.into() }
    }
}
