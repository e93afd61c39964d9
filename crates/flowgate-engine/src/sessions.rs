//! Console sessions (SPEC §8): sign in with an API key, get an opaque session
//! id for a cookie and a CSRF token; the session carries the key's current
//! scopes. Sessions live in the store (several nodes share them), keyed by a
//! SHA-256 of the id; they end after [`IDLE_TIMEOUT`] without use, after
//! [`MAX_LIFETIME`] in all, at sign-out, and as soon as their key is revoked,
//! expires or is deleted.

use flowgate_auth::{AuthError, Principal, PrincipalKind};
use flowgate_core::manifest::AuthMode;
use flowgate_core::{EpochMs, SecretString};
use flowgate_store::{ApiKeyRecord, ConsoleSession};
use sha2::{Digest, Sha256};
use std::net::IpAddr;
use std::time::Duration;
use subtle::ConstantTimeEq;

use crate::{Engine, Result};

/// A session ends after this long without a request.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(30 * 60);
/// A session ends this long after sign-in, however busy.
pub const MAX_LIFETIME: Duration = Duration::from_secs(12 * 3600);
/// Most sessions one key may hold; signing in again drops the oldest.
pub const MAX_SESSIONS_PER_KEY: usize = 10;
/// Activity is written back at most this often per session.
const TOUCH_EVERY_MS: i64 = 30_000;

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// [`IDLE_TIMEOUT`] in milliseconds.
pub fn idle_ms() -> i64 {
    ms(IDLE_TIMEOUT)
}

/// What a valid session grants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionInfo {
    /// The token state-changing calls must send in `X-CSRF-Token`.
    pub csrf_token: String,
    /// The key's scopes now.
    pub scopes: Vec<String>,
    /// The key's id.
    pub key_id: String,
    /// The key's name.
    pub key_name: String,
    /// Absolute end of the session (epoch ms).
    pub expires_at: EpochMs,
    /// Idle timeout in seconds.
    pub idle_timeout_seconds: u64,
}

impl SessionInfo {
    /// The caller the session acts as.
    pub fn principal(&self) -> Principal {
        Principal {
            kind: PrincipalKind::ApiKey,
            id: self.key_id.clone(),
            scopes: self.scopes.clone(),
        }
    }

    /// Whether `presented` is this session's CSRF token (constant time).
    pub fn csrf_matches(&self, presented: &str) -> bool {
        !presented.is_empty() && bool::from(presented.as_bytes().ct_eq(self.csrf_token.as_bytes()))
    }
}

/// A session just opened: the id goes into the cookie and is never stored.
#[derive(Debug, Clone)]
pub struct NewSession {
    /// The opaque session id (cookie value).
    pub id: SecretString,
    /// What it grants.
    pub info: SessionInfo,
}

/// The stored hash of a session id.
pub fn session_hash(id: &str) -> String {
    hex::encode(Sha256::digest(id.as_bytes()))
}

/// Whether a stored session (and its key) is still good at `now`.
pub fn session_valid(s: &ConsoleSession, key: Option<&ApiKeyRecord>, now: EpochMs) -> bool {
    let Some(key) = key else { return false };
    now < s.expires_at
        && now - s.last_seen_at < ms(IDLE_TIMEOUT)
        && !key.revoked
        && key.expires_at.is_none_or(|e| now < e)
}

fn info(s: &ConsoleSession, key: &ApiKeyRecord) -> SessionInfo {
    SessionInfo {
        csrf_token: s.csrf_token.clone(),
        scopes: key.scopes.clone(),
        key_id: key.id.clone(),
        key_name: key.name.clone(),
        expires_at: s.expires_at,
        idle_timeout_seconds: IDLE_TIMEOUT.as_secs(),
    }
}

impl Engine {
    /// Verifies an API key (with the verifier's failure throttling) and opens
    /// a session for it. A wrong, expired or revoked key opens nothing (and
    /// is recorded as `security.auth_failed` for `path`).
    pub async fn sign_in(
        &self,
        key: &str,
        ip: IpAddr,
        path: &str,
    ) -> std::result::Result<NewSession, AuthError> {
        let principal = self
            .security()
            .authenticate(AuthMode::ApiKey, None, Some(key), ip, path)
            .await?;
        let now = flowgate_core::now_ms();
        let id = hex::encode(rand::random::<[u8; 32]>());
        let session = ConsoleSession {
            id_hash: session_hash(&id),
            key_id: principal.id.clone(),
            csrf_token: hex::encode(rand::random::<[u8; 32]>()),
            created_at: now,
            last_seen_at: now,
            expires_at: now.saturating_add(ms(MAX_LIFETIME)),
        };
        let stored = session.clone();
        let key_id = principal.id.clone();
        let record = self
            .store()
            .call(move |s| {
                s.insert_console_session(&stored, MAX_SESSIONS_PER_KEY)?;
                s.get_key(&key_id)
            })
            .await
            .map_err(|e| AuthError::Unavailable(format!("session store: {e}")))?
            .ok_or(AuthError::InvalidApiKey)?;
        Ok(NewSession {
            id: SecretString::new(id),
            info: info(&session, &record),
        })
    }

    /// The session with cookie value `id`, when it is still valid (and records
    /// the activity). An ended session is deleted and answers `None`.
    pub async fn session(&self, id: &str) -> Result<Option<SessionInfo>> {
        if id.is_empty() || id.len() > 256 {
            return Ok(None);
        }
        let hash = session_hash(id);
        let now = flowgate_core::now_ms();
        let found = self
            .store()
            .call(move |s| {
                let Some((session, key)) = s.get_console_session(&hash)? else {
                    return Ok(None);
                };
                if !session_valid(&session, key.as_ref(), now) {
                    s.delete_console_session(&hash)?;
                    return Ok(None);
                }
                if now - session.last_seen_at >= TOUCH_EVERY_MS {
                    s.touch_console_session(&hash, now)?;
                }
                Ok(key.map(|k| info(&session, &k)))
            })
            .await?;
        Ok(found)
    }

    /// Ends a session (sign-out); `false` when there was none.
    pub async fn sign_out(&self, id: &str) -> Result<bool> {
        let hash = session_hash(id);
        Ok(self
            .store()
            .call(move |s| s.delete_console_session(&hash))
            .await?)
    }

    /// Ends every session of a key (call when it is revoked).
    pub async fn end_sessions_of_key(&self, key_id: &str) -> Result<usize> {
        let key_id = key_id.to_owned();
        Ok(self
            .store()
            .call(move |s| s.delete_console_sessions_of_key(&key_id))
            .await?)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn session(now: i64) -> ConsoleSession {
        ConsoleSession {
            id_hash: session_hash("x"),
            key_id: "k".into(),
            csrf_token: "t".into(),
            created_at: now,
            last_seen_at: now,
            expires_at: now + ms(MAX_LIFETIME),
        }
    }

    fn key() -> ApiKeyRecord {
        ApiKeyRecord {
            id: "k".into(),
            name: "n".into(),
            hash: String::new(),
            scopes: vec!["admin".into()],
            created_at: 0,
            expires_at: None,
            last_used_at: None,
            revoked: false,
        }
    }

    #[test]
    fn idle_absolute_and_key_state_end_a_session() {
        let t0 = 1_000_000;
        let s = session(t0);
        let k = key();
        assert!(session_valid(&s, Some(&k), t0 + 1));
        assert!(session_valid(&s, Some(&k), t0 + ms(IDLE_TIMEOUT) - 1));
        assert!(!session_valid(&s, Some(&k), t0 + ms(IDLE_TIMEOUT)), "idle");
        let busy = ConsoleSession {
            last_seen_at: t0 + ms(MAX_LIFETIME) - 10,
            ..s.clone()
        };
        assert!(
            !session_valid(&busy, Some(&k), t0 + ms(MAX_LIFETIME)),
            "absolute"
        );
        let revoked = ApiKeyRecord {
            revoked: true,
            ..key()
        };
        assert!(!session_valid(&s, Some(&revoked), t0 + 1));
        let expired = ApiKeyRecord {
            expires_at: Some(t0 + 1),
            ..key()
        };
        assert!(!session_valid(&s, Some(&expired), t0 + 1));
        assert!(!session_valid(&s, None, t0 + 1), "deleted key");
    }

    #[test]
    fn csrf_comparison() {
        let i = info(&session(0), &key());
        assert!(i.csrf_matches("t"));
        assert!(!i.csrf_matches(""));
        assert!(!i.csrf_matches("u"));
        assert!(!i.csrf_matches("tt"));
        assert_eq!(session_hash("x").len(), 64);
    }
}
