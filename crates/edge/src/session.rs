//! Legacy MCP sessions across stateless edges: the `Mcp-Session-Id` an agent sees is a token the
//! edge signs (HMAC-SHA256 with a key every edge of the deployment shares). It carries the
//! upstream's own session id and what the session is bound to, so whichever edge the load
//! balancer picks can verify it and forward to the same upstream session: no sticky sessions and
//! no shared session store.
//!
//! INVARIANT: a token is honoured only for the tenant, server and agent it was issued to; a
//! token that does not verify is "session not found" (HTTP 404), which makes a client start over.

use crate::limits::{SESSION_ID_BYTES_MAX, SESSION_KEY_BYTES_MIN};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

const PREFIX: &str = "ag1.";

/// What a session token carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    #[serde(rename = "t")]
    pub tenant: String,
    #[serde(rename = "s")]
    pub server: String,
    #[serde(rename = "a")]
    pub agent: String,
    /// The upstream's `Mcp-Session-Id`.
    #[serde(rename = "u")]
    pub upstream: String,
    /// The protocol revision the client asked for in `initialize`.
    #[serde(rename = "v")]
    pub revision: String,
}

impl Session {
    /// A short, stable name for the session: what audit records, kill switches and rollout
    /// buckets use (the token itself is long and would reveal the upstream's id).
    pub fn id(&self) -> String {
        let mut h = Sha256::new();
        for part in [&self.tenant, &self.server, &self.upstream] {
            h.update(part.as_bytes());
            h.update([0]);
        }
        let d = h.finalize();
        hex::encode(d.get(..12).unwrap_or_default())
    }
}

/// Why a presented token is not a session.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    #[error("the session id is not one this gateway issued")]
    Malformed,
    #[error("the session id's signature does not verify")]
    BadSignature,
    #[error("the session belongs to another tenant, server or agent")]
    WrongBinding,
}

/// The deployment's session signing key.
#[derive(Clone)]
pub struct SessionKeys {
    mac: Hmac<Sha256>,
}

impl std::fmt::Debug for SessionKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SessionKeys(…)")
    }
}

impl SessionKeys {
    pub fn new(secret: &[u8]) -> Result<Self, String> {
        if secret.len() < SESSION_KEY_BYTES_MIN {
            return Err(format!(
                "the session key must be at least {SESSION_KEY_BYTES_MIN} bytes"
            ));
        }
        let mac = Hmac::<Sha256>::new_from_slice(secret).map_err(|e| e.to_string())?;
        Ok(SessionKeys { mac })
    }

    /// The token for a session.
    pub fn seal(&self, s: &Session) -> String {
        let payload = serde_json::to_vec(s).unwrap_or_default();
        let mut mac = self.mac.clone();
        mac.update(&payload);
        let tag = mac.finalize().into_bytes();
        format!(
            "{PREFIX}{}.{}",
            URL_SAFE_NO_PAD.encode(&payload),
            URL_SAFE_NO_PAD.encode(tag)
        )
    }

    /// Verifies a token (constant-time tag comparison) and returns its session.
    pub fn open(&self, token: &str) -> Result<Session, SessionError> {
        if token.len() > SESSION_ID_BYTES_MAX {
            return Err(SessionError::Malformed);
        }
        let rest = token.strip_prefix(PREFIX).ok_or(SessionError::Malformed)?;
        let (payload, tag) = rest.split_once('.').ok_or(SessionError::Malformed)?;
        let payload = URL_SAFE_NO_PAD
            .decode(payload)
            .map_err(|_| SessionError::Malformed)?;
        let tag = URL_SAFE_NO_PAD
            .decode(tag)
            .map_err(|_| SessionError::Malformed)?;
        let mut mac = self.mac.clone();
        mac.update(&payload);
        mac.verify_slice(&tag)
            .map_err(|_| SessionError::BadSignature)?;
        serde_json::from_slice(&payload).map_err(|_| SessionError::Malformed)
    }

    /// Opens a token and checks it is bound to this tenant, server and agent.
    pub fn open_for(
        &self,
        token: &str,
        tenant: &str,
        server: &str,
        agent: &str,
    ) -> Result<Session, SessionError> {
        let s = self.open(token)?;
        if s.tenant != tenant || s.server != server || s.agent != agent {
            return Err(SessionError::WrongBinding);
        }
        Ok(s)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use proptest::prelude::*;

    use super::*;

    fn session() -> Session {
        Session {
            tenant: "acme".into(),
            server: "files".into(),
            agent: "bot".into(),
            upstream: "0b1c9e".into(),
            revision: "2025-11-25".into(),
        }
    }

    #[test]
    fn any_edge_with_the_key_opens_what_another_sealed() {
        let a = SessionKeys::new(&[7; 32]).unwrap();
        let b = SessionKeys::new(&[7; 32]).unwrap();
        let token = a.seal(&session());
        assert!(token.bytes().all(|c| c.is_ascii_graphic()));
        assert_eq!(
            b.open_for(&token, "acme", "files", "bot").unwrap(),
            session()
        );
        assert_eq!(
            b.open_for(&token, "acme", "files", "other"),
            Err(SessionError::WrongBinding)
        );
        let other = SessionKeys::new(&[8; 32]).unwrap();
        assert_eq!(other.open(&token), Err(SessionError::BadSignature));
        assert!(SessionKeys::new(&[1; 31]).is_err());
    }

    #[test]
    fn session_ids_are_short_and_stable() {
        assert_eq!(session().id(), session().id());
        assert_eq!(session().id().len(), 24);
        let mut s = session();
        s.upstream = "other".into();
        assert_ne!(s.id(), session().id());
    }

    proptest! {
        /// Changing any byte of a token makes it fail to open (never opens as another session).
        #[test]
        fn tampered_tokens_never_open(pos in 0usize..200, byte in 0u8..128) {
            let k = SessionKeys::new(&[9; 32]).unwrap();
            let token = k.seal(&session());
            let mut bytes = token.clone().into_bytes();
            let i = pos % bytes.len();
            prop_assume!(bytes[i] != byte);
            bytes[i] = byte;
            let tampered = String::from_utf8_lossy(&bytes).into_owned();
            prop_assert!(k.open(&tampered).is_err());
        }

        #[test]
        fn arbitrary_strings_never_panic(s in ".{0,300}") {
            let k = SessionKeys::new(&[9; 32]).unwrap();
            let _ = k.open(&s);
        }
    }
}
