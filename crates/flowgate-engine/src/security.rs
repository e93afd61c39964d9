//! Credential checks the gateway applies: API keys (argon2id, cached), OAuth2
//! bearer JWTs, scopes, per-caller rate limits, the per-IP limit for
//! unauthenticated traffic, and sampled security events.

use flowgate_auth::api_key::{KeyStore, KeyVerifier, StoredKey};
use flowgate_auth::ratelimit::{IpRateLimiter, RateLimits, Sampler};
use flowgate_auth::{AuthError, Principal};
use flowgate_core::event::{types, Event};
use flowgate_core::manifest::AuthMode;
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

/// The presented credential, taken from the request headers.
#[derive(Debug, Clone, Copy)]
pub enum Credential<'a> {
    /// Nothing presented.
    None,
    /// An API key (from `X-API-Key` or a bearer that is not a JWT).
    ApiKey(&'a str),
    /// A bearer that looks like a JWT (three dot-separated parts).
    Jwt(&'a str),
}

impl<'a> Credential<'a> {
    /// Reads `Authorization: Bearer …` or `X-API-Key: …`.
    pub fn from_headers(authorization: Option<&'a str>, x_api_key: Option<&'a str>) -> Self {
        if let Some(k) = x_api_key.map(str::trim).filter(|k| !k.is_empty()) {
            return Self::ApiKey(k);
        }
        let Some(auth) = authorization.map(str::trim) else {
            return Self::None;
        };
        let token = match auth.split_once(' ') {
            Some((scheme, rest)) if scheme.eq_ignore_ascii_case("bearer") => rest.trim(),
            _ => return Self::ApiKey(""),
        };
        if token.split('.').count() == 3 && !token.starts_with("fgk_") {
            Self::Jwt(token)
        } else {
            Self::ApiKey(token)
        }
    }
}

/// The security services.
pub struct Security {
    keys: KeyVerifier,
    jwt: Option<flowgate_auth::jwt::JwtVerifier>,
    /// Per caller and flow.
    pub rate_limits: RateLimits,
    /// Per client address, for unauthenticated traffic.
    pub ip_limit: IpRateLimiter,
    rate_limited_sampler: Sampler,
    auth_failed_sampler: Sampler,
    store: Store,
}

impl Security {
    /// Builds the services over the store.
    pub fn new(store: Store, oauth2: Option<OAuth2Settings>) -> Self {
        let jwt = oauth2.and_then(|o| {
            let mut cfg = flowgate_auth::jwt::OAuth2Config::new(o.issuer, o.jwks_url, o.audience);
            cfg.require_at_jwt = o.require_at_jwt;
            match flowgate_auth::jwt::JwtVerifier::new(cfg) {
                Ok(v) => Some(v),
                Err(e) => {
                    tracing::error!(error = %e, "OAuth2 is configured but its verifier could not be built; bearer JWTs will be refused");
                    None
                }
            }
        });
        Self {
            keys: KeyVerifier::new(Arc::new(StoreKeys(store.clone()))),
            jwt,
            rate_limits: RateLimits::new(),
            ip_limit: anonymous_ip_limit(),
            rate_limited_sampler: Sampler::new(Duration::from_secs(10)),
            auth_failed_sampler: Sampler::new(Duration::from_secs(5)),
            store,
        }
    }

    /// Authenticates a credential under an auth mode. `none` admits anyone
    /// (a presented credential is still checked, so a caller can be identified).
    pub async fn authenticate(
        &self,
        mode: AuthMode,
        cred: Credential<'_>,
        ip: IpAddr,
    ) -> Result<Principal, AuthError> {
        let now = flowgate_core::now_ms();
        match (mode, cred) {
            (AuthMode::None, Credential::None) => Ok(Principal::anonymous()),
            (_, Credential::None) => Err(AuthError::MissingCredentials),
            (AuthMode::OAuth2, Credential::ApiKey(_)) => Err(AuthError::InvalidToken(
                "an OAuth2 access token is required".into(),
            )),
            (AuthMode::ApiKey, Credential::Jwt(_)) => Err(AuthError::InvalidApiKey),
            (_, Credential::ApiKey(k)) => self.keys.verify(k, ip, now).await,
            (_, Credential::Jwt(t)) => match &self.jwt {
                Some(j) => j.verify(t).await,
                None => Err(AuthError::InvalidToken(
                    "OAuth2 is not configured on this server".into(),
                )),
            },
        }
    }

    /// Authenticates an admin API call (API keys and, when configured, JWTs).
    pub async fn authenticate_admin(
        &self,
        cred: Credential<'_>,
        ip: IpAddr,
    ) -> Result<Principal, AuthError> {
        self.authenticate(AuthMode::Any, cred, ip).await
    }

    /// Forgets cached verifications of a revoked key.
    pub fn evict_key(&self, id: &str) {
        self.keys.evict(id);
    }

    /// Hit/miss counters of the key cache.
    pub fn key_cache_stats(&self) -> flowgate_auth::api_key::CacheStats {
        self.keys.cache_stats()
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

/// The per-IP limit for unauthenticated traffic: 600/minute with a burst of
/// 120, or `FLOWGATE_ANONYMOUS_RATE` (`N/second|minute|hour`, burst = N) for
/// operators behind a trusted proxy and for load tests.
fn anonymous_ip_limit() -> IpRateLimiter {
    match std::env::var("FLOWGATE_ANONYMOUS_RATE") {
        Ok(raw) => match flowgate_core::manifest::RateSpec::parse(raw.trim()) {
            Ok(spec) => IpRateLimiter::new(spec.count, spec.window_secs, None),
            Err(e) => {
                tracing::warn!(error = %e, "FLOWGATE_ANONYMOUS_RATE is invalid; using 600/minute");
                IpRateLimiter::new(600, 60, Some(120))
            }
        },
        Err(_) => IpRateLimiter::new(600, 60, Some(120)),
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
