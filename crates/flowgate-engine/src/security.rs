//! Credential checks the gateway applies: API keys (argon2id, cached), OAuth2
//! bearer JWTs, scopes, per-caller rate limits, the per-IP limit for
//! unauthenticated traffic, and sampled security events.

use flowgate_auth::api_key::{KeyStore, KeyVerifier, KeyVerifierConfig, StoredKey};
use flowgate_auth::ratelimit::{IpRateLimiter, RateLimits, Sampler};
use flowgate_auth::{
    extract_credential, AuthError, Authenticator, Credential, Principal, TrustedProxies,
};
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
    /// Flow endpoints and `POST /events`: API keys and the partners' OAuth2.
    auth: Authenticator,
    /// The admin API: API keys and, only when configured, the admin issuer's JWTs.
    admin_auth: Authenticator,
    trusted_proxies: TrustedProxies,
    /// Per caller and flow.
    pub rate_limits: RateLimits,
    /// Per client address, for unauthenticated traffic.
    pub ip_limit: IpRateLimiter,
    /// `[limits] scope = "cluster"` budgets, shared through PostgreSQL.
    cluster_rates: crate::cluster_rate::ClusterRateLimits,
    rate_limited_sampler: Sampler,
    auth_failed_sampler: Sampler,
    store: Store,
}

/// Settings of the security services.
#[derive(Debug, Clone)]
pub struct SecuritySettings {
    /// OAuth2, when configured.
    pub oauth2: Option<OAuth2Settings>,
    /// The separate issuer/audience whose tokens the admin API accepts
    /// (`None`: the admin API takes API keys only).
    pub admin_oauth2: Option<OAuth2Settings>,
    /// Peers whose `X-Forwarded-For` names the client.
    pub trusted_proxies: TrustedProxies,
    /// How long a verified API key is trusted without argon2 (and how long a
    /// revocation on another node may take to be seen here).
    pub key_cache_ttl: Duration,
    /// Per-address limit for unauthenticated traffic (`None`: 600/minute, burst 120).
    pub anonymous_rate: Option<RateSpec>,
}

impl Security {
    /// Builds the services over the store.
    pub fn new(store: Store, settings: SecuritySettings) -> Self {
        let jwt = settings.oauth2.and_then(|o| jwt_verifier(o, "OAuth2"));
        let admin_jwt = settings
            .admin_oauth2
            .and_then(|o| jwt_verifier(o, "admin OAuth2"));
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
        let keys = Arc::new(keys);
        Self {
            auth: Authenticator::new(keys.clone(), jwt),
            admin_auth: Authenticator::new(keys, admin_jwt),
            trusted_proxies: settings.trusted_proxies,
            rate_limits: RateLimits::new(),
            cluster_rates: crate::cluster_rate::ClusterRateLimits::new(store.clone()),
            ip_limit,
            rate_limited_sampler: Sampler::new(Duration::from_secs(10)),
            auth_failed_sampler: Sampler::new(Duration::from_secs(5)),
            store,
        }
    }

    /// Reads the credential from `Authorization: Bearer …` / `X-API-Key` and
    /// authenticates it under an auth mode (`none` admits anyone). A refused
    /// credential (401) is recorded as `security.auth_failed` for `path`.
    pub async fn authenticate(
        &self,
        mode: AuthMode,
        authorization: Option<&str>,
        x_api_key: Option<&str>,
        ip: IpAddr,
        path: &str,
    ) -> Result<Principal, AuthError> {
        if mode == AuthMode::None {
            // Anonymous callers are told apart by address (rate limits,
            // idempotency keys), never lumped into one shared identity.
            return Ok(Principal::anonymous_from(ip));
        }
        let result = match extract_credential(authorization, x_api_key) {
            Ok(cred) => {
                self.auth
                    .authenticate(mode, cred.as_ref(), ip, flowgate_core::now_ms())
                    .await
            }
            Err(e) => Err(e),
        };
        self.record_refusal(result, ip, path)
    }

    /// Records a refused credential (401) as `security.auth_failed`.
    fn record_refusal(
        &self,
        result: Result<Principal, AuthError>,
        ip: IpAddr,
        path: &str,
    ) -> Result<Principal, AuthError> {
        if let Err(e) = &result {
            if e.http_status() == 401 {
                self.auth_failed(ip, path, &e.to_string());
            }
        }
        result
    }

    /// Authenticates an admin API call: admin API keys, and bearer JWTs only
    /// from the separately configured admin issuer/audience; the partners'
    /// OAuth2 tokens never reach the admin API. Refusals are recorded as
    /// for [`Self::authenticate`].
    pub async fn authenticate_admin(
        &self,
        authorization: Option<&str>,
        x_api_key: Option<&str>,
        ip: IpAddr,
        path: &str,
    ) -> Result<Principal, AuthError> {
        let result = match extract_credential(authorization, x_api_key) {
            Ok(Some(Credential::Jwt(_))) if !self.admin_auth.has_jwt() => {
                Err(AuthError::InvalidToken(
                    "the admin API takes admin API keys, not OAuth2 tokens".into(),
                ))
            }
            Ok(cred) => {
                self.admin_auth
                    .authenticate(AuthMode::Any, cred.as_ref(), ip, flowgate_core::now_ms())
                    .await
            }
            Err(e) => Err(e),
        };
        self.record_refusal(result, ip, path)
    }

    /// The client's address: the peer, or what a trusted proxy says in
    /// `X-Forwarded-For` (values in the order received).
    pub fn client_ip<'a>(
        &self,
        peer: IpAddr,
        forwarded_for: impl IntoIterator<Item = &'a str>,
    ) -> IpAddr {
        self.trusted_proxies.client_ip(peer, forwarded_for)
    }

    /// Applies pending evictions of per-caller state (limiters, samplers,
    /// the key verifier); the engine's housekeeping calls it every minute.
    pub fn housekeeping(&self) {
        self.rate_limits.housekeeping();
        self.ip_limit.housekeeping();
        self.auth.keys().housekeeping();
        self.rate_limited_sampler.housekeeping();
        self.auth_failed_sampler.housekeeping();
    }

    /// Sizes of the per-caller state, for `/metrics`: (callers tracked by
    /// flow limits, addresses by the anonymous limit, addresses with key
    /// failures).
    pub fn tracked_state(&self) -> (u64, u64, u64) {
        (
            self.rate_limits.tracked_callers(),
            self.ip_limit.tracked(),
            self.auth.keys().cache_stats().tracked_addresses,
        )
    }

    /// Forgets cached verifications of a revoked key.
    pub fn evict_key(&self, id: &str) {
        self.auth.keys().evict(id);
    }

    /// Checks (and counts) one call of `caller` to `flow` against the flow's
    /// `limits.rate` (`None`: the flow has no rate). Per node by default; with
    /// `limits.scope = "cluster"` on PostgreSQL the nodes share the budget
    /// (see [`crate::cluster_rate`]); should the database fail, this node's
    /// own limiter decides.
    pub async fn check_rate(
        &self,
        flow: &str,
        limits: &flowgate_core::manifest::Limits,
        caller: &str,
    ) -> Option<flowgate_auth::ratelimit::RateDecision> {
        let rate = limits.rate.as_ref()?;
        if limits.scope == flowgate_core::manifest::RateScope::Cluster
            && self.store.backend() == flowgate_store::Backend::Postgres
        {
            match self.cluster_rates.check(flow, rate, caller).await {
                Ok(d) => return Some(d),
                Err(e) => {
                    tracing::warn!(flow.name = flow, error = %e, "shared rate limit unavailable; limiting on this node");
                }
            }
        }
        Some(self.rate_limits.check(flow, rate, limits.burst, caller))
    }

    /// Forgets every cached key verification (changes may have been missed).
    pub fn evict_all_keys(&self) {
        self.auth.keys().evict_all();
    }

    /// Hit/miss counters of the key cache.
    pub fn key_cache_stats(&self) -> flowgate_auth::api_key::CacheStats {
        self.auth.keys().cache_stats()
    }

    /// Records `security.auth_failed`, sampled per client address (IPv6 by
    /// /64): at most one event per address every 5 s, each carrying in
    /// `suppressed` how many failures from that address were not emitted
    /// since the previous event, so `1 + suppressed` summed over events is
    /// the number of failures.
    pub fn auth_failed(&self, ip: IpAddr, path: &str, reason: &str) {
        metrics::counter!("flowgate_auth_failures_total").increment(1);
        let address = flowgate_auth::client_addr::bucket_label(ip);
        let Some(suppressed) = self.auth_failed_sampler.sample(&address, "auth") else {
            return;
        };
        let ev = Event::new(
            types::AUTH_FAILED,
            "flowgate",
            serde_json::json!({
                "client_ip": ip.to_string(),
                "path": path,
                "reason": reason,
                "suppressed": suppressed,
            }),
        );
        self.emit_detached(ev);
    }

    /// Records `security.rate_limited` (sampled per caller and flow, with
    /// `suppressed` counted as for `security.auth_failed`).
    pub fn rate_limited(&self, caller: &str, flow: &str) {
        metrics::counter!("flowgate_rate_limited_total", "flow" => flow.to_owned()).increment(1);
        let Some(suppressed) = self.rate_limited_sampler.sample(caller, flow) else {
            return;
        };
        let ev = Event::new(
            types::RATE_LIMITED,
            "flowgate",
            serde_json::json!({"caller": caller, "flow": flow, "suppressed": suppressed}),
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

fn jwt_verifier(o: OAuth2Settings, what: &str) -> Option<Arc<flowgate_auth::JwtVerifier>> {
    let mut cfg = flowgate_auth::jwt::OAuth2Config::new(o.issuer, o.jwks_url, o.audience);
    cfg.require_at_jwt = o.require_at_jwt;
    cfg.jwks_min_refetch = o.jwks_min_refetch;
    match flowgate_auth::jwt::JwtVerifier::new(cfg) {
        Ok(v) => Some(Arc::new(v)),
        Err(e) => {
            tracing::error!(error = %e, "{what} is configured but its verifier could not be built; bearer JWTs will be refused");
            None
        }
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
