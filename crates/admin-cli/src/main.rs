//! `agentgate-admin`: the operator's CLI for an AgentGate cluster (design.md §6).
//!
//! - [`cli`]: the command line; [`cmd`]: one module per command group.
//! - [`client`]: endpoint selection and the Admin API calls.
//! - [`error`]: errors, their exit codes and hints; [`out`]: text, JSON and progress output.
#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::error::ErrorKind;
use clap::{CommandFactory, FromArgMatches};

mod cli;
mod client;
mod cmd;
mod error;
mod out;

/// The command's name as typed (`tenant create`, `pause`): subcommand words, never values.
fn command_name(m: &clap::ArgMatches) -> String {
    let mut words = Vec::new();
    let mut m = m;
    while let Some((name, sub)) = m.subcommand() {
        words.push(name);
        m = sub;
    }
    words.join(" ")
}

fn main() -> ExitCode {
    let parsed = cli::Cli::command()
        .try_get_matches()
        .and_then(|m| cli::Cli::from_arg_matches(&m).map(|c| (c, command_name(&m))));
    let (cli, command) = match parsed {
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
    // Multi-threaded (one worker): the trace exporter's flush at exit runs outside `block_on`.
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    // Traces only when configured (no log output otherwise: the CLI speaks on stdout/stderr).
    let settings = cli.traces.settings("agentgate-admin");
    let telemetry = if settings.exporting() {
        match rt.block_on(async { agentgate_runtime::telemetry::init("text", "off", &settings) }) {
            Ok(t) => Some(t),
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(3);
            }
        }
    } else {
        None
    };
    let span = tracing::info_span!(
        target: agentgate_runtime::telemetry::TARGET,
        "agentgate.admin_cli",
        otel.kind = "client",
        agentgate.command = command.as_str(),
    );
    let result = rt.block_on(tracing::Instrument::instrument(cmd::run(cli), span));
    // Flushes the spans (bounded by the export timeout) while the runtime still runs.
    drop(telemetry);
    match result {
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
