//! TLS 1.3 with mutual authentication, from files that may change under a running process.
//!
//! A [`Credentials`] holds one identity's certificate chain and key and the CA bundle it trusts,
//! read from three PEM files (the shape of a mounted Kubernetes Secret or a cert-manager
//! Certificate: `tls.crt`, `tls.key`, `ca.crt`). [`Credentials::reload_if_changed`] reads them
//! again when any changed; the configurations built by [`Credentials::server_config`] and
//! [`Credentials::client_config`] resolve the current material at every handshake, so a
//! rotation takes effect for new connections without a restart, and established ones carry on.
//! A rotation that cannot be read (a half-written file) keeps the previous material and says so.
//!
//! Peers are authenticated by chain to the trusted CA, not by host name: cluster members are
//! dialled by address, and who they are is the URI SAN of their certificate
//! (`spiffe://<trust-domain>/<kind>/<name>`, see [`uri_sans`]), which the caller checks.
//!
//! INVARIANT: only TLS 1.3; a server built here requires a client certificate chaining to the
//! current CA bundle, and a client built here requires the same of the server.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{ResolvesClientCert, verify_server_cert_signed_by_trust_anchor};
use rustls::crypto::{
    CryptoProvider, WebPkiSupportedAlgorithms, verify_tls12_signature, verify_tls13_signature,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ClientHello, ParsedCertificate, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{
    ClientConfig, DigitallySignedStruct, DistinguishedName, RootCertStore, ServerConfig,
    SignatureScheme,
};

/// Why TLS material cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct TlsError(pub String);

/// Where one identity's TLS material lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsPaths {
    /// The certificate chain, leaf first (PEM).
    pub cert: PathBuf,
    /// Its private key (PEM, PKCS#8, SEC1 or PKCS#1).
    pub key: PathBuf,
    /// The CA certificates peers must chain to (PEM; several during a CA rotation).
    pub ca: PathBuf,
}

impl TlsPaths {
    /// `DIR/tls.crt`, `DIR/tls.key`, `DIR/ca.crt`: a Kubernetes TLS Secret mounted at `DIR`.
    pub fn in_dir(dir: &Path) -> TlsPaths {
        TlsPaths {
            cert: dir.join("tls.crt"),
            key: dir.join("tls.key"),
            ca: dir.join("ca.crt"),
        }
    }
}

/// What a file looked like when it was read (a change of either means read it again).
type Stamp = Option<(SystemTime, u64)>;

fn stamp(p: &Path) -> Stamp {
    let m = std::fs::metadata(p).ok()?;
    Some((m.modified().ok()?, m.len()))
}

/// The material in use.
struct Material {
    key: Arc<CertifiedKey>,
    roots: Arc<RootCertStore>,
    client_verifier: Arc<dyn ClientCertVerifier>,
    stamps: [Stamp; 3],
}

/// One identity's credentials, reloadable. Cheap to share (`Arc`).
pub struct Credentials {
    paths: TlsPaths,
    provider: Arc<CryptoProvider>,
    current: RwLock<Arc<Material>>,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("paths", &self.paths)
            .finish_non_exhaustive()
    }
}

fn read(what: &str, p: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(p).map_err(|e| TlsError(format!("{what} {}: {e}", p.display())))
}

fn load(paths: &TlsPaths, provider: &Arc<CryptoProvider>) -> Result<Material, TlsError> {
    let stamps = [stamp(&paths.cert), stamp(&paths.key), stamp(&paths.ca)];
    let certs = |what: &str, p: &Path| -> Result<Vec<CertificateDer<'static>>, TlsError> {
        let pem = read(what, p)?;
        let certs = CertificateDer::pem_slice_iter(&pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| TlsError(format!("{what} {}: {e}", p.display())))?;
        if certs.is_empty() {
            return Err(TlsError(format!(
                "{what} {} holds no certificate",
                p.display()
            )));
        }
        Ok(certs)
    };
    let chain = certs("certificate", &paths.cert)?;
    let key_pem = read("private key", &paths.key)?;
    let key = PrivateKeyDer::from_pem_slice(&key_pem)
        .map_err(|e| TlsError(format!("private key {}: {e}", paths.key.display())))?;
    let signer = provider
        .key_provider
        .load_private_key(key)
        .map_err(|e| TlsError(format!("private key {}: {e}", paths.key.display())))?;
    let key = CertifiedKey::new(chain, signer);
    key.keys_match().map_err(|e| {
        TlsError(format!(
            "{} and {}: {e}",
            paths.cert.display(),
            paths.key.display()
        ))
    })?;
    let mut roots = RootCertStore::empty();
    for ca in certs("CA bundle", &paths.ca)? {
        roots
            .add(ca)
            .map_err(|e| TlsError(format!("CA bundle {}: {e}", paths.ca.display())))?;
    }
    let roots = Arc::new(roots);
    let client_verifier =
        WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone())
            .build()
            .map_err(|e| TlsError(format!("CA bundle {}: {e}", paths.ca.display())))?;
    Ok(Material {
        key: Arc::new(key),
        roots,
        client_verifier,
        stamps,
    })
}

impl Credentials {
    /// Reads the three files; fails naming the file that is missing or unusable.
    pub fn load(paths: TlsPaths) -> Result<Arc<Credentials>, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let material = load(&paths, &provider)?;
        Ok(Arc::new(Credentials {
            paths,
            provider,
            current: RwLock::new(Arc::new(material)),
        }))
    }

    pub fn paths(&self) -> &TlsPaths {
        &self.paths
    }

    /// The signature algorithms handshakes are verified with (both directions).
    fn algorithms(&self) -> &WebPkiSupportedAlgorithms {
        &self.provider.signature_verification_algorithms
    }

    fn material(&self) -> Arc<Material> {
        match self.current.read() {
            Ok(m) => m.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Reads the files again if any changed since they were last read: `Ok(true)` when new
    /// material is in use, `Ok(false)` when nothing changed, `Err` (the previous material stays)
    /// when the changed files cannot be used.
    pub fn reload_if_changed(&self) -> Result<bool, TlsError> {
        let now = [
            stamp(&self.paths.cert),
            stamp(&self.paths.key),
            stamp(&self.paths.ca),
        ];
        if now == self.material().stamps {
            return Ok(false);
        }
        let material = Arc::new(load(&self.paths, &self.provider)?);
        match self.current.write() {
            Ok(mut m) => *m = material,
            Err(poisoned) => *poisoned.into_inner() = material,
        }
        Ok(true)
    }

    /// Checks the files every `every` for the life of the runtime, logging what it does.
    pub fn watch(self: &Arc<Self>, every: Duration) -> tokio::task::JoinHandle<()> {
        let me = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                match me.reload_if_changed() {
                    Ok(true) => {
                        tracing::info!(cert = %me.paths.cert.display(), "TLS material reloaded")
                    }
                    Ok(false) => {}
                    Err(e) => {
                        tracing::warn!(error = %e, "TLS material changed but cannot be used; keeping the previous")
                    }
                }
            }
        })
    }

    /// A server configuration: TLS 1.3, this identity's current certificate, client
    /// certificates required and verified against the current CA bundle.
    pub fn server_config(self: &Arc<Self>, alpn: &[&[u8]]) -> Result<ServerConfig, TlsError> {
        let mut config = ServerConfig::builder_with_provider(self.provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| TlsError(e.to_string()))?
            .with_client_cert_verifier(Arc::new(CurrentClientVerifier(self.clone())))
            .with_cert_resolver(Arc::new(CurrentCert(self.clone())));
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Ok(config)
    }

    /// A client configuration: TLS 1.3, this identity's current certificate offered, the server
    /// verified by chain to the current CA bundle (its identity is the caller's to check).
    pub fn client_config(self: &Arc<Self>, alpn: &[&[u8]]) -> Result<ClientConfig, TlsError> {
        let mut config = ClientConfig::builder_with_provider(self.provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| TlsError(e.to_string()))?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(CurrentServerVerifier(self.clone())))
            .with_client_cert_resolver(Arc::new(CurrentCert(self.clone())));
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Ok(config)
    }
}

/// The current certificate, for either side of a handshake.
#[derive(Debug)]
struct CurrentCert(Arc<Credentials>);

impl ResolvesServerCert for CurrentCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.material().key.clone())
    }
}

impl ResolvesClientCert for CurrentCert {
    fn resolve(&self, _hints: &[&[u8]], _schemes: &[SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        Some(self.0.material().key.clone())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// Client certificates against the current CA bundle.
#[derive(Debug)]
struct CurrentClientVerifier(Arc<Credentials>);

impl ClientCertVerifier for CurrentClientVerifier {
    fn client_auth_mandatory(&self) -> bool {
        true
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        // No hints: a client offers the one certificate it has.
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.0
            .material()
            .client_verifier
            .verify_client_cert(end_entity, intermediates, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, self.0.algorithms())
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, self.0.algorithms())
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.algorithms().supported_schemes()
    }
}

/// Server certificates by chain to the current CA bundle (no host name: identities are URI SANs).
#[derive(Debug)]
struct CurrentServerVerifier(Arc<Credentials>);

impl ServerCertVerifier for CurrentServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let cert = ParsedCertificate::try_from(end_entity)?;
        verify_server_cert_signed_by_trust_anchor(
            &cert,
            &self.0.material().roots,
            intermediates,
            now,
            self.0.algorithms().all,
        )?;
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, self.0.algorithms())
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, self.0.algorithms())
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.algorithms().supported_schemes()
    }
}

/// The URI SANs of a certificate (where SPIFFE identities live); empty when it has none or
/// cannot be parsed.
pub fn uri_sans(cert: &CertificateDer<'_>) -> Vec<String> {
    use x509_parser::extensions::GeneralName;
    let Ok((_, x509)) = x509_parser::parse_x509_certificate(cert.as_ref()) else {
        return Vec::new();
    };
    let Ok(Some(san)) = x509.subject_alternative_name() else {
        return Vec::new();
    };
    san.value
        .general_names
        .iter()
        .filter_map(|n| match n {
            GeneralName::URI(u) => Some(u.to_string()),
            _ => None,
        })
        .collect()
}

/// The URI SANs of the peer's leaf certificate on an established TLS connection.
pub fn peer_uris(certs: Option<&[CertificateDer<'_>]>) -> Vec<String> {
    certs
        .and_then(|c| c.first())
        .map(uri_sans)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests;
