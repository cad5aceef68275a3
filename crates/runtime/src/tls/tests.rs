#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose,
    SanType,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::{TlsAcceptor, TlsConnector};

use super::*;

struct Ca(CertifiedIssuer<'static, KeyPair>);

impl Ca {
    fn new(name: &str) -> Ca {
        let mut p = CertificateParams::default();
        p.distinguished_name.push(DnType::CommonName, name);
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        Ca(CertifiedIssuer::self_signed(p, KeyPair::generate().unwrap()).unwrap())
    }

    /// Writes a leaf for `uri` (valid `days` from now, negative for already expired) and this CA
    /// into `dir` as tls.crt, tls.key, ca.crt.
    fn issue(&self, dir: &Path, uri: &str, expired: bool) {
        let mut p = CertificateParams::default();
        p.subject_alt_names = vec![SanType::URI(uri.try_into().unwrap())];
        if expired {
            p.not_before = rcgen::date_time_ymd(2020, 1, 1);
            p.not_after = rcgen::date_time_ymd(2020, 2, 1);
        }
        let key = KeyPair::generate().unwrap();
        let cert = p.signed_by(&key, &self.0).unwrap();
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(dir.join("tls.crt"), cert.pem()).unwrap();
        std::fs::write(dir.join("tls.key"), key.serialize_pem()).unwrap();
        std::fs::write(dir.join("ca.crt"), self.0.pem()).unwrap();
    }
}

const NODE: &str = "spiffe://agentgate.test/node/1";
const EDGE: &str = "spiffe://agentgate.test/edge/e1";

/// A TLS server on 127.0.0.1 that answers each connection with its peer's URI SANs.
async fn server(creds: &Arc<Credentials>) -> String {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap().to_string();
    let acceptor = TlsAcceptor::from(Arc::new(creds.server_config(&[]).unwrap()));
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = l.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                if let Ok(mut tls) = acceptor.accept(tcp).await {
                    let who = peer_uris(tls.get_ref().1.peer_certificates()).join(",");
                    let _ = tls.write_all(who.as_bytes()).await;
                    let _ = tls.shutdown().await;
                }
            });
        }
    });
    addr
}

/// Connects with `creds`; the server's answer and the server's URI SANs, or the error.
async fn call(creds: &Arc<Credentials>, addr: &str) -> Result<(String, Vec<String>), String> {
    let connector = TlsConnector::from(Arc::new(creds.client_config(&[]).unwrap()));
    let tcp = TcpStream::connect(addr).await.unwrap();
    let name = ServerName::try_from("agentgate").unwrap();
    let mut tls = connector
        .connect(name, tcp)
        .await
        .map_err(|e| e.to_string())?;
    let server = peer_uris(tls.get_ref().1.peer_certificates());
    let mut got = String::new();
    // TLS 1.3 reports a refused client certificate after the handshake, at the first read.
    tls.read_to_string(&mut got)
        .await
        .map_err(|e| e.to_string())?;
    Ok((got, server))
}

/// A CA with a node and an edge identity under `dir`, loaded.
fn node_and_edge(dir: &Path) -> (Ca, Arc<Credentials>, Arc<Credentials>) {
    let ca = Ca::new("cluster");
    ca.issue(&dir.join("node"), NODE, false);
    ca.issue(&dir.join("edge"), EDGE, false);
    let node = Credentials::load(TlsPaths::in_dir(&dir.join("node"))).unwrap();
    let edge = Credentials::load(TlsPaths::in_dir(&dir.join("edge"))).unwrap();
    (ca, node, edge)
}

#[tokio::test]
async fn mutual_tls_carries_both_identities() {
    let dir = tempfile::tempdir().unwrap();
    let (_ca, node, edge) = node_and_edge(dir.path());
    let addr = server(&node).await;
    let (seen_by_server, server_is) = call(&edge, &addr).await.unwrap();
    assert_eq!(seen_by_server, EDGE);
    assert_eq!(server_is, vec![NODE.to_string()]);
}

#[tokio::test]
async fn another_ca_or_an_expired_certificate_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("cluster");
    ca.issue(&dir.path().join("node"), NODE, false);
    Ca::new("elsewhere").issue(&dir.path().join("foreign"), EDGE, false);
    ca.issue(&dir.path().join("expired"), EDGE, true);
    let node = Credentials::load(TlsPaths::in_dir(&dir.path().join("node"))).unwrap();
    let addr = server(&node).await;
    // The foreign client trusts its own CA only: it refuses the server, and the server it.
    let foreign = Credentials::load(TlsPaths::in_dir(&dir.path().join("foreign"))).unwrap();
    let e = call(&foreign, &addr).await.unwrap_err();
    assert!(e.contains("UnknownIssuer"), "{e}");
    let expired = Credentials::load(TlsPaths::in_dir(&dir.path().join("expired"))).unwrap();
    let e = call(&expired, &addr).await.unwrap_err();
    assert!(!e.is_empty());
    // A client that trusts the cluster CA but presents a foreign certificate: refused by the server.
    let mixed = dir.path().join("mixed");
    std::fs::create_dir_all(&mixed).unwrap();
    for f in ["tls.crt", "tls.key"] {
        std::fs::copy(dir.path().join("foreign").join(f), mixed.join(f)).unwrap();
    }
    std::fs::copy(dir.path().join("node/ca.crt"), mixed.join("ca.crt")).unwrap();
    let mixed = Credentials::load(TlsPaths::in_dir(&mixed)).unwrap();
    let e = call(&mixed, &addr).await.unwrap_err();
    assert!(!e.is_empty());
}

#[tokio::test]
async fn a_client_without_a_certificate_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("cluster");
    ca.issue(&dir.path().join("node"), NODE, false);
    let node = Credentials::load(TlsPaths::in_dir(&dir.path().join("node"))).unwrap();
    let addr = server(&node).await;
    let mut roots = RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(dir.path().join("node/ca.crt")).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let config = ClientConfig::builder_with_protocol_versions(&[&rustls::version::TLS13])
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tcp = TcpStream::connect(&addr).await.unwrap();
    let connector = TlsConnector::from(Arc::new(config));
    let result = match connector
        .connect(ServerName::try_from("agentgate").unwrap(), tcp)
        .await
    {
        Err(e) => Err(e.to_string()),
        Ok(mut tls) => {
            let mut got = String::new();
            tls.read_to_string(&mut got)
                .await
                .map(|_| got)
                .map_err(|e| e.to_string())
        }
    };
    assert!(result.is_err(), "{result:?}");
}

#[tokio::test]
async fn rotated_files_are_used_by_new_connections_without_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, node, edge) = node_and_edge(dir.path());
    let addr = server(&node).await;
    assert_eq!(call(&edge, &addr).await.unwrap().1, vec![NODE.to_string()]);
    assert_eq!(node.reload_if_changed(), Ok(false));

    // A new leaf for the node (another name, to see it), then a half-written key: the good
    // material stays until the files are whole again.
    let rotated = "spiffe://agentgate.test/node/2";
    ca.issue(&dir.path().join("node"), rotated, false);
    assert_eq!(node.reload_if_changed(), Ok(true));
    assert_eq!(
        call(&edge, &addr).await.unwrap().1,
        vec![rotated.to_string()]
    );
    std::fs::write(
        dir.path().join("node/tls.key"),
        "-----BEGIN PRIVATE KEY-----\nAAAA",
    )
    .unwrap();
    assert!(node.reload_if_changed().is_err());
    assert_eq!(
        call(&edge, &addr).await.unwrap().1,
        vec![rotated.to_string()]
    );

    // A CA rotation: the node trusts old and new CAs while the edge moves to the new one.
    let new_ca = Ca::new("cluster-2026");
    ca.issue(&dir.path().join("node"), NODE, false);
    let both = format!("{}{}", ca.0.pem(), new_ca.0.pem());
    std::fs::write(dir.path().join("node/ca.crt"), &both).unwrap();
    assert_eq!(node.reload_if_changed(), Ok(true));
    new_ca.issue(&dir.path().join("edge"), EDGE, false);
    std::fs::write(dir.path().join("edge/ca.crt"), &both).unwrap();
    assert_eq!(edge.reload_if_changed(), Ok(true));
    assert_eq!(call(&edge, &addr).await.unwrap().0, EDGE);
}

#[test]
fn unusable_files_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let e = Credentials::load(TlsPaths::in_dir(dir.path())).unwrap_err();
    assert!(e.0.contains("tls.crt"), "{e}");
    let ca = Ca::new("cluster");
    ca.issue(dir.path(), NODE, false);
    let other = KeyPair::generate().unwrap();
    std::fs::write(dir.path().join("tls.key"), other.serialize_pem()).unwrap();
    let e = Credentials::load(TlsPaths::in_dir(dir.path())).unwrap_err();
    assert!(e.0.contains("tls.key"), "{e}");
}
