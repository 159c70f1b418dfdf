//! The `rbdcp` command: parses arguments, runs the job, prints one error, sets the exit status.

mod cli;

use std::process::ExitCode;

use clap::Parser;

/// jemalloc serves every allocation of the process, librados' and librbd's included: with
/// glibc's malloc, the 4 MiB buffers that many threads allocate and free stay in per-thread
/// arenas, and a copy's memory grows with its workers instead of its bytes in flight.
#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    let args = cli::args::Cli::parse();
    let json = cli::wants_json(&args.command);
    match cli::run(args.command, &args.cluster) {
        Ok(code) => code,
        Err(err) => {
            let message = format!("{err:#}");
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
