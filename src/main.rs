//! The `rbdcp` command: parses arguments, runs the job, prints one error, sets the exit status.

mod cli;

use std::process::ExitCode;

use clap::Parser;

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
