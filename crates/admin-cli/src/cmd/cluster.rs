//! `cluster init | status | add-node | remove-node`.

use std::time::Duration;

use agentgate_proto::pb::{
    AddNodeRequest, ClusterStatus, InitClusterRequest, NodeAddr, RemoveNodeRequest, StatusRequest,
};
use serde_json::{Value, json};

use super::Ctx;
use crate::cli::ClusterCmd;
use crate::client::Client;
use crate::error::{CliError, Result};
use crate::out::{opt, table};

pub async fn run(ctx: &mut Ctx, cmd: ClusterCmd) -> Result<()> {
    match cmd {
        ClusterCmd::Init { members } => {
            let members = members
                .iter()
                .map(|m| parse_member(m))
                .collect::<Result<Vec<_>>>()?;
            let mut c = ctx.client.raw().await?;
            let s = c
                .init_cluster(InitClusterRequest { members })
                .await
                .map_err(|s| CliError::from_status(&s))?
                .into_inner();
            ctx.out.emit(&status_json(&s), || {
                format!("cluster initialized\n{}", summary(&s))
            });
        }
        ClusterCmd::Status => status(ctx).await?,
        ClusterCmd::AddNode { id, addr, learner } => {
            let mut c = ctx.client.raw().await?;
            let s = c
                .add_node(AddNodeRequest {
                    node: Some(NodeAddr { id, addr }),
                    as_voter: !learner,
                })
                .await
                .map_err(|s| CliError::from_status(&s))?
                .into_inner();
            let role = if learner { "learner" } else { "voter" };
            ctx.out.emit(&status_json(&s), || {
                format!("node {id} added as {role}\n{}", summary(&s))
            });
        }
        ClusterCmd::RemoveNode { id } => {
            let mut c = ctx.client.raw().await?;
            let s = c
                .remove_node(RemoveNodeRequest { id })
                .await
                .map_err(|s| CliError::from_status(&s))?
                .into_inner();
            ctx.out.emit(&status_json(&s), || {
                format!("node {id} removed\n{}", summary(&s))
            });
        }
    }
    Ok(())
}

fn parse_member(m: &str) -> Result<NodeAddr> {
    let (id, addr) = super::key_value(m, "member")?;
    let id = id.parse::<u64>().ok().filter(|i| *i > 0).ok_or_else(|| {
        CliError::invalid(format!("member `{m}`: the id must be a positive integer"))
    })?;
    Ok(NodeAddr { id, addr })
}

fn status_json(s: &ClusterStatus) -> Value {
    json!({
        "node_id": s.node_id,
        "state": s.state,
        "leader_id": s.leader_id,
        "term": s.term,
        "last_log_index": s.last_log_index,
        "committed_index": s.committed_index,
        "applied_index": s.applied_index,
        "snapshot_index": s.snapshot_index,
        "revision": s.revision,
        "region": s.region,
        "initialized": s.initialized,
        "voters": s.voters.iter().map(|n| json!({"id": n.id, "addr": n.addr})).collect::<Vec<_>>(),
        "learners": s.learners.iter().map(|n| json!({"id": n.id, "addr": n.addr})).collect::<Vec<_>>(),
    })
}

fn summary(s: &ClusterStatus) -> String {
    let ids = |v: &[NodeAddr]| {
        v.iter()
            .map(|n| format!("{}={}", n.id, n.addr))
            .collect::<Vec<_>>()
            .join(", ")
    };
    format!(
        "leader: {}  term: {}  voters: {}  learners: {}",
        s.leader_id.map_or("none".to_string(), |l| l.to_string()),
        s.term,
        ids(&s.voters),
        if s.learners.is_empty() {
            "none".to_string()
        } else {
            ids(&s.learners)
        }
    )
}

/// The answering node's view plus every member's own status (each asked directly).
async fn status(ctx: &mut Ctx) -> Result<()> {
    let s = ctx.client.status().await?;
    let per_member = ctx.timeout.min(Duration::from_secs(2));
    let mut members = Vec::new();
    let mut rows = Vec::new();
    let all = s
        .voters
        .iter()
        .map(|n| (n, "voter"))
        .chain(s.learners.iter().map(|n| (n, "learner")));
    for (n, role) in all {
        let view = match Client::dial(&n.addr, per_member) {
            Ok(mut c) => c
                .status(StatusRequest {})
                .await
                .map(tonic::Response::into_inner)
                .map_err(|e| e.message().to_string()),
            Err(e) => Err(e.message),
        };
        match view {
            Ok(m) => {
                rows.push([
                    n.id.to_string(),
                    n.addr.clone(),
                    role.to_string(),
                    m.state.clone(),
                    m.term.to_string(),
                    m.applied_index.map_or("-".into(), |i| i.to_string()),
                    m.revision.to_string(),
                    m.region.clone(),
                ]);
                members.push(json!({"id": n.id, "addr": n.addr, "role": role, "reachable": true, "status": status_json(&m)}));
            }
            Err(e) => {
                rows.push([
                    n.id.to_string(),
                    n.addr.clone(),
                    role.to_string(),
                    "unreachable".into(),
                    "-".into(),
                    "-".into(),
                    "-".into(),
                    "-".into(),
                ]);
                members.push(json!({"id": n.id, "addr": n.addr, "role": role, "reachable": false, "error": e}));
            }
        }
    }
    let endpoint = ctx.client.endpoint().map(str::to_string);
    ctx.out.emit(
        &json!({"endpoint": endpoint, "node": status_json(&s), "members": members}),
        || {
            if !s.initialized {
                return format!(
                    "node {} at {} is not part of an initialized cluster yet\n  next: agentgate-admin cluster init ID=HOST:PORT,…",
                    s.node_id,
                    opt(endpoint.as_deref())
                );
            }
            format!(
                "{}\ncommitted index: {}  revision: {}\n\n{}",
                summary(&s),
                s.committed_index.map_or("-".into(), |i| i.to_string()),
                s.revision,
                table(
                    ["ID", "ADDRESS", "ROLE", "STATE", "TERM", "APPLIED", "REVISION", "REGION"],
                    rows
                )
            )
        },
    );
    Ok(())
}
