//! Talking to the core: pick the first endpoint that answers, then send every call there (any
//! node serves: followers forward writes to the leader and read linearizably through it).

use std::time::Duration;

use agentgate_model::Op;
use agentgate_model::Response;
use agentgate_model::entity::{Entity, Kind};
use agentgate_model::query::{Query, QueryResult};
use agentgate_proto::pb::admin_client::AdminClient;
use agentgate_proto::pb::{ClusterStatus, ProposeRequest, QueryRequest, StatusRequest};
use tonic::transport::Channel;

use crate::error::{CliError, Exit, Result};

/// What a committed proposal answered.
pub struct Proposed {
    pub revision: u64,
    pub response: Response,
    /// Only for agent creation: the key, shown once.
    pub api_key: String,
}

pub struct Client {
    endpoints: Vec<String>,
    timeout: Duration,
    actor: String,
    conn: Option<(String, AdminClient<Channel>)>,
}

/// How long reads keep retrying while the cluster has no leader.
const READ_RETRY: Duration = Duration::from_secs(5);

impl Client {
    pub fn new(endpoints: &str, timeout: Duration, actor: String) -> Result<Self> {
        let endpoints: Vec<String> = endpoints
            .split(',')
            .map(str::trim)
            .filter(|e| !e.is_empty())
            .map(str::to_string)
            .collect();
        if endpoints.is_empty() {
            return Err(CliError::invalid("no endpoint given").hint(
                "pass --endpoint HOST:PORT[,HOST:PORT…] or set AGENTGATE_ENDPOINT to any core node's gRPC address",
            ));
        }
        Ok(Client {
            endpoints,
            timeout,
            actor,
            conn: None,
        })
    }

    /// A client for one address (used to ask each member for its own status).
    pub fn dial(addr: &str, timeout: Duration) -> Result<AdminClient<Channel>> {
        agentgate_proto::channel::lazy(addr, timeout, &agentgate_proto::net::Dialer::tcp())
            .map(AdminClient::new)
            .map_err(|e| {
                CliError::invalid(e).hint("endpoints are HOST:PORT of a core node's gRPC listener")
            })
    }

    /// The endpoint in use (after the first call).
    pub fn endpoint(&self) -> Option<&str> {
        self.conn.as_ref().map(|(e, _)| e.as_str())
    }

    /// The first endpoint that answers a status request, tried in the order given.
    async fn admin(&mut self) -> Result<AdminClient<Channel>> {
        if let Some((_, c)) = &self.conn {
            return Ok(c.clone());
        }
        let mut failures = Vec::new();
        for ep in &self.endpoints {
            let mut c = Client::dial(ep, self.timeout)?;
            match c.status(StatusRequest {}).await {
                Ok(_) => {
                    self.conn = Some((ep.clone(), c.clone()));
                    return Ok(c);
                }
                Err(s) => failures.push(format!("{ep}: {}", s.message())),
            }
        }
        Err(CliError::new(
            Exit::Error,
            "unreachable",
            format!("no core node answered ({})", failures.join("; ")),
        )
        .hint("check --endpoint / AGENTGATE_ENDPOINT (HOST:PORT of a node's gRPC listener, comma-separated for several) and that the nodes are running"))
    }

    pub async fn status(&mut self) -> Result<ClusterStatus> {
        let mut c = self.admin().await?;
        c.status(StatusRequest {})
            .await
            .map(tonic::Response::into_inner)
            .map_err(|s| CliError::from_status(&s))
    }

    pub async fn propose(&mut self, op: Op) -> Result<Proposed> {
        let mut c = self.admin().await?;
        let op_json = serde_json::to_vec(&op)
            .map_err(|e| CliError::new(Exit::Error, "internal", format!("encode: {e}")))?;
        let reply = c
            .propose(traced(ProposeRequest {
                op_json,
                actor: self.actor.clone(),
            }))
            .await
            .map_err(|s| CliError::from_status(&s))?
            .into_inner();
        let response = serde_json::from_slice(&reply.response_json).map_err(|e| {
            CliError::new(
                Exit::Error,
                "internal",
                format!("the node's answer is not understood: {e}"),
            )
            .hint("agentgate-admin and the core nodes may be different versions")
        })?;
        Ok(Proposed {
            revision: reply.revision,
            response,
            api_key: reply.api_key,
        })
    }

    /// A linearizable read; retried briefly while the cluster has no leader.
    pub async fn query(&mut self, q: &Query) -> Result<(u64, QueryResult)> {
        let mut c = self.admin().await?;
        let query_json = serde_json::to_vec(q)
            .map_err(|e| CliError::new(Exit::Error, "internal", format!("encode: {e}")))?;
        let mut waited = Duration::ZERO;
        let step = Duration::from_millis(200);
        let reply = loop {
            match c
                .query(traced(QueryRequest {
                    query_json: query_json.clone(),
                }))
                .await
            {
                Ok(r) => break r.into_inner(),
                Err(s) if s.code() == tonic::Code::Unavailable && waited < READ_RETRY => {
                    tokio::time::sleep(step).await;
                    waited += step;
                }
                Err(s) => return Err(CliError::from_status(&s)),
            }
        };
        let result = serde_json::from_slice(&reply.result_json).map_err(|e| {
            CliError::new(
                Exit::Error,
                "internal",
                format!("the node's answer is not understood: {e}"),
            )
            .hint("agentgate-admin and the core nodes may be different versions")
        })?;
        Ok((reply.revision, result))
    }

    pub async fn list(&mut self, kind: Kind, tenant: Option<&str>) -> Result<Vec<Entity>> {
        let q = Query::List {
            kind,
            tenant: tenant.map(str::to_string),
        };
        match self.query(&q).await?.1 {
            QueryResult::Entities(v) => Ok(v),
            other => Err(unexpected(&other)),
        }
    }

    pub async fn get(&mut self, kind: Kind, key: &str) -> Result<Option<Entity>> {
        let q = Query::Get {
            kind,
            key: key.to_string(),
        };
        match self.query(&q).await?.1 {
            QueryResult::Entity(e) => Ok(e.map(|b| *b)),
            other => Err(unexpected(&other)),
        }
    }

    pub fn raw(&mut self) -> impl Future<Output = Result<AdminClient<Channel>>> + '_ {
        self.admin()
    }
}

/// A request carrying the command's trace context (when traces are exported), so the core
/// continues the operator's trace.
fn traced<T>(msg: T) -> tonic::Request<T> {
    let mut req = tonic::Request::new(msg);
    agentgate_proto::telemetry::inject_current(req.metadata_mut());
    req
}

pub fn unexpected(r: &QueryResult) -> CliError {
    let kind = match r {
        QueryResult::Entity(_) => "entity",
        QueryResult::Entities(_) => "entities",
        QueryResult::Audit { .. } => "audit",
        QueryResult::AuditHead(_) => "audit head",
    };
    CliError::new(
        Exit::Error,
        "internal",
        format!("the node answered an unexpected result ({kind})"),
    )
    .hint("agentgate-admin and the core nodes may be different versions")
}
