//! Credential checks the gateway applies: API keys (argon2id, cached), OAuth2
//! bearer JWTs, scopes, per-caller rate limits, the per-IP limit for
//! unauthenticated traffic, and sampled security events.

use flowgate_auth::api_key::{KeyStore, KeyVerifier, KeyVerifierConfig, StoredKey};
use flowgate_auth::ratelimit::{IpRateLimiter, RateLimits, Sampler};
use flowgate_auth::{extract_credential, AuthError, Authenticator, Principal};
use flowgate_core::event::{types, Event};
use flowgate_core::manifest::{AuthMode, RateSpec};
use flowgate_store::Store;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::OAuth2Settings;

/// Adapts the store to the key verifier.
struct StoreKeys(Store);

impl KeyStore for StoreKeys {
    fn get_key(&self, id: &str) -> flowgate_core::Result<Option<StoredKey>> {
        Ok(self.0.get_key(id)?.map(|k| StoredKey {
            id: k.id,
            name: k.name,
            hash: k.hash,
            scopes: k.scopes,
            expires_at: k.expires_at,
            revoked: k.revoked,
        }))
    }
    fn touch_last_used(&self, id: &str, now_ms: i64) -> flowgate_core::Result<()> {
        self.0.touch_last_used(id, now_ms)?;
        Ok(())
    }
}

/// The security services.
pub struct Security {
    auth: Authenticator,
    /// Per caller and flow.
    pub rate_limits: RateLimits,
    /// Per client address, for unauthenticated traffic.
    pub ip_limit: IpRateLimiter,
    rate_limited_sampler: Sampler,
    auth_failed_sampler: Sampler,
    store: Store,
}

/// Settings of the security services.
#[derive(Debug, Clone)]
pub struct SecuritySettings {
    /// OAuth2, when configured.
    pub oauth2: Option<OAuth2Settings>,
    /// How long a verified API key is trusted without argon2 (and how long a
    /// revocation on another node may take to be seen here).
    pub key_cache_ttl: Duration,
    /// Per-address limit for unauthenticated traffic (`None`: 600/minute, burst 120).
    pub anonymous_rate: Option<RateSpec>,
}

impl Security {
    /// Builds the services over the store.
    pub fn new(store: Store, settings: SecuritySettings) -> Self {
        let jwt = settings.oauth2.and_then(|o| {
            let mut cfg = flowgate_auth::jwt::OAuth2Config::new(o.issuer, o.jwks_url, o.audience);
            cfg.require_at_jwt = o.require_at_jwt;
            cfg.jwks_min_refetch = o.jwks_min_refetch;
            match flowgate_auth::jwt::JwtVerifier::new(cfg) {
                Ok(v) => Some(Arc::new(v)),
                Err(e) => {
                    tracing::error!(error = %e, "OAuth2 is configured but its verifier could not be built; bearer JWTs will be refused");
                    None
                }
            }
        });
        let keys = KeyVerifier::with_config(
            Arc::new(StoreKeys(store.clone())),
            KeyVerifierConfig {
                cache_ttl: settings.key_cache_ttl,
                ..KeyVerifierConfig::default()
            },
        );
        let ip_limit = match &settings.anonymous_rate {
            Some(spec) => IpRateLimiter::new(spec.count, spec.window_secs, None),
            None => IpRateLimiter::new(600, 60, Some(120)),
        };
        Self {
            auth: Authenticator::new(Arc::new(keys), jwt),
            rate_limits: RateLimits::new(),
            ip_limit,
            rate_limited_sampler: Sampler::new(Duration::from_secs(10)),
            auth_failed_sampler: Sampler::new(Duration::from_secs(5)),
            store,
        }
    }

    /// Reads the credential from `Authorization: Bearer …` / `X-API-Key` and
    /// authenticates it under an auth mode (`none` admits anyone).
    pub async fn authenticate(
        &self,
        mode: AuthMode,
        authorization: Option<&str>,
        x_api_key: Option<&str>,
        ip: IpAddr,
    ) -> Result<Principal, AuthError> {
        if mode == AuthMode::None {
            return Ok(Principal::anonymous());
        }
        let cred = extract_credential(authorization, x_api_key)?;
        self.auth
            .authenticate(mode, cred.as_ref(), ip, flowgate_core::now_ms())
            .await
    }

    /// Authenticates an admin API call (API keys and, when configured, JWTs).
    pub async fn authenticate_admin(
        &self,
        authorization: Option<&str>,
        x_api_key: Option<&str>,
        ip: IpAddr,
    ) -> Result<Principal, AuthError> {
        self.authenticate(AuthMode::Any, authorization, x_api_key, ip)
            .await
    }

    /// Forgets cached verifications of a revoked key.
    pub fn evict_key(&self, id: &str) {
        self.auth.keys().evict(id);
    }

    /// Hit/miss counters of the key cache.
    pub fn key_cache_stats(&self) -> flowgate_auth::api_key::CacheStats {
        self.auth.keys().cache_stats()
    }

    /// Records `security.auth_failed` (sampled per client address).
    pub fn auth_failed(&self, ip: IpAddr, path: &str, reason: &str) {
        metrics::counter!("flowgate_auth_failures_total").increment(1);
        if !self
            .auth_failed_sampler
            .should_emit(&ip.to_string(), "auth")
        {
            return;
        }
        let ev = Event::new(
            types::AUTH_FAILED,
            "flowgate",
            serde_json::json!({"client_ip": ip.to_string(), "path": path, "reason": reason}),
        );
        self.emit_detached(ev);
    }

    /// Records `security.rate_limited` (sampled per caller and flow).
    pub fn rate_limited(&self, caller: &str, flow: &str) {
        metrics::counter!("flowgate_rate_limited_total", "flow" => flow.to_owned()).increment(1);
        if !self.rate_limited_sampler.should_emit(caller, flow) {
            return;
        }
        let ev = Event::new(
            types::RATE_LIMITED,
            "flowgate",
            serde_json::json!({"caller": caller, "flow": flow}),
        );
        self.emit_detached(ev);
    }

    fn emit_detached(&self, ev: Event) {
        let store = self.store.clone();
        tokio::spawn(async move {
            if let Err(e) = store
                .call(move |s| s.insert_event(&ev, None).map(|_| ()))
                .await
            {
                tracing::warn!(error = %e, "could not record a security event");
            }
        });
    }
}

/// A freshly created API key; `key` is shown once and never stored.
#[derive(Debug, Clone)]
pub struct CreatedKey {
    /// Key id.
    pub id: String,
    /// Name.
    pub name: String,
    /// Scopes.
    pub scopes: Vec<String>,
    /// Expiry (epoch ms).
    pub expires_at: Option<i64>,
    /// The whole key.
    pub key: flowgate_core::SecretString,
}

/// Generates a key, stores its argon2id hash, and returns the key once.
/// Blocking (argon2): call from a blocking context.
pub fn create_api_key_blocking(
    store: &Store,
    name: &str,
    scopes: &[String],
    expires_at: Option<i64>,
) -> crate::Result<CreatedKey> {
    let (generated, hash) = flowgate_auth::api_key::generate()
        .map_err(|e| crate::EngineError::Internal(format!("generating a key: {e}")))?;
    let id = generated.id.as_str().to_owned();
    store.insert_key(&flowgate_store::ApiKeyRecord {
        id: id.clone(),
        name: name.to_owned(),
        hash,
        scopes: scopes.to_vec(),
        created_at: flowgate_core::now_ms(),
        expires_at,
        last_used_at: None,
        revoked: false,
    })?;
    Ok(CreatedKey {
        id,
        name: name.to_owned(),
        scopes: scopes.to_vec(),
        expires_at,
        key: generated.full_key,
    })
}
