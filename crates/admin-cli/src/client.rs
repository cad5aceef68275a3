//! Talking to the core: pick the first endpoint that answers, then send every call there (any
//! node serves: followers forward writes to the leader and read linearizably through it).
//! Writes and reads go through `agentgate-client`, whose one retry rule (with a request id per
//! write) moves on to the next endpoint while there is no leader or a node stops answering.

use std::sync::Arc;
use std::time::Duration;

use agentgate_client::{ClientConfig, ClientError, RequestIds, Retry};
use agentgate_model::Op;
use agentgate_model::Response;
use agentgate_model::entity::{Entity, Kind};
use agentgate_model::query::{Query, QueryResult};
use agentgate_proto::pb::admin_client::AdminClient;
use agentgate_proto::pb::{ClusterStatus, StatusRequest};
use agentgate_runtime::net::Dialer;
use tonic::transport::Channel;

use crate::error::{CliError, Exit, Result};

/// What a committed proposal answered.
pub struct Proposed {
    pub revision: u64,
    pub response: Response,
    /// Only for agent creation: the key, shown once (`None` when the answer was a replay of an
    /// attempt whose reply was lost: that key is kept nowhere).
    pub api_key: Option<String>,
}

pub struct Client {
    endpoints: Vec<String>,
    timeout: Duration,
    actor: String,
    /// Once an endpoint answered: it, and the typed client over all endpoints starting there.
    conn: Option<(String, agentgate_client::Client)>,
    /// Where the request ids of this run's writes come from.
    ids: Arc<RequestIds>,
}

/// How long a call keeps being retried (by the client's rule) while the cluster has no leader.
const RETRY_FOR: Duration = Duration::from_secs(5);

impl Client {
    /// `ids` must be unique to this run (random: operators run the CLI from many machines).
    pub fn new(endpoints: &str, timeout: Duration, actor: String, ids: RequestIds) -> Result<Self> {
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
            ids: Arc::new(ids),
        })
    }

    /// A client for one address (used to ask each member for its own status).
    pub fn dial(addr: &str, timeout: Duration) -> Result<AdminClient<Channel>> {
        agentgate_runtime::channel::lazy(addr, timeout, &agentgate_runtime::net::Dialer::tcp())
            .map(AdminClient::new)
            .map_err(|e| {
                CliError::invalid(e).hint("endpoints are HOST:PORT of a core node's gRPC listener")
            })
    }

    /// The endpoint in use (after the first call).
    pub fn endpoint(&self) -> Option<&str> {
        self.conn.as_ref().map(|(e, _)| e.as_str())
    }

    /// The typed client, over every endpoint starting at the first one that answers a status
    /// request (tried in the order given).
    async fn core(&mut self) -> Result<agentgate_client::Client> {
        if let Some((_, c)) = &self.conn {
            return Ok(c.clone());
        }
        let mut failures = Vec::new();
        for (i, ep) in self.endpoints.iter().enumerate() {
            let mut c = Client::dial(ep, self.timeout)?;
            match c.status(StatusRequest {}).await {
                Ok(_) => {
                    let mut order = self.endpoints.clone();
                    order.rotate_left(i);
                    let config = ClientConfig {
                        rpc_timeout: self.timeout,
                        dialer: Dialer::tcp(),
                        actor: self.actor.clone(),
                        retry: Retry::within(RETRY_FOR),
                    };
                    let core = agentgate_client::Client::new(&order, self.ids.clone(), config)
                        .map_err(|e| {
                            CliError::invalid(e.to_string())
                                .hint("endpoints are HOST:PORT of a core node's gRPC listener")
                        })?;
                    self.conn = Some((ep.clone(), core.clone()));
                    return Ok(core);
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

    async fn admin(&mut self) -> Result<AdminClient<Channel>> {
        Ok(self.core().await?.rpc())
    }

    pub async fn status(&mut self) -> Result<ClusterStatus> {
        let mut c = self.admin().await?;
        c.status(StatusRequest {})
            .await
            .map(tonic::Response::into_inner)
            .map_err(|s| CliError::from_status(&s))
    }

    /// A write, under one request id for all its attempts (a retry after a lost reply answers
    /// as the first attempt did).
    pub async fn propose(&mut self, op: Op) -> Result<Proposed> {
        let p = self.core().await?.propose(&op).await.map_err(from_client)?;
        Ok(Proposed {
            revision: p.revision,
            response: p.response,
            api_key: p.api_key,
        })
    }

    /// A linearizable read; retried while the cluster has no leader.
    pub async fn query(&mut self, q: &Query) -> Result<(u64, QueryResult)> {
        self.core().await?.query(q).await.map_err(from_client)
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

/// The CLI's error for a failed core call.
fn from_client(e: ClientError) -> CliError {
    match e {
        ClientError::Status(s) => CliError::from_status(&s),
        ClientError::Decode(m) => CliError::new(
            Exit::Error,
            "internal",
            format!("the node's answer is not understood: {m}"),
        )
        .hint("agentgate-admin and the core nodes may be different versions"),
        other => CliError::new(Exit::Error, "internal", other.to_string()),
    }
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
