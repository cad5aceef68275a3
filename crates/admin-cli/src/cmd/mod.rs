//! One module per command group; each turns arguments into Admin API calls and prints results.

use std::time::Duration;

use agentgate_model::Response;
use agentgate_model::entity::Entity;
use agentgate_runtime::clock::{Clock, SystemClock};
use serde_json::{Value, json};

use crate::cli::{Cli, Command};
use agentgate_client::RequestIds;
use rand::SeedableRng;

use crate::client::{Client, Proposed};
use crate::error::{CliError, Result};
use crate::out::Out;

mod approvals;
mod audit;
mod certs;
mod cluster;
mod entities;
mod policy;
mod rollout;
mod switches;

/// What every command gets.
pub struct Ctx {
    pub client: Client,
    pub out: Out,
    pub actor: String,
    pub timeout: Duration,
    pub clock: SystemClock,
}

impl Ctx {
    pub fn now_ms(&self) -> u64 {
        self.clock.now_ms()
    }

    /// Proposes `op` and prints `what` with the entity it produced (if any).
    async fn change(&mut self, op: agentgate_model::Op, what: &str) -> Result<Proposed> {
        let p = self.client.propose(op).await?;
        let entity = entity_json(&p.response);
        self.out.emit(
            &json!({"ok": true, "revision": p.revision, "entity": entity}),
            || format!("{what} (revision {})", p.revision),
        );
        Ok(p)
    }
}

/// The entity a proposal answered, or null.
pub fn entity_json(r: &Response) -> Value {
    match r {
        Response::Entity(e) => entity_value(e),
        _ => Value::Null,
    }
}

/// An entity's own fields (without the kind tag).
pub fn entity_value(e: &Entity) -> Value {
    let v = serde_json::to_value(e).unwrap_or(Value::Null);
    v.get("value").cloned().unwrap_or(v)
}

pub async fn run(cli: Cli) -> Result<()> {
    let actor = cli
        .actor
        .or_else(|| std::env::var("USER").ok())
        .filter(|a| !a.is_empty())
        .unwrap_or_else(|| "operator".to_string());
    let timeout = Duration::from_millis(cli.timeout_ms.max(1));
    let mut ctx = Ctx {
        client: Client::new(
            &cli.endpoint,
            timeout,
            actor.clone(),
            RequestIds::random(&mut rand::rngs::StdRng::from_os_rng()),
        )?,
        out: Out { json: cli.json },
        actor,
        timeout,
        clock: SystemClock,
    };
    match cli.command {
        Command::Cluster(c) => cluster::run(&mut ctx, c).await,
        Command::Tenant(c) => entities::tenant(&mut ctx, c).await,
        Command::Agent(c) => entities::agent(&mut ctx, c).await,
        Command::Upstream(c) => entities::upstream(&mut ctx, c).await,
        Command::Policy(c) => policy::run(&mut ctx, c).await,
        Command::Rollout(c) => rollout::run(&mut ctx, c).await,
        Command::Pause(a) => switches::pause(&mut ctx, a).await,
        Command::Resume(a) => switches::resume(&mut ctx, a).await,
        Command::Kill(c) => switches::kill(&mut ctx, c).await,
        Command::Switches(c) => switches::list_or_release(&mut ctx, c).await,
        Command::Approvals(c) => approvals::run(&mut ctx, c).await,
        Command::Audit(c) => audit::run(&mut ctx, c).await,
        Command::Certs(c) => certs::run(&mut ctx, c),
    }
}

/// Parses `KEY=VALUE`.
pub fn key_value(s: &str, what: &str) -> Result<(String, String)> {
    s.split_once('=')
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .filter(|(k, _)| !k.is_empty())
        .ok_or_else(|| CliError::invalid(format!("{what} `{s}` is not KEY=VALUE")))
}
