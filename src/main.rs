//! The `rbdcp` command: parses arguments, runs the job, prints one error, sets the exit status.

mod cli;

use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches};

/// jemalloc serves every allocation of the process, librados' and librbd's included: with
/// glibc's malloc, the 4 MiB buffers that many threads allocate and free stay in per-thread
/// arenas, and a copy's memory grows with its workers instead of its bytes in flight. It is
/// built with one arena (`.cargo/config.toml`) for the same reason.
#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// `rbdcp 0.1.0 (1c589d8), librbd 1.16.0, librados 3.0.0`: the versions it runs against.
fn version() -> &'static str {
    let (rbd, rados) = rbdcp::rbd::versions();
    let text = format!(
        "{} ({}), librbd {rbd}, librados {rados}",
        env!("CARGO_PKG_VERSION"),
        env!("RBDCP_COMMIT")
    );
    Box::leak(text.into_boxed_str())
}

fn main() -> ExitCode {
    let matches = cli::args::Cli::command().version(version()).get_matches();
    let args = match cli::args::Cli::from_arg_matches(&matches) {
        Ok(args) => args,
        Err(e) => e.exit(),
    };
    let json = cli::wants_json(&args.command);
    match cli::run(args.command, &args.cluster) {
        Ok(code) => code,
        Err(err) => {
            let mut message = format!("{err:#}");
            message.extend(cli::rbd_hint(&err));
            if json && err.downcast_ref::<cli::Differ>().is_none() {
                cli::print_json_error(&message);
            }
            eprintln!("rbdcp: {message}");
            if err.downcast_ref::<cli::Usage>().is_some() {
                return ExitCode::from(2);
            }
            match err.downcast_ref::<rbdcp::Error>() {
                Some(e) if matches!(e.root(), rbdcp::Error::Interrupted) => {
                    ExitCode::from(cli::signal_exit().unwrap_or(130))
                }
                Some(e) => ExitCode::from(e.exit().code()),
                None => ExitCode::FAILURE,
            }
        }
    }
}
