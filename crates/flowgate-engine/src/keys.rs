//! API keys as a service: create (the secret is returned once), list and
//! revoke. [`validate_key_request`] is the one check of a key request; the
//! admin API and `flowgate keys create` both go through it.

use flowgate_core::EpochMs;
use flowgate_store::Store;
use serde_json::{Map, Value};

use crate::error::{EngineError, Result};
use crate::security::{create_api_key_blocking, CreatedKey};
use crate::Engine;

/// Longest key name, in characters.
pub const MAX_KEY_NAME_CHARS: usize = 128;

/// A key to create.
#[derive(Debug, Clone)]
pub struct KeyRequest {
    /// Human name (1–128 characters, not only white space).
    pub name: String,
    /// Granted scopes (at least one).
    pub scopes: Vec<String>,
    /// Expiry (RFC 3339, in the future).
    pub expires_at: Option<String>,
}

/// A stored key, without its secret.
#[derive(Debug, Clone)]
pub struct KeyInfo {
    /// Key id.
    pub id: String,
    /// Human name.
    pub name: String,
    /// Granted scopes.
    pub scopes: Vec<String>,
    /// Creation time.
    pub created_at: EpochMs,
    /// Last successful use.
    pub last_used_at: Option<EpochMs>,
    /// Expiry.
    pub expires_at: Option<EpochMs>,
    /// Revoked keys never authenticate.
    pub revoked: bool,
}

/// Checks a key request at `now` and returns its expiry in epoch ms.
pub fn validate_key_request(req: &KeyRequest, now: EpochMs) -> Result<Option<EpochMs>> {
    if req.name.trim().is_empty() || req.name.chars().count() > MAX_KEY_NAME_CHARS {
        return Err(EngineError::invalid(format!(
            "`name` must be 1–{MAX_KEY_NAME_CHARS} characters"
        )));
    }
    if req.scopes.is_empty() {
        return Err(EngineError::invalid(
            "`scopes` must name at least one scope",
        ));
    }
    if let Some(bad) = req
        .scopes
        .iter()
        .find(|s| !flowgate_core::manifest::is_valid_scope(s))
    {
        return Err(EngineError::invalid(format!(
            "`{bad}` is not a valid scope"
        )));
    }
    match &req.expires_at {
        None => Ok(None),
        Some(t) => {
            let at = chrono::DateTime::parse_from_rfc3339(t)
                .map_err(|_| {
                    EngineError::invalid(format!("`expires_at` `{t}` is not an RFC 3339 time"))
                })?
                .timestamp_millis();
            if at <= now {
                return Err(EngineError::invalid("`expires_at` is in the past"));
            }
            Ok(Some(at))
        }
    }
}

/// Validates and stores a key (blocking; the CLI's path, which acts as the
/// operator and so may grant any scope).
pub fn create_key_blocking(store: &Store, req: &KeyRequest) -> Result<CreatedKey> {
    let expires_at = validate_key_request(req, flowgate_core::now_ms())?;
    create_api_key_blocking(store, &req.name, &req.scopes, expires_at)
}

impl Engine {
    /// Creates a key for a caller holding `creator_scopes`: a key grants at
    /// most what its creator holds (`admin` holds all).
    #[tracing::instrument(skip_all, err(level = "debug"), fields(key.name = %req.name))]
    pub async fn create_key(
        &self,
        creator_scopes: &[String],
        req: KeyRequest,
    ) -> Result<CreatedKey> {
        validate_key_request(&req, flowgate_core::now_ms())?;
        if let Err(missing) = flowgate_auth::scopes::has_scopes(creator_scopes, &req.scopes) {
            let mut details = Map::new();
            details.insert("missing_scope".into(), Value::from(missing.0.clone()));
            return Err(EngineError::Forbidden {
                code: "scope_not_grantable",
                message: format!(
                    "a key can only grant scopes its creator holds; you do not hold `{}`",
                    missing.0
                ),
                details,
            });
        }
        let store = self.store().clone();
        tokio::task::spawn_blocking(move || create_key_blocking(&store, &req)).await?
    }

    /// Every key, oldest first, without secrets.
    #[tracing::instrument(skip_all, err(level = "debug"))]
    pub async fn list_keys(&self) -> Result<Vec<KeyInfo>> {
        let keys = self.store().call(|s| s.list_keys()).await?;
        Ok(keys
            .into_iter()
            .map(|k| KeyInfo {
                id: k.id,
                name: k.name,
                scopes: k.scopes,
                created_at: k.created_at,
                last_used_at: k.last_used_at,
                expires_at: k.expires_at,
                revoked: k.revoked,
            })
            .collect())
    }

    /// Revokes a key: it stops authenticating on this node at once (other
    /// nodes within the key cache's lifetime) and its console sessions end.
    #[tracing::instrument(skip_all, err(level = "debug"), fields(key.id = %id))]
    pub async fn revoke_key(&self, id: &str) -> Result<()> {
        let id2 = id.to_owned();
        if !self.store().call(move |s| s.revoke_key(&id2)).await? {
            return Err(EngineError::NotFound(format!("key `{id}` does not exist")));
        }
        self.security().evict_key(id);
        self.end_sessions_of_key(id).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(name: &str, scopes: &[&str]) -> KeyRequest {
        KeyRequest {
            name: name.to_owned(),
            scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
            expires_at: None,
        }
    }

    #[test]
    fn names_are_one_to_128_characters() {
        assert!(validate_key_request(&req(&"é".repeat(128), &["admin"]), 0).is_ok());
        assert!(validate_key_request(&req(&"a".repeat(129), &["admin"]), 0).is_err());
        assert!(validate_key_request(&req("  ", &["admin"]), 0).is_err());
    }

    #[test]
    fn scopes_and_expiry_are_checked() {
        assert!(validate_key_request(&req("k", &[]), 0).is_err());
        assert!(validate_key_request(&req("k", &["Not A Scope"]), 0).is_err());
        let mut r = req("k", &["flows:read"]);
        r.expires_at = Some("2030-01-01T00:00:00Z".into());
        let at = validate_key_request(&r, 0).ok().flatten();
        assert_eq!(at, Some(1_893_456_000_000));
        assert!(validate_key_request(&r, 1_893_456_000_000).is_err());
        r.expires_at = Some("tomorrow".into());
        assert!(validate_key_request(&r, 0).is_err());
    }

    #[tokio::test]
    async fn keys_grant_at_most_their_creators_scopes_and_revoke_at_once() {
        let engine = crate::queries::memory_engine();
        let reader = vec!["flows:read".to_owned()];
        let refused = engine.create_key(&reader, req("k", &["admin"])).await;
        assert!(matches!(
            refused,
            Err(EngineError::Forbidden {
                code: "scope_not_grantable",
                ..
            })
        ));
        let created = engine.create_key(&reader, req("k", &["flows:read"])).await;
        let Ok(created) = created else {
            panic!("create: {created:?}");
        };
        assert!(created.key.expose().starts_with("fgk_"));
        let listed = engine.list_keys().await.unwrap_or_default();
        assert_eq!(listed.len(), 1);
        assert!(!listed[0].revoked);
        assert!(engine.revoke_key(&created.id).await.is_ok());
        let listed = engine.list_keys().await.unwrap_or_default();
        assert!(listed[0].revoked);
        assert!(matches!(
            engine.revoke_key("nope").await,
            Err(EngineError::NotFound(_))
        ));
    }
}
