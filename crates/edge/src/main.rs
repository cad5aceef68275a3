//! `agentgate-edge`: parse configuration, bind listeners, serve until SIGTERM or Ctrl-C.

use std::process::ExitCode;
use std::sync::Arc;

use agentgate_edge::config::Config;
use agentgate_edge::server::{self, Listeners};
use agentgate_runtime::clock::SystemClock;
use clap::Parser;
use rand::RngCore;
use rand::SeedableRng;

fn main() -> ExitCode {
    let config = match Config::parse().resolve() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("agentgate-edge: invalid configuration: {e}");
            return ExitCode::from(3);
        }
    };
    if config.validate_only {
        println!("configuration is valid");
        return ExitCode::SUCCESS;
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("agentgate-edge: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(serve(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("agentgate-edge: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(config: Config) -> Result<(), String> {
    let _telemetry = agentgate_runtime::telemetry::init(
        &config.log_format,
        server::LOG_FILTER,
        &config.traces.settings("agentgate-edge"),
    )?;
    let metrics = server::init_metrics()?;
    let listeners = Listeners {
        mcp: agentgate_runtime::net::bind(config.listen)
            .await
            .map_err(|e| format!("cannot bind {}: {e}", config.listen))?,
        http: agentgate_runtime::net::bind(config.http_listen)
            .await
            .map_err(|e| format!("cannot bind {}: {e}", config.http_listen))?,
    };
    // Unique per start: the core deduplicates audit records by (edge id, sequence).
    let suffix = rand::rngs::StdRng::from_os_rng().next_u64();
    let edge_id = format!("{}-{suffix:016x}", config.name);
    server::run(
        config,
        edge_id,
        listeners,
        server::Env {
            clock: Arc::new(SystemClock),
            dialer: agentgate_runtime::net::Dialer::tcp(),
        },
        Some(metrics),
        |r| {
            // One line on stdout that scripts and tests read to find the bound ports.
            println!(
                "agentgate-edge id={} mcp={} http={}",
                r.edge_id, r.mcp_addr, r.http_addr
            );
        },
        shutdown_signal(),
    )
    .await
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
