//! What the edge knows of each upstream's tools: their annotations (which feed Cedar's `Tool`
//! attributes) and whether their definitions match the digests pinned in the registry.
//!
//! Learned from every `tools/list` reply the edge relays, or fetched by the edge itself when a
//! call names a tool it has not seen. Annotations follow the MCP defaults, which are the
//! cautious ones: a tool is not read-only, and is destructive and open-world, unless it says
//! otherwise.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use crate::limits::TOOLS_PER_SERVER_MAX;
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
    /// Facts for a tool nobody described: the most cautious ones.
    pub fn unknown() -> Self {
        ToolInfo {
            read_only: false,
            destructive: true,
            idempotent: false,
            open_world: true,
            digest: String::new(),
        }
    }

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

/// Tools by (tenant, server). Entries expire so that a changed upstream is re-learned.
#[derive(Clone)]
pub struct Catalog {
    cache: Cache<(String, String), Tools>,
}

impl Catalog {
    pub fn new(max_servers: u64, ttl: Duration) -> Self {
        Catalog {
            cache: Cache::builder()
                .max_capacity(max_servers)
                .time_to_live(ttl)
                .build(),
        }
    }

    pub fn get(&self, tenant: &str, server: &str, tool: &str) -> Option<ToolInfo> {
        self.cache
            .get(&(tenant.to_string(), server.to_string()))
            .and_then(|t| t.get(tool).cloned())
    }

    /// Remembers the tools of one `tools/list` page (merged with what is known: pages add up).
    pub fn learn(&self, tenant: &str, server: &str, tools: &[Value]) {
        let key = (tenant.to_string(), server.to_string());
        let mut merged: HashMap<String, ToolInfo> = self
            .cache
            .get(&key)
            .map(|t| t.as_ref().clone())
            .unwrap_or_default();
        for (name, info) in tools.iter().filter_map(ToolInfo::from_definition) {
            if merged.len() >= TOOLS_PER_SERVER_MAX && !merged.contains_key(&name) {
                break;
            }
            merged.insert(name, info);
        }
        self.cache.insert(key, Arc::new(merged));
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
