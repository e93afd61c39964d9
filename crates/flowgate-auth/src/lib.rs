//! flowgate-auth: API keys, OAuth2 bearer JWTs, webhook signatures, scopes and
//! rate limits. Library only; the gateway maps results to HTTP.
//!
//! Storage is reached through the small [`api_key::KeyStore`] trait so this
//! crate depends on `flowgate-core` alone.

pub mod api_key;
pub mod authenticator;
pub mod error;
pub mod jwt;
pub mod principal;
pub mod ratelimit;
pub mod scopes;
pub mod signature;

#[cfg(test)]
mod test_keys;

pub use api_key::{ApiKeyId, GeneratedKey, KeyStore, KeyVerifier, StoredKey};
pub use authenticator::{extract_credential, Authenticator, Credential};
pub use error::{AuthError, Result};
pub use jwt::{JwtVerifier, OAuth2Config};
pub use principal::{Principal, PrincipalKind};
pub use ratelimit::{IpRateLimiter, RateDecision, RateLimits, Sampler};
pub use scopes::{has_scopes, MissingScope};
pub use signature::{verify_signature, SignatureError, VerifiedDelivery};
