//! `agentgate-node`: parse configuration, bind listeners, run until SIGTERM or Ctrl-C.

use std::process::ExitCode;
use std::sync::Arc;

use agentgate_node::Listeners;
use agentgate_node::app::Env;
use agentgate_node::config::Config;
use agentgate_runtime::clock::SystemClock;
use clap::Parser;
use rand::SeedableRng;

fn main() -> ExitCode {
    let config = match Config::parse().resolve() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("agentgate-node: invalid configuration: {e}");
            return ExitCode::from(3);
        }
    };
    if config.validate_only {
        println!("{config:#?}");
        return ExitCode::SUCCESS;
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("agentgate-node: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(serve(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("agentgate-node: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(config: Config) -> anyhow::Result<()> {
    let _telemetry = agentgate_runtime::telemetry::init(
        &config.log_format,
        agentgate_node::telemetry::LOG_FILTER,
        &config.traces.settings("agentgate-node"),
    )
    .map_err(anyhow::Error::msg)?;
    let metrics = agentgate_node::telemetry::init_metrics().map_err(anyhow::Error::msg)?;
    let listeners = Listeners {
        grpc: agentgate_runtime::net::bind(config.listen).await?,
        peer: match config.peer_listen {
            Some(addr) => Some(agentgate_runtime::net::bind(addr).await?),
            None => None,
        },
        http: agentgate_runtime::net::bind(config.http_listen).await?,
    };
    let env = Env {
        clock: Arc::new(SystemClock),
        rng: Box::new(rand::rngs::StdRng::from_os_rng()),
        dialer: agentgate_runtime::net::Dialer::tcp(),
    };
    let id = config.id;
    agentgate_node::run(
        config,
        listeners,
        env,
        metrics,
        |r| {
            // One line on stdout that scripts and tests read to find the bound ports.
            let peer = r
                .peer_addr
                .map(|a| format!(" peer={a}"))
                .unwrap_or_default();
            println!(
                "agentgate-node id={id} grpc={}{peer} http={}",
                r.grpc_addr, r.http_addr
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
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
