//! `agentgate-admin` against real clusters on 127.0.0.1: every command group, `--json` output
//! that parses, the documented exit codes, and the error paths (unreachable endpoint, unknown
//! tenant, invalid policy, usage errors).
#![allow(
    clippy::disallowed_methods, // real processes run on real time
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use agentgate_model::guard::GUARD_MIN_CALLS;
use agentgate_testkit::mcp::{Edge, error_code, py_client, python_upstream, repo};
use agentgate_testkit::{Cluster, DEADLINE, bin, eventually};
use serde_json::Value;

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{}", self.stdout))
    }
}

fn run(endpoint: &str, args: &[&str]) -> Run {
    let out = Command::new(bin("agentgate-admin"))
        .args(["--endpoint", endpoint, "--timeout-ms", "5000"])
        .args(args)
        .env_remove("AGENTGATE_ENDPOINT")
        .env("AGENTGATE_ACTOR", "tester")
        .current_dir(repo())
        .output()
        .unwrap();
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Runs a command that must succeed; returns its text output.
fn ok(endpoint: &str, args: &[&str]) -> String {
    let r = run(endpoint, args);
    assert_eq!(
        r.code, 0,
        "agentgate-admin {args:?} failed:\n{}\n{}",
        r.stdout, r.stderr
    );
    r.stdout
}

/// Runs a command with `--json` that must succeed; returns its parsed output.
fn ok_json(endpoint: &str, args: &[&str]) -> Value {
    let mut a = vec!["--json"];
    a.extend_from_slice(args);
    let r = run(endpoint, &a);
    assert_eq!(
        r.code, 0,
        "agentgate-admin {a:?} failed:\n{}\n{}",
        r.stdout, r.stderr
    );
    r.json()
}

/// Runs a command that must fail with `code`; returns it.
fn fails(endpoint: &str, args: &[&str], code: i32) -> Run {
    let r = run(endpoint, args);
    assert_eq!(
        r.code, code,
        "agentgate-admin {args:?}: expected exit {code}:\n{}\n{}",
        r.stdout, r.stderr
    );
    r
}

fn endpoints(c: &Cluster) -> String {
    c.nodes
        .iter()
        .map(|n| n.grpc.clone())
        .collect::<Vec<_>>()
        .join(",")
}

fn audit(ep: &str, args: &[&str]) -> Vec<Value> {
    let mut a = vec!["audit", "query"];
    a.extend_from_slice(args);
    ok_json(ep, &a)["records"].as_array().unwrap().clone()
}

#[tokio::test(flavor = "multi_thread")]
async fn an_operator_runs_a_tenant_through_every_command_group() {
    let c = Cluster::start_initialized(3, &[]).await;
    let ep = endpoints(&c);
    let dir = tempfile::tempdir().unwrap();

    // cluster status: every member answers, one leader.
    let s = ok_json(&ep, &["cluster", "status"]);
    let members = s["members"].as_array().unwrap();
    assert_eq!(members.len(), 3, "{s}");
    assert!(members.iter().all(|m| m["reachable"] == true), "{s}");
    assert!(s["node"]["leader_id"].as_u64().is_some(), "{s}");
    assert!(ok(&ep, &["cluster", "status"]).contains("Leader"));

    // tenant, agent (key written once, 0600), upstream.
    ok(&ep, &["tenant", "create", "acme"]);
    let tenants = ok_json(&ep, &["tenant", "list"]);
    assert_eq!(tenants[0]["id"], "acme", "{tenants}");
    assert!(ok(&ep, &["tenant", "show", "acme"]).contains("enforced policy: -"));
    let key_file = dir.path().join("bot.key");
    let created = ok_json(
        &ep,
        &[
            "agent",
            "create",
            "acme",
            "bot",
            "--role",
            "reader",
            "--label",
            "team=ops",
            "--key-file",
            key_file.to_str().unwrap(),
        ],
    );
    assert!(created.get("api_key").is_none(), "{created}");
    let key = std::fs::read_to_string(&key_file)
        .unwrap()
        .trim()
        .to_string();
    assert!(key.starts_with("agk_"), "{key}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key_file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let shown = ok_json(&ep, &["agent", "create", "acme", "other"]);
    assert!(shown["api_key"].as_str().unwrap().starts_with("agk_"));
    let agents = ok_json(&ep, &["agent", "list", "--tenant", "acme"]);
    assert_eq!(agents.as_array().unwrap().len(), 2, "{agents}");
    assert_eq!(agents[0]["labels"]["team"], "ops", "{agents}");
    ok(&ep, &["agent", "revoke", "acme", "other"]);
    assert!(ok(&ep, &["agent", "list"]).contains("revoked"));

    let (_upstream, url) = python_upstream().await;
    ok(&ep, &["upstream", "add", "acme", "files", "--url", &url]);
    let ups = ok_json(&ep, &["upstream", "list", "--tenant", "acme"]);
    assert_eq!(ups[0]["transport"]["url"], url.as_str(), "{ups}");
    ok(&ep, &["upstream", "add", "acme", "spare", "--url", &url]);
    ok(&ep, &["upstream", "remove", "acme", "spare"]);
    assert_eq!(
        ok_json(&ep, &["upstream", "list"])
            .as_array()
            .unwrap()
            .len(),
        1
    );

    // policies: validate offline, push and activate, list, show, diff, test.
    let v = ok_json(&ep, &["policy", "validate", "policies/default.cedar"]);
    assert_eq!(v["valid"], true);
    let pushed = ok_json(
        &ep,
        &[
            "policy",
            "push",
            "acme",
            "policies/default.cedar",
            "--version",
            "v1",
            "--activate",
        ],
    );
    assert_eq!(pushed["activated"], true, "{pushed}");
    ok(
        &ep,
        &[
            "policy",
            "push",
            "acme",
            "policies/examples/business-hours.cedar",
            "--version",
            "v2",
        ],
    );
    let listed = ok(&ep, &["policy", "list", "acme"]);
    assert!(
        listed.contains("v1") && listed.contains("enforced"),
        "{listed}"
    );
    let shown = ok(&ep, &["policy", "show", "acme", "v1"]);
    assert!(shown.contains("read-only-tools"), "{shown}");
    let schema = ok(&ep, &["policy", "show", "acme", "v1", "--part", "schema"]);
    assert!(schema.contains("entity Agent"), "{schema}");
    let diff = ok_json(&ep, &["policy", "diff", "acme", "v1", "v2"]);
    assert_eq!(diff["identical"], false);
    let unified = diff["diffs"][0]["unified"].as_str().unwrap();
    assert!(unified.contains("--- v1/policies") && unified.contains("+++ v2/policies"));
    let t = ok_json(
        &ep,
        &[
            "policy",
            "test",
            "policies/cases/default.json",
            "--tenant",
            "acme",
            "--version",
            "v1",
        ],
    );
    assert_eq!(t["failed"], 0, "{t}");
    assert!(t["passed"].as_u64().unwrap() >= 5);
    // A case expecting the wrong decision fails the run with exit 2, and says which.
    let cases = dir.path().join("wrong.json");
    std::fs::write(
        &cases,
        r#"{"base": {"agent": "bot", "action": "call_tool", "server": "files", "tool": "delete_file",
            "destructive": true, "hour": 10, "weekday": 2},
            "cases": [{"name": "destructive is allowed?", "expect": "allow"},
                      {"name": "just show me"}]}"#,
    )
    .unwrap();
    let wrong = fails(
        &ep,
        &[
            "policy",
            "test",
            cases.to_str().unwrap(),
            "--policy",
            "policies/default.cedar",
        ],
        2,
    );
    assert!(wrong.stdout.contains("FAIL") && wrong.stdout.contains("require_approval"));
    assert!(wrong.stderr.contains("1 of 2 cases"), "{}", wrong.stderr);

    // rollouts: start, status, pause, resume, advance, rollback.
    ok(
        &ep,
        &[
            "rollout", "start", "acme", "--to", "v2", "--canary", "10", "--steps", "50,100",
        ],
    );
    let st = ok_json(&ep, &["rollout", "status", "acme"]);
    assert_eq!(st["rollout"]["state"], "running", "{st}");
    assert_eq!(st["enforced_version"], "v1");
    ok(&ep, &["rollout", "pause", "acme", "--reason", "looking"]);
    ok(&ep, &["rollout", "resume", "acme"]);
    let adv = ok_json(&ep, &["rollout", "advance", "acme"]);
    assert_eq!(adv["rollout"]["canary_percent"], 50, "{adv}");
    ok(
        &ep,
        &["rollout", "rollback", "acme", "--reason", "not today"],
    );
    let st = ok(&ep, &["rollout", "status", "acme"]);
    assert!(
        st.contains("RolledBack") && st.contains("not today"),
        "{st}"
    );
    // promote, on a second rollout.
    ok(&ep, &["rollout", "start", "acme", "--to", "v2"]);
    ok(&ep, &["rollout", "promote", "acme"]);
    assert_eq!(
        ok_json(&ep, &["rollout", "status", "acme"])["enforced_version"],
        "v2"
    );
    ok(&ep, &["policy", "activate", "acme", "v1"]);

    // kill switches.
    ok(&ep, &["pause", "--global", "--reason", "drill"]);
    ok(&ep, &["pause", "--tenant", "acme", "--ttl", "1h"]);
    ok(&ep, &["pause", "--region", "eu"]);
    ok(&ep, &["kill", "agent", "bot", "--tenant", "acme"]);
    ok(&ep, &["kill", "tool", "delete_file"]);
    ok(&ep, &["kill", "tool", "echo", "--tenant", "acme"]);
    ok(&ep, &["kill", "session", "s-1", "--tenant", "acme"]);
    let sw = ok_json(&ep, &["switches", "list"]);
    let keys: Vec<&str> = sw
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["scope"]["scope"].as_str().unwrap())
        .collect();
    assert_eq!(keys.len(), 7, "{sw}");
    let text = ok(&ep, &["switches", "list", "--tenant", "acme"]);
    assert!(
        text.contains("agent/acme/bot") && text.contains("drill"),
        "{text}"
    );
    for k in [
        "agent/acme/bot",
        "tool/delete_file",
        "tenant-tool/acme/echo",
        "session/acme/s-1",
    ] {
        ok(&ep, &["switches", "release", k]);
    }
    ok(&ep, &["resume", "--tenant", "acme"]);
    ok(&ep, &["resume", "--region", "eu"]);
    ok(&ep, &["resume", "--global"]);
    assert_eq!(ok(&ep, &["switches", "list"]).trim(), "(none)");

    // Traffic through an edge: an allowed call, a denial, an approval granted and one refused.
    let edge = Edge::start(&c, &[]);
    let rev = ok_json(&ep, &["cluster", "status"])["node"]["revision"]
        .as_u64()
        .unwrap();
    edge.wait_for_revision(rev).await;
    let mcp = edge.url("acme", "files");
    let out = py_client(
        &mcp,
        &key,
        "auto",
        &[
            r#"call:echo:{"text": "hi"}"#,
            r#"call:echo:{"text": "key AKIAABCDEFGHIJKLMNOP"}"#,
            r#"call:delete_file:{"path": "/tmp/a"}"#,
            r#"call:delete_file:{"path": "/tmp/b"}"#,
        ],
    )
    .await;
    assert_eq!(out[0]["result"], "hi", "{out:?}");
    assert_eq!(error_code(&out[1]), Some(-32082), "{out:?}");
    assert_eq!(error_code(&out[2]), Some(-32083), "{out:?}");
    let pending = ok_json(&ep, &["approvals", "list", "--tenant", "acme"]);
    assert_eq!(pending.as_array().unwrap().len(), 2, "{pending}");
    let id_of = |path: &str| {
        let digest_of_a = out[2]["error"]["data"]["approval_id"].as_str().unwrap();
        if path == "/tmp/a" {
            digest_of_a.to_string()
        } else {
            pending
                .as_array()
                .unwrap()
                .iter()
                .map(|a| a["id"].as_str().unwrap())
                .find(|id| *id != digest_of_a)
                .unwrap()
                .to_string()
        }
    };
    ok(&ep, &["approvals", "approve", &id_of("/tmp/a")]);
    let denied = ok_json(&ep, &["approvals", "deny", &id_of("/tmp/b")]);
    // An approval is usable at an edge once its replica holds the decision.
    edge.wait_for_revision(denied["revision"].as_u64().unwrap())
        .await;
    let all = ok(&ep, &["approvals", "list", "--state", "all"]);
    assert!(all.contains("approved") && all.contains("denied"), "{all}");
    let again = py_client(
        &mcp,
        &key,
        "auto",
        &[r#"call:delete_file:{"path": "/tmp/a"}"#],
    )
    .await;
    assert_eq!(again[0]["result"], "deleted /tmp/a", "{again:?}");

    // audit: query with filters, tail, export, verify; tampering is found.
    let ep2 = ep.clone();
    eventually("the approved call is audited", DEADLINE, || {
        let ep = ep2.clone();
        async move {
            audit(
                &ep,
                &[
                    "--tenant",
                    "acme",
                    "--tool",
                    "delete_file",
                    "--decision",
                    "allow",
                ],
            )
            .len()
                == 1
        }
    })
    .await;
    let denied = audit(
        &ep,
        &["--tenant", "acme", "--decision", "deny", "--since", "1h"],
    );
    assert_eq!(denied.len(), 1, "{denied:?}");
    assert_eq!(denied[0]["entry"]["policy_version"], "v1", "{denied:?}");
    assert_eq!(
        denied[0]["entry"]["policy_ids"][0], "no-secrets-in-arguments",
        "{denied:?}"
    );
    assert!(
        audit(
            &ep,
            &["--agent", "bot", "--tenant", "acme", "--until", "1h"]
        )
        .is_empty()
    );
    let page = ok_json(&ep, &["audit", "query", "--limit", "1"]);
    assert_eq!(page["records"].as_array().unwrap().len(), 1);
    let next = page["next_after_seq"].as_u64().unwrap().to_string();
    let page2 = ok_json(
        &ep,
        &["audit", "query", "--limit", "1", "--after-seq", &next],
    );
    assert!(page2["records"][0]["seq"].as_u64().unwrap() > 1);
    let text = ok(&ep, &["audit", "query", "--tenant", "acme"]);
    assert!(
        text.contains("require_approval") && text.contains("acme/bot"),
        "{text}"
    );

    let tail = ok(&ep, &["--json", "audit", "tail", "-n", "2"]);
    assert_eq!(tail.lines().count(), 2, "{tail}");
    for l in tail.lines() {
        serde_json::from_str::<Value>(l).unwrap();
    }
    follow_sees_new_records(&ep, &mcp, &key).await;

    let export = dir.path().join("audit.jsonl");
    let e = ok_json(
        &ep,
        &[
            "audit",
            "export",
            "--format",
            "jsonl",
            "-o",
            export.to_str().unwrap(),
        ],
    );
    let exported = e["exported"].as_u64().unwrap();
    assert!(exported >= 5, "{e}");
    let v = ok_json(
        &ep,
        &["audit", "verify", "--file", export.to_str().unwrap()],
    );
    assert_eq!(v["records"].as_u64(), Some(exported));
    let v = ok_json(&ep, &["audit", "verify"]);
    assert_eq!(v["verified"], true);
    assert!(v["records"].as_u64().unwrap() >= exported);
    tampering_is_found(&ep, &export, dir.path());

    let csv = ok(
        &ep,
        &["audit", "export", "--format", "csv", "--tenant", "acme"],
    );
    let mut lines = csv.lines();
    assert!(
        lines
            .next()
            .unwrap()
            .starts_with("seq,time,committed,edge_id,edge_seq,tenant,agent"),
        "{csv}"
    );
    assert!(lines.all(|l| l.contains(",acme,")), "{csv}");
}

/// `audit tail -f` prints a record appended after it started.
async fn follow_sees_new_records(ep: &str, mcp: &str, key: &str) {
    let mut child = Command::new(bin("agentgate-admin"))
        .args(["--endpoint", ep, "--json", "audit", "tail", "-f", "-n", "0"])
        .args(["--interval-ms", "100", "--tool", "echo"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for l in BufReader::new(stdout).lines() {
            if tx.send(l).is_err() {
                break;
            }
        }
    });
    py_client(mcp, key, "auto", &[r#"call:echo:{"text": "followed"}"#]).await;
    let line = rx.recv_timeout(Duration::from_secs(30));
    let _ = child.kill();
    let _ = child.wait();
    let rec: Value = serde_json::from_str(&line.unwrap().unwrap()).unwrap();
    assert_eq!(rec["entry"]["tool"], "echo", "{rec}");
}

/// An altered or removed record in an export fails `audit verify --file` with exit 2 and
/// names the first bad record.
fn tampering_is_found(ep: &str, export: &Path, dir: &Path) {
    let lines: Vec<String> = std::fs::read_to_string(export)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    let altered = dir.join("altered.jsonl");
    let mut edited = lines.clone();
    let mut rec: Value = serde_json::from_str(&edited[1]).unwrap();
    rec["entry"]["decision"] = "allow".into();
    rec["entry"]["reason"] = "nothing to see".into();
    edited[1] = rec.to_string();
    std::fs::write(&altered, edited.join("\n")).unwrap();
    let r = fails(
        ep,
        &["audit", "verify", "--file", altered.to_str().unwrap()],
        2,
    );
    assert!(
        r.stderr.contains("record 2") && r.stderr.contains("altered"),
        "{}",
        r.stderr
    );

    let removed = dir.join("removed.jsonl");
    let mut edited = lines.clone();
    edited.remove(1);
    std::fs::write(&removed, edited.join("\n")).unwrap();
    let r = fails(
        ep,
        &[
            "--json",
            "audit",
            "verify",
            "--file",
            removed.to_str().unwrap(),
        ],
        2,
    );
    assert_eq!(r.json()["error"]["code"], "chain_broken");
    assert!(r.stderr.contains("record 3"), "{}", r.stderr);
}

#[tokio::test]
async fn membership_is_managed_from_the_cli() {
    let c = Cluster::start(2, &[]);
    let one = c.node(1).grpc.clone();
    let two = c.node(2).grpc.clone();
    let s = ok(&one, &["cluster", "status"]);
    assert!(s.contains("not part of an initialized cluster"), "{s}");
    ok(&one, &["cluster", "init", &format!("1={one}")]);
    let one2 = one.clone();
    eventually("node 1 leads", DEADLINE, || {
        let one = one2.clone();
        async move {
            run(&one, &["--json", "cluster", "status"]).code == 0
                && ok_json(&one, &["cluster", "status"])["node"]["leader_id"] == 1
        }
    })
    .await;
    let added = ok_json(&one, &["cluster", "add-node", "2", &two]);
    assert_eq!(added["voters"].as_array().unwrap().len(), 2, "{added}");
    // The new member learns the membership by replication, after add-node returns.
    let both = format!("{two},{one}");
    eventually("node 2 reports both members", DEADLINE, || {
        let both = both.clone();
        async move {
            let s = run(&both, &["--json", "cluster", "status"]);
            s.code == 0 && s.json()["members"].as_array().map(Vec::len) == Some(2)
        }
    })
    .await;
    let removed = ok_json(&one, &["cluster", "remove-node", "2"]);
    assert_eq!(removed["voters"].as_array().unwrap().len(), 1, "{removed}");
    let bad = fails(&one, &["cluster", "init", "x=1"], 3);
    assert!(bad.stderr.contains("positive integer"), "{}", bad.stderr);
}

#[tokio::test]
async fn errors_say_what_went_wrong_and_exit_with_the_documented_code() {
    let c = Cluster::start_initialized(1, &[]).await;
    let ep = c.node(1).grpc.clone();
    let dir = tempfile::tempdir().unwrap();

    // Unreachable endpoint: exit 1, what was tried, what to check; JSON on stdout with --json.
    let dead = "127.0.0.1:1";
    let r = fails(dead, &["tenant", "list"], 1);
    assert!(
        r.stderr.contains("no core node answered") && r.stderr.contains(dead),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.contains("hint:") && r.stderr.contains("AGENTGATE_ENDPOINT"),
        "{}",
        r.stderr
    );
    let r = fails(dead, &["--json", "tenant", "list"], 1);
    assert_eq!(r.json()["error"]["code"], "unreachable");
    // A list of endpoints is tried in turn.
    ok(&format!("{dead},{ep}"), &["tenant", "create", "t"]);

    // Unknown tenant: exit 3 and where to look.
    let r = fails(&ep, &["agent", "create", "nope", "bot"], 3);
    assert!(r.stderr.contains("tenant `nope`"), "{}", r.stderr);
    assert!(
        r.stderr.contains("agentgate-admin tenant list"),
        "{}",
        r.stderr
    );
    let r = fails(&ep, &["--json", "rollout", "status", "nope"], 3);
    assert_eq!(r.json()["error"]["code"], "not_found");
    fails(&ep, &["approvals", "approve", "apr-404"], 3);
    fails(&ep, &["tenant", "create", "t"], 3);

    // Invalid policy: the validator's message, exit 3, nothing pushed.
    let bad = dir.path().join("bad.cedar");
    std::fs::write(
        &bad,
        "permit (principal, action, resource) when { resource.no_such_attribute };",
    )
    .unwrap();
    let r = fails(&ep, &["policy", "validate", bad.to_str().unwrap()], 3);
    assert!(r.stderr.contains("no_such_attribute"), "{}", r.stderr);
    let r = fails(
        &ep,
        &[
            "--json",
            "policy",
            "push",
            "t",
            bad.to_str().unwrap(),
            "--version",
            "v1",
        ],
        3,
    );
    assert_eq!(r.json()["error"]["code"], "invalid_policy");
    assert_eq!(ok(&ep, &["policy", "list", "t"]).trim(), "(none)");
    fails(&ep, &["policy", "validate", "/no/such/file.cedar"], 3);

    // Usage errors exit 3; help exits 0.
    fails(&ep, &["pause"], 3);
    fails(&ep, &["pause", "--global", "--tenant", "t"], 3);
    fails(&ep, &["switches", "release", "nonsense"], 3);
    fails(&ep, &["audit", "query", "--since", "yesterday"], 3);
    fails(&ep, &["frobnicate"], 3);
    let help = ok(&ep, &["--help"]);
    assert!(help.contains("Exit codes"), "{help}");
    fails(&ep, &["upstream", "add", "t", "x", "--url", "ftp://x"], 3);

    // A key file is never overwritten.
    let key = dir.path().join("k");
    std::fs::write(&key, "keep me").unwrap();
    let r = fails(
        &ep,
        &[
            "agent",
            "create",
            "t",
            "a",
            "--key-file",
            key.to_str().unwrap(),
        ],
        3,
    );
    assert!(r.stderr.contains("never overwritten"), "{}", r.stderr);
    assert_eq!(std::fs::read_to_string(&key).unwrap(), "keep me");
    assert_eq!(ok(&ep, &["agent", "list"]).trim(), "(none)");
}

/// design.md G6: a rollout whose canary denies past its guard is rolled back by the leader,
/// without an operator, and the tenant is back on the previous version.
#[tokio::test(flavor = "multi_thread")]
async fn a_rollout_whose_guard_trips_rolls_back_by_itself() {
    let c = Cluster::start_initialized(3, &[]).await;
    let ep = endpoints(&c);
    let dir = tempfile::tempdir().unwrap();
    let (_upstream, url) = python_upstream().await;
    ok(&ep, &["tenant", "create", "acme"]);
    let key = ok_json(&ep, &["agent", "create", "acme", "bot"])["api_key"]
        .as_str()
        .unwrap()
        .to_string();
    ok(&ep, &["upstream", "add", "acme", "files", "--url", &url]);
    ok(
        &ep,
        &[
            "policy",
            "push",
            "acme",
            "policies/default.cedar",
            "--version",
            "v1",
            "--activate",
        ],
    );
    let strict = dir.path().join("strict.cedar");
    std::fs::write(
        &strict,
        r#"@id("list-tools") permit (principal, action == Action::"list_tools", resource);
@id("no-echo") forbid (principal, action, resource) when { resource.name == "echo" };
@id("read-only-tools") permit (principal, action == Action::"call_tool", resource)
when { resource.read_only && !resource.destructive };"#,
    )
    .unwrap();
    ok(
        &ep,
        &[
            "policy",
            "push",
            "acme",
            strict.to_str().unwrap(),
            "--version",
            "v2",
        ],
    );
    let started = ok_json(
        &ep,
        &[
            "rollout",
            "start",
            "acme",
            "--to",
            "v2",
            "--canary",
            "100",
            "--max-deny-rate",
            "50",
        ],
    );
    assert_eq!(started["rollout"]["guard"]["max_deny_rate_percent"], 50);

    let edge = Edge::start(&c, &[]);
    edge.wait_for_revision(started["revision"].as_u64().unwrap())
        .await;
    // 30 canary calls, all denied by v2: past 50% once 20 have been counted.
    let steps: Vec<String> = (0..30)
        .map(|i| format!(r#"call:echo:{{"text": "call {i}"}}"#))
        .collect();
    let steps: Vec<&str> = steps.iter().map(String::as_str).collect();
    let out = py_client(&edge.url("acme", "files"), &key, "auto", &steps).await;
    // Denied until the guard has counted enough to trip; the leader may roll back while the
    // client is still calling, and from then on (v1 again) the calls are allowed.
    let denied = out
        .iter()
        .take_while(|o| error_code(o) == Some(-32082))
        .count();
    assert!(denied >= GUARD_MIN_CALLS as usize, "{out:?}");
    assert!(
        out[denied..]
            .iter()
            .all(|o| o["result"].as_str().is_some_and(|r| r.starts_with("call "))),
        "{out:?}"
    );

    let ep2 = ep.clone();
    eventually("the guard rolls the rollout back", DEADLINE, || {
        let ep = ep2.clone();
        async move {
            ok_json(&ep, &["rollout", "status", "acme"])["rollout"]["state"] == "rolled_back"
        }
    })
    .await;
    let st = ok_json(&ep, &["rollout", "status", "acme"]);
    let last = st["rollout"]["history"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(last["actor"], "system", "{st}");
    assert!(
        last["note"].as_str().unwrap().contains("the canary denied"),
        "{st}"
    );
    assert_eq!(st["enforced_version"], "v1", "{st}");
    // Back on v1, echo is allowed again once the edge has the rollback. (The cluster's
    // revision also counts audit appends, which edges are not fed, so wait on the behaviour.)
    let url = edge.url("acme", "files");
    eventually("the edge allows echo again", DEADLINE, || {
        let (url, key) = (url.clone(), key.clone());
        async move {
            let again = py_client(&url, &key, "auto", &[r#"call:echo:{"text": "ok"}"#]).await;
            again[0]["result"] == "ok"
        }
    })
    .await;
}
