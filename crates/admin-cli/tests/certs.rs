//! `agentgate-admin certs`: the certificates it writes are what the cluster's TLS loads, and
//! two of its identities authenticate each other over mutual TLS on 127.0.0.1, each seeing the
//! other's SPIFFE identity.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use agentgate_model::authz::Identity;
use agentgate_runtime::tls::{Credentials, TlsPaths, peer_uris};
use agentgate_testkit::bin;
use rustls::pki_types::ServerName;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::{TlsAcceptor, TlsConnector};

const TD: &str = "agentgate.test";

fn certs(args: &[&str]) -> (i32, Value, String) {
    let out = Command::new(bin("agentgate-admin"))
        .arg("--json")
        .arg("certs")
        .args(args)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let json = serde_json::from_str(&stdout).unwrap_or(Value::Null);
    (
        out.status.code().unwrap_or(-1),
        json,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Mutual TLS between `server` and `client`: what each saw of the other.
async fn handshake(server: &Path, client: &Path) -> (Vec<String>, Vec<String>) {
    let s = Credentials::load(TlsPaths::in_dir(server)).unwrap();
    let c = Credentials::load(TlsPaths::in_dir(client)).unwrap();
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let acceptor = TlsAcceptor::from(Arc::new(s.server_config(&[]).unwrap()));
    let served = tokio::spawn(async move {
        let (tcp, _) = l.accept().await.unwrap();
        let mut tls = acceptor.accept(tcp).await.unwrap();
        let seen = peer_uris(tls.get_ref().1.peer_certificates());
        tls.write_all(b"ok").await.unwrap();
        tls.shutdown().await.unwrap();
        seen
    });
    let connector = TlsConnector::from(Arc::new(c.client_config(&[]).unwrap()));
    let tcp = TcpStream::connect(addr).await.unwrap();
    let mut tls = connector
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    let seen_by_client = peer_uris(tls.get_ref().1.peer_certificates());
    let mut got = String::new();
    tls.read_to_string(&mut got).await.unwrap();
    assert_eq!(got, "ok");
    (served.await.unwrap(), seen_by_client)
}

#[tokio::test]
async fn init_writes_identities_that_authenticate_each_other() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let (code, out, err) = certs(&[
        "init",
        d,
        "--trust-domain",
        TD,
        "--nodes",
        "2",
        "--edges",
        "e1",
        "--operators",
        "alice",
    ]);
    assert_eq!(code, 0, "{err}");
    let ids: Vec<&str> = out["identities"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["identity"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["node/1", "node/2", "edge/e1", "operator/alice"]);
    for key in ["ca/ca.key", "node-1/tls.key", "edge-e1/tls.key"] {
        let mode = std::fs::metadata(dir.path().join(key))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{key}");
    }

    let (node_saw, edge_saw) =
        handshake(&dir.path().join("node-1"), &dir.path().join("edge-e1")).await;
    let parse = |uris: &[String]| Identity::from_spiffe(&uris[0], TD).unwrap();
    assert_eq!(parse(&node_saw), Identity::Edge("e1".into()));
    assert_eq!(parse(&edge_saw), Identity::Node(1));

    // One more identity from the same CA; a second init refuses to replace the CA.
    let (code, _, err) = certs(&[
        "issue",
        "operator/bob",
        "--ca-dir",
        dir.path().join("ca").to_str().unwrap(),
        "--trust-domain",
        TD,
    ]);
    assert_eq!(code, 0, "{err}");
    let (_, bob_saw_node) =
        handshake(&dir.path().join("node-2"), &dir.path().join("operator-bob")).await;
    assert_eq!(parse(&bob_saw_node), Identity::Node(2));
    let (code, _, err) = certs(&["init", d]);
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("already holds a CA"), "{err}");
    let (code, _, err) = certs(&["issue", "root/x", "--ca-dir", d]);
    assert_eq!(code, 3, "{err}");
}
