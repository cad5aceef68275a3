//! `certs init | issue`: a private CA and certificates for nodes, edges and operators (rcgen),
//! for local and test clusters. Each identity's directory has the shape of a mounted Kubernetes
//! TLS Secret: `tls.crt` (its certificate, URI SAN `spiffe://<trust-domain>/<kind>/<name>`),
//! `tls.key`, `ca.crt`. The CA's key stays in `<dir>/ca/ca.key`; keys are written 0600.

use std::path::{Path, PathBuf};

use agentgate_model::authz::Identity;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use serde_json::json;

use super::Ctx;
use crate::cli::CertsCmd;
use crate::error::{CliError, Result};

/// What every leaf is valid for besides its identity: the loopback names, so that standard
/// clients (curl, a browser) can also check a local node or edge.
const LOCAL_SANS: [&str; 2] = ["localhost", "127.0.0.1"];

pub fn run(ctx: &mut Ctx, cmd: CertsCmd) -> Result<()> {
    let now_s = (ctx.now_ms() / 1000) as i64;
    match cmd {
        CertsCmd::Init {
            dir,
            trust_domain,
            nodes,
            edges,
            operators,
            days,
        } => {
            let ca_dir = dir.join("ca");
            if ca_dir.join("ca.key").exists() {
                return Err(CliError::invalid(format!(
                    "{} already holds a CA; use `certs issue --ca-dir {}` to add identities",
                    ca_dir.display(),
                    ca_dir.display()
                )));
            }
            let ca = new_ca(&trust_domain, now_s, days)?;
            write(&ca_dir.join("ca.crt"), &ca.pem(), false)?;
            write(&ca_dir.join("ca.key"), &ca.key().serialize_pem(), true)?;
            let mut ids: Vec<Identity> = (1..=nodes).map(Identity::Node).collect();
            ids.extend(edges.into_iter().map(Identity::Edge));
            ids.extend(operators.into_iter().map(Identity::Operator));
            let mut written = Vec::new();
            for id in ids {
                check_names(&id)?;
                let out = dir.join(id.to_string().replace('/', "-"));
                issue(&ca, &ca.pem(), &id, &trust_domain, now_s, days, &out)?;
                written.push(json!({"identity": id.to_string(), "dir": out}));
            }
            ctx.out.emit(
                &json!({"ok": true, "ca": ca_dir, "trust_domain": trust_domain, "identities": written}),
                || {
                    let list: Vec<String> = written
                        .iter()
                        .map(|w| format!("  {} in {}", w["identity"].as_str().unwrap_or_default(), w["dir"].as_str().unwrap_or_default()))
                        .collect();
                    format!(
                        "created a CA for trust domain `{trust_domain}` in {} (keep ca.key private) and:\n{}",
                        ca_dir.display(),
                        list.join("\n")
                    )
                },
            );
        }
        CertsCmd::Issue {
            ca_dir,
            identity,
            trust_domain,
            out,
            days,
        } => {
            let id = Identity::parse(&identity).map_err(|e| CliError::invalid(e.to_string()))?;
            check_names(&id)?;
            let ca_pem = read(&ca_dir.join("ca.crt"))?;
            let key = KeyPair::from_pem(&read(&ca_dir.join("ca.key"))?).map_err(|e| {
                CliError::invalid(format!("{}: {e}", ca_dir.join("ca.key").display()))
            })?;
            let ca = Issuer::from_ca_cert_pem(&ca_pem, key).map_err(|e| {
                CliError::invalid(format!("{}: {e}", ca_dir.join("ca.crt").display()))
            })?;
            let out = out.unwrap_or_else(|| {
                ca_dir
                    .parent()
                    .unwrap_or(Path::new("."))
                    .join(id.to_string().replace('/', "-"))
            });
            issue(&ca, &ca_pem, &id, &trust_domain, now_s, days, &out)?;
            ctx.out.emit(
                &json!({"ok": true, "identity": id.to_string(), "dir": out}),
                || {
                    format!(
                        "issued {} ({}) in {}",
                        id,
                        id.to_spiffe(&trust_domain),
                        out.display()
                    )
                },
            );
        }
    }
    Ok(())
}

fn check_names(id: &Identity) -> Result<()> {
    // Parsing the short form validates the name as the cluster will.
    Identity::parse(&id.to_string())
        .map(|_| ())
        .map_err(|e| CliError::invalid(e.to_string()))
}

fn validity(p: &mut CertificateParams, now_s: i64, days: u32) -> Result<()> {
    let at = |s: i64| {
        time::OffsetDateTime::from_unix_timestamp(s)
            .map_err(|e| CliError::invalid(format!("certificate validity: {e}")))
    };
    // An hour of slack for clocks a little behind.
    p.not_before = at(now_s - 3600)?;
    p.not_after = at(now_s + i64::from(days) * 86_400)?;
    Ok(())
}

fn rcgen_err(what: &str) -> impl Fn(rcgen::Error) -> CliError + '_ {
    move |e| CliError::new(crate::error::Exit::Error, "certs", format!("{what}: {e}"))
}

fn new_ca(trust_domain: &str, now_s: i64, days: u32) -> Result<CertifiedIssuer<'static, KeyPair>> {
    let mut p = CertificateParams::default();
    p.distinguished_name
        .push(DnType::CommonName, format!("AgentGate CA {trust_domain}"));
    p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    validity(&mut p, now_s, days)?;
    let key = KeyPair::generate().map_err(rcgen_err("generating the CA key"))?;
    CertifiedIssuer::self_signed(p, key).map_err(rcgen_err("signing the CA"))
}

fn issue(
    ca: &Issuer<'_, KeyPair>,
    ca_pem: &str,
    id: &Identity,
    trust_domain: &str,
    now_s: i64,
    days: u32,
    out: &Path,
) -> Result<()> {
    let uri = id.to_spiffe(trust_domain);
    let mut p = CertificateParams::new(LOCAL_SANS.map(str::to_string).to_vec())
        .map_err(rcgen_err("certificate names"))?;
    p.subject_alt_names.insert(
        0,
        SanType::URI(
            uri.clone()
                .try_into()
                .map_err(rcgen_err("the identity URI"))?,
        ),
    );
    p.distinguished_name
        .push(DnType::CommonName, id.to_string());
    p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    // Every identity both serves and dials (nodes and edges do both; an operator's CLI dials).
    p.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    validity(&mut p, now_s, days)?;
    let key = KeyPair::generate().map_err(rcgen_err("generating a key"))?;
    let cert = p.signed_by(&key, ca).map_err(rcgen_err("signing"))?;
    write(&out.join("tls.crt"), &cert.pem(), false)?;
    write(&out.join("tls.key"), &key.serialize_pem(), true)?;
    write(&out.join("ca.crt"), ca_pem, false)
}

fn read(p: &PathBuf) -> Result<String> {
    std::fs::read_to_string(p).map_err(|e| CliError::io(&p.display().to_string(), &e))
}

/// Writes a file whole (to a temporary name, then renamed), private ones 0600.
fn write(p: &Path, contents: &str, private: bool) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let io = |e: std::io::Error| CliError::io(&p.display().to_string(), &e);
    if let Some(dir) = p.parent() {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    let tmp = p.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(if private { 0o600 } else { 0o644 })
        .open(&tmp)
        .map_err(io)?;
    f.write_all(contents.as_bytes()).map_err(io)?;
    f.sync_all().map_err(io)?;
    std::fs::rename(&tmp, p).map_err(io)
}
