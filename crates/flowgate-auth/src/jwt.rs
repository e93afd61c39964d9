//! OAuth2 bearer JWTs checked against the issuer's JWKS.
//!
//! Rules: only RS256, ES256 and EdDSA (never `none`, never HS*), refused
//! before any key is looked up; the key comes from the configured JWKS URL by
//! `kid` (the token's `jku`/`x5u`/`jwk`/`x5c` headers are never used); `iss`
//! must equal the configured issuer byte for byte; `aud`, `exp` and `nbf` are
//! checked with a small leeway; `typ` must be `at+jwt` when configured
//! (RFC 9068). An unknown `kid` refetches the JWKS at most once per
//! `jwks_min_refetch` interval.

use std::collections::HashMap;
use std::sync::RwLock;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

use crate::{AuthError, Principal, PrincipalKind, Result};

/// Largest token accepted (bytes).
const MAX_TOKEN_LEN: usize = 16 * 1024;
/// Largest JWKS document accepted (bytes).
const MAX_JWKS_LEN: usize = 512 * 1024;

/// `[oauth2]` configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuth2Config {
    /// Expected `iss`, compared exactly.
    pub issuer: String,
    /// Where the issuer publishes its signing keys.
    pub jwks_url: String,
    /// Expected `aud` (one of the token's audiences must equal it).
    pub audience: String,
    /// Require `typ: at+jwt` (RFC 9068 access tokens).
    pub require_at_jwt: bool,
    /// Clock skew tolerated on `exp`/`nbf`, seconds.
    pub leeway_secs: u64,
    /// Minimum time between JWKS refetches caused by unknown `kid`s.
    pub jwks_min_refetch: Duration,
    /// Timeout of one JWKS request.
    pub http_timeout: Duration,
}

impl OAuth2Config {
    /// Configuration with defaults: `at+jwt` not required, 60 s leeway,
    /// refetch at most every 30 s, 5 s HTTP timeout.
    pub fn new(
        issuer: impl Into<String>,
        jwks_url: impl Into<String>,
        audience: impl Into<String>,
    ) -> Self {
        Self {
            issuer: issuer.into(),
            jwks_url: jwks_url.into(),
            audience: audience.into(),
            require_at_jwt: false,
            leeway_secs: 60,
            jwks_min_refetch: Duration::from_secs(30),
            http_timeout: Duration::from_secs(5),
        }
    }
}

#[derive(Default)]
struct KeySet {
    keys: HashMap<String, (Algorithm, DecodingKey)>,
    /// Keys without a `kid`, usable only when the set holds exactly one key.
    anonymous: Vec<(Algorithm, DecodingKey)>,
    last_fetch: Option<Instant>,
}

/// Verifies bearer JWTs; share one per process.
pub struct JwtVerifier {
    cfg: OAuth2Config,
    http: reqwest::Client,
    keys: RwLock<KeySet>,
    fetch_lock: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for JwtVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtVerifier")
            .field("issuer", &self.cfg.issuer)
            .field("jwks_url", &self.cfg.jwks_url)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct Claims {
    sub: Option<String>,
    client_id: Option<String>,
    scope: Option<String>,
    scp: Option<ScpClaim>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum ScpClaim {
    List(Vec<String>),
    Text(String),
}

fn invalid(reason: &str) -> AuthError {
    AuthError::InvalidToken(reason.to_owned())
}

fn allowed_alg(alg: &str) -> Option<Algorithm> {
    match alg {
        "RS256" => Some(Algorithm::RS256),
        "ES256" => Some(Algorithm::ES256),
        "EdDSA" => Some(Algorithm::EdDSA),
        _ => None,
    }
}

/// The algorithm a JWK may be used with, if it is one we accept.
fn jwk_alg(jwk: &Jwk) -> Option<Algorithm> {
    let by_type = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => Algorithm::RS256,
        AlgorithmParameters::EllipticCurve(p) if p.curve == EllipticCurve::P256 => Algorithm::ES256,
        AlgorithmParameters::OctetKeyPair(p) if p.curve == EllipticCurve::Ed25519 => {
            Algorithm::EdDSA
        }
        _ => return None,
    };
    match jwk.common.key_algorithm {
        None => Some(by_type),
        Some(KeyAlgorithm::RS256) if by_type == Algorithm::RS256 => Some(by_type),
        Some(KeyAlgorithm::ES256) if by_type == Algorithm::ES256 => Some(by_type),
        Some(KeyAlgorithm::EdDSA) if by_type == Algorithm::EdDSA => Some(by_type),
        Some(_) => None,
    }
}

impl JwtVerifier {
    /// Builds a verifier. Installs rustls' ring provider if the process has none.
    pub fn new(cfg: OAuth2Config) -> Result<Self> {
        if rustls::crypto::CryptoProvider::get_default().is_none() {
            let _ = rustls::crypto::ring::default_provider().install_default();
        }
        let http = reqwest::Client::builder()
            .timeout(cfg.http_timeout)
            .redirect(reqwest::redirect::Policy::limited(3))
            .build()
            .map_err(|e| AuthError::Internal(format!("JWKS client: {e}")))?;
        Ok(Self {
            cfg,
            http,
            keys: RwLock::new(KeySet::default()),
            fetch_lock: tokio::sync::Mutex::new(()),
        })
    }

    /// The configuration in use.
    pub fn config(&self) -> &OAuth2Config {
        &self.cfg
    }

    /// Verifies a bearer token and returns its principal (`sub`, else `client_id`).
    #[tracing::instrument(skip_all, err(level = tracing::Level::DEBUG))]
    pub async fn verify(&self, token: &str) -> Result<Principal> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(invalid("token too large"));
        }
        let mut parts = token.split('.');
        let (Some(h64), Some(_), Some(_), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(invalid("malformed token"));
        };
        // Read the header ourselves so a disallowed algorithm is refused
        // before jsonwebtoken or any key sees the token.
        let header: serde_json::Value = URL_SAFE_NO_PAD
            .decode(h64)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or_else(|| invalid("malformed token header"))?;
        let alg = header
            .get("alg")
            .and_then(|a| a.as_str())
            .and_then(allowed_alg)
            .ok_or_else(|| invalid("algorithm not allowed"))?;
        if header.get("crit").is_some() {
            return Err(invalid("unsupported critical header"));
        }
        if self.cfg.require_at_jwt {
            let typ = header.get("typ").and_then(|t| t.as_str()).unwrap_or("");
            if !typ.eq_ignore_ascii_case("at+jwt")
                && !typ.eq_ignore_ascii_case("application/at+jwt")
            {
                return Err(invalid("token type must be at+jwt"));
            }
        }
        let kid = match header.get("kid") {
            None => None,
            Some(serde_json::Value::String(k)) if !k.is_empty() && k.len() <= 256 => {
                Some(k.clone())
            }
            Some(_) => return Err(invalid("malformed key id")),
        };

        let key = self.key_for(kid.as_deref(), alg).await?;

        let mut v = Validation::new(alg);
        v.set_issuer(&[&self.cfg.issuer]);
        v.set_audience(&[&self.cfg.audience]);
        v.set_required_spec_claims(&["exp", "iss", "aud"]);
        v.validate_exp = true;
        v.validate_nbf = true;
        v.validate_aud = true;
        v.leeway = self.cfg.leeway_secs;
        let data = jsonwebtoken::decode::<Claims>(token, &key, &v).map_err(|e| {
            use jsonwebtoken::errors::ErrorKind as K;
            invalid(match e.kind() {
                K::ExpiredSignature => "token expired",
                K::ImmatureSignature => "token not yet valid",
                K::InvalidIssuer => "wrong issuer",
                K::InvalidAudience => "wrong audience",
                K::InvalidSignature => "bad signature",
                K::MissingRequiredClaim(_) => "missing required claim",
                K::InvalidAlgorithm => "algorithm not allowed",
                _ => "malformed token",
            })
        })?;
        let c = data.claims;
        let id = c
            .sub
            .or(c.client_id)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| invalid("token names no subject"))?;
        let mut scopes: Vec<String> = match (c.scope, c.scp) {
            (Some(s), _) => s.split_whitespace().map(str::to_owned).collect(),
            (None, Some(ScpClaim::List(l))) => l,
            (None, Some(ScpClaim::Text(s))) => s.split_whitespace().map(str::to_owned).collect(),
            (None, None) => Vec::new(),
        };
        scopes.dedup();
        Ok(Principal {
            kind: PrincipalKind::OAuth2,
            id,
            scopes,
        })
    }

    fn lookup(&self, kid: Option<&str>, alg: Algorithm) -> Option<Result<DecodingKey>> {
        let set = self.keys.read().ok()?;
        let found = match kid {
            Some(k) => set.keys.get(k),
            None if set.keys.len() + set.anonymous.len() == 1 => {
                set.keys.values().next().or(set.anonymous.first())
            }
            None => None,
        };
        found.map(|(key_alg, key)| {
            if *key_alg == alg {
                Ok(key.clone())
            } else {
                Err(invalid("algorithm does not match the key"))
            }
        })
    }

    async fn key_for(&self, kid: Option<&str>, alg: Algorithm) -> Result<DecodingKey> {
        if let Some(found) = self.lookup(kid, alg) {
            return found;
        }
        let _guard = self.fetch_lock.lock().await;
        // Someone may have fetched while we waited.
        if let Some(found) = self.lookup(kid, alg) {
            return found;
        }
        let recently = self
            .keys
            .read()
            .ok()
            .and_then(|s| s.last_fetch)
            .is_some_and(|t| t.elapsed() < self.cfg.jwks_min_refetch);
        if !recently {
            self.refresh_locked().await?;
            if let Some(found) = self.lookup(kid, alg) {
                return found;
            }
        }
        Err(invalid("unknown signing key"))
    }

    /// Fetches the JWKS now (e.g. at start-up), regardless of the refetch interval.
    pub async fn refresh(&self) -> Result<()> {
        let _guard = self.fetch_lock.lock().await;
        self.refresh_locked().await
    }

    async fn refresh_locked(&self) -> Result<()> {
        // Count the attempt even if it fails, so a dead endpoint is not hammered.
        if let Ok(mut s) = self.keys.write() {
            s.last_fetch = Some(Instant::now());
        }
        let unavailable = |e: &dyn std::fmt::Display| AuthError::Unavailable(format!("JWKS: {e}"));
        let mut resp = self
            .http
            .get(&self.cfg.jwks_url)
            .header("accept", "application/json")
            .send()
            .await
            .map_err(|e| unavailable(&e))?;
        if !resp.status().is_success() {
            return Err(unavailable(&format!("status {}", resp.status())));
        }
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(|e| unavailable(&e))? {
            body.extend_from_slice(&chunk);
            if body.len() > MAX_JWKS_LEN {
                return Err(unavailable(&"document too large"));
            }
        }
        let doc: serde_json::Value = serde_json::from_slice(&body).map_err(|e| unavailable(&e))?;
        let raw_keys = doc
            .get("keys")
            .and_then(|k| k.as_array())
            .ok_or_else(|| unavailable(&"no `keys` array"))?;
        let mut set = KeySet {
            last_fetch: Some(Instant::now()),
            ..KeySet::default()
        };
        for raw in raw_keys {
            // One odd key (unknown kty, encryption key) must not hide the others.
            let Ok(jwk) = serde_json::from_value::<Jwk>(raw.clone()) else {
                continue;
            };
            if matches!(jwk.common.public_key_use, Some(ref u) if *u != PublicKeyUse::Signature) {
                continue;
            }
            let Some(alg) = jwk_alg(&jwk) else { continue };
            let Ok(key) = DecodingKey::from_jwk(&jwk) else {
                continue;
            };
            match jwk.common.key_id.clone() {
                Some(kid) => {
                    set.keys.insert(kid, (alg, key));
                }
                None => set.anonymous.push((alg, key)),
            }
        }
        tracing::debug!(keys = set.keys.len() + set.anonymous.len(), "JWKS fetched");
        match self.keys.write() {
            Ok(mut s) => *s = set,
            Err(poisoned) => *poisoned.into_inner() = set,
        }
        Ok(())
    }
}

#[cfg(test)]
#[path = "jwt_tests.rs"]
mod tests;
