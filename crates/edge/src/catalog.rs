//! What the edge knows of each upstream's tools: their annotations (which feed Cedar's `Tool`
//! attributes) and whether their definitions match the digests pinned in the registry.
//!
//! Learned from every `tools/list` reply the edge relays, or fetched by the edge itself when a
//! call names a tool it has not seen. A call naming a tool that the upstream's current list
//! does not have is refused before policy (MCP's unknown-tool error), so it never becomes an
//! approval request. A miss fetches the list once for all the calls waiting on it, and a list
//! fetched less than [`CATALOG_REFETCH_MS`] ago answers further misses, so calls for made-up
//! names cannot flood the upstream either; a tool the upstream adds is callable once the list
//! is fetched again (or relayed) after that.
//!
//! Annotations follow the MCP defaults, which are the cautious ones: a tool is not read-only,
//! and is destructive and open-world, unless it says otherwise.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use crate::limits::{CATALOG_REFETCH_MS, TOOLS_PER_SERVER_MAX};
use agentgate_model::digest::tool_digest;
use moka::sync::Cache;
use serde_json::Value;

/// One tool's facts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolInfo {
    pub read_only: bool,
    pub destructive: bool,
    pub idempotent: bool,
    pub open_world: bool,
    /// The definition's digest (see [`tool_digest`]).
    pub digest: String,
}

impl ToolInfo {
    /// Reads a tool definition from a `tools/list` result.
    pub fn from_definition(tool: &Value) -> Option<(String, ToolInfo)> {
        let name = tool.get("name")?.as_str()?.to_string();
        let hint = |k: &str| {
            tool.get("annotations")
                .and_then(|a| a.get(k))
                .and_then(Value::as_bool)
        };
        let read_only = hint("readOnlyHint").unwrap_or(false);
        Some((
            name,
            ToolInfo {
                read_only,
                // Per the spec the destructive hint means something only for tools that write.
                destructive: !read_only && hint("destructiveHint").unwrap_or(true),
                idempotent: hint("idempotentHint").unwrap_or(false),
                open_world: hint("openWorldHint").unwrap_or(true),
                digest: tool_digest(tool),
            },
        ))
    }

    /// Whether the definition is allowed by the upstream's pins (no pins: any definition).
    pub fn matches_pin(&self, name: &str, pins: &BTreeMap<String, String>) -> bool {
        pins.is_empty() || pins.get(name).is_some_and(|d| *d == self.digest)
    }
}

type Tools = Arc<HashMap<String, ToolInfo>>;
type Key = (String, String);

/// Tools by (tenant, server). Entries expire so that a changed upstream is re-learned.
#[derive(Clone)]
pub struct Catalog {
    known: Cache<Key, Tools>,
    /// The complete lists this edge fetched itself, kept [`CATALOG_REFETCH_MS`].
    fetched: moka::future::Cache<Key, Tools>,
}

impl Catalog {
    pub fn new(max_servers: u64, ttl: Duration) -> Self {
        Catalog {
            known: Cache::builder()
                .max_capacity(max_servers)
                .time_to_live(ttl)
                .build(),
            fetched: moka::future::Cache::builder()
                .max_capacity(max_servers)
                .time_to_live(Duration::from_millis(CATALOG_REFETCH_MS))
                .build(),
        }
    }

    fn key(tenant: &str, server: &str) -> Key {
        (tenant.to_string(), server.to_string())
    }

    pub fn get(&self, tenant: &str, server: &str, tool: &str) -> Option<ToolInfo> {
        self.known
            .get(&Self::key(tenant, server))
            .and_then(|t| t.get(tool).cloned())
    }

    /// Remembers the tools of one relayed `tools/list` page (merged with what is known: pages
    /// add up).
    pub fn learn(&self, tenant: &str, server: &str, tools: &[Value]) {
        let key = Self::key(tenant, server);
        let mut merged: HashMap<String, ToolInfo> = self
            .known
            .get(&key)
            .map(|t| t.as_ref().clone())
            .unwrap_or_default();
        add(&mut merged, tools);
        self.known.insert(key, Arc::new(merged));
    }

    /// A tool's facts: known, or looked up in the upstream's list (`fetch` gets every page of
    /// it, called at most once per [`CATALOG_REFETCH_MS`] for all the calls that miss meanwhile).
    /// `Ok(None)`: the upstream does not list the tool. `Err`: the list cannot be had.
    pub async fn find<F, Fut>(
        &self,
        tenant: &str,
        server: &str,
        tool: &str,
        fetch: F,
    ) -> Result<Option<ToolInfo>, String>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Vec<Value>, String>>,
    {
        if let Some(info) = self.get(tenant, server, tool) {
            return Ok(Some(info));
        }
        let key = Self::key(tenant, server);
        let entry = self
            .fetched
            .entry(key.clone())
            .or_try_insert_with(async {
                let tools = fetch().await?;
                let mut all = HashMap::new();
                add(&mut all, &tools);
                Ok::<_, String>(Arc::new(all))
            })
            .await
            .map_err(|e| e.to_string())?;
        let fresh = entry.is_fresh();
        let tools = entry.into_value();
        if fresh {
            // A complete list replaces what was known: tools the upstream dropped go.
            self.known.insert(key, tools.clone());
        }
        Ok(tools.get(tool).cloned())
    }
}

/// Adds the tools of one list page, up to [`TOOLS_PER_SERVER_MAX`] names.
fn add(into: &mut HashMap<String, ToolInfo>, tools: &[Value]) {
    for (name, info) in tools.iter().filter_map(ToolInfo::from_definition) {
        if into.len() >= TOOLS_PER_SERVER_MAX && !into.contains_key(&name) {
            break;
        }
        into.insert(name, info);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use serde_json::json;

    use super::*;

    #[test]
    fn annotations_default_to_the_cautious_reading() {
        let (_, bare) = ToolInfo::from_definition(&json!({"name": "rm"})).unwrap();
        assert!(!bare.read_only && bare.destructive && bare.open_world);
        let (_, ro) = ToolInfo::from_definition(
            &json!({"name": "ls", "annotations": {"readOnlyHint": true, "destructiveHint": true}}),
        )
        .unwrap();
        assert!(ro.read_only && !ro.destructive);
        let (_, soft) = ToolInfo::from_definition(
            &json!({"name": "add", "annotations": {"destructiveHint": false}}),
        )
        .unwrap();
        assert!(!soft.read_only && !soft.destructive);
        assert!(ToolInfo::from_definition(&json!({"title": "no name"})).is_none());
    }

    #[tokio::test]
    async fn a_miss_fetches_once_and_an_unlisted_tool_is_none() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let c = Catalog::new(10, Duration::from_secs(60));
        let fetches = AtomicUsize::new(0);
        let list = || async {
            fetches.fetch_add(1, Ordering::SeqCst);
            Ok(vec![json!({"name": "echo"})])
        };
        assert!(c.find("t", "s", "echo", list).await.unwrap().is_some());
        // Made-up names within the refetch interval: answered from the fetched list.
        for n in 0..100 {
            let name = format!("no_such_tool_{n}");
            assert_eq!(c.find("t", "s", &name, list).await, Ok(None));
        }
        assert_eq!(fetches.load(Ordering::SeqCst), 1);
        // A list that cannot be had is an error, and is not remembered.
        let down = || async { Err::<Vec<Value>, _>("unreachable".to_string()) };
        assert!(c.find("t", "other", "echo", down).await.is_err());
        assert!(c.find("t", "other", "echo", list).await.unwrap().is_some());
        // A relayed page teaches a tool at once.
        c.learn("t", "s", &[json!({"name": "added"})]);
        assert!(c.find("t", "s", "added", list).await.unwrap().is_some());
    }

    #[test]
    fn pages_merge_and_pins_are_checked() {
        let c = Catalog::new(10, Duration::from_secs(60));
        c.learn("t", "s", &[json!({"name": "a"})]);
        c.learn("t", "s", &[json!({"name": "b", "description": "x"})]);
        let a = c.get("t", "s", "a").unwrap();
        let b = c.get("t", "s", "b").unwrap();
        assert!(c.get("t", "other", "a").is_none());
        let mut pins = BTreeMap::new();
        assert!(b.matches_pin("b", &pins));
        pins.insert("a".to_string(), a.digest.clone());
        assert!(a.matches_pin("a", &pins));
        assert!(
            !b.matches_pin("b", &pins),
            "unpinned tool on a pinned server"
        );
        pins.insert("b".to_string(), a.digest);
        assert!(!b.matches_pin("b", &pins), "changed definition");
    }
}
