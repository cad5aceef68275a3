//! `agentgate-admin`: the operator's CLI for an AgentGate cluster (DESIGN §6).
//!
//! - [`cli`]: the command line; [`cmd`]: one module per command group.
//! - [`client`]: endpoint selection and the Admin API calls.
//! - [`error`]: errors, their exit codes and hints; [`out`]: text, JSON and progress output.
#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::Parser;
use clap::error::ErrorKind;

mod cli;
mod client;
mod cmd;
mod error;
mod out;

fn main() -> ExitCode {
    let cli = match cli::Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return match e.kind() {
                ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => ExitCode::SUCCESS,
                _ => ExitCode::from(3),
            };
        }
    };
    let json = cli.json;
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(cmd::run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(mut e) => {
            if e.hint.is_none() {
                e.hint = Some(match e.exit {
                    error::Exit::Invalid => "see the command's usage with --help".to_string(),
                    _ => "fix what the message names and run the command again".to_string(),
                });
            }
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&e.to_json()).unwrap_or_default()
                );
            }
            eprintln!("{e}");
            ExitCode::from(e.exit as u8)
        }
    }
}
