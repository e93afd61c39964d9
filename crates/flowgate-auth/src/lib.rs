//! flowgate-auth: API keys, OAuth2 bearer JWTs, webhook signatures, scopes and
//! rate limits. Library only; the gateway maps results to HTTP.
//!
//! Storage is reached through the small [`api_key::KeyStore`] trait so this
//! crate depends on `flowgate-core` alone.
//!
//! How the gateway uses it, per request:
//! 1. [`extract_credential`] on `Authorization` / `X-API-Key`, then
//!    [`Authenticator::authenticate`] with the flow's `[auth] mode` (or, for
//!    webhook triggers, [`verify_signature`] on the raw body).
//! 2. [`has_scopes`] with the flow's required scopes (403 on failure).
//! 3. [`RateLimits::check`] with the flow's `[limits]` and
//!    [`Principal::caller_key`]; send [`RateDecision::headers`] on every
//!    response, 429 when refused; [`Sampler::should_emit`] gates the
//!    `security.rate_limited` event.
//! 4. Errors: [`AuthError::http_status`], [`AuthError::www_authenticate`],
//!    [`AuthError::retry_after_secs`], [`AuthError::code`].
//!
//! Call [`KeyVerifier::evict`] when a key is revoked, and the `housekeeping`
//! methods about once a minute (all per-caller state is bounded without
//! them; they apply pending evictions). Client addresses come from
//! [`client_addr::TrustedProxies::client_ip`].

pub mod api_key;
pub mod authenticator;
pub mod client_addr;
pub mod error;
pub mod jwt;
pub mod principal;
pub mod ratelimit;
pub mod scopes;
pub mod signature;

/// Fixed key pairs for tests (this crate's and the workspace's end-to-end tests).
#[cfg(any(test, feature = "test-keys"))]
pub mod test_keys;

pub use api_key::{ApiKeyId, GeneratedKey, KeyStore, KeyVerifier, StoredKey};
pub use authenticator::{extract_credential, Authenticator, Credential};
pub use client_addr::TrustedProxies;
pub use error::{AuthError, Result};
pub use jwt::{JwtVerifier, OAuth2Config};
pub use principal::{Principal, PrincipalKind};
pub use ratelimit::{IpRateLimiter, RateDecision, RateLimits, Sampler};
pub use scopes::{has_scopes, MissingScope};
pub use signature::{verify_signature, SignatureError, VerifiedDelivery};
