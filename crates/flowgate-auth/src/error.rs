//! `AuthError`: every way authentication or authorisation can fail, with the
//! HTTP status and `WWW-Authenticate` challenge the gateway should answer with.

use std::time::Duration;

use crate::signature::SignatureError;

/// The realm named in every `WWW-Authenticate` challenge.
pub const REALM: &str = "flowgate";

/// Authentication and authorisation failures.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// No credentials were presented where some are required.
    #[error("missing credentials")]
    MissingCredentials,
    /// An API key that is malformed, unknown, or whose secret does not match.
    #[error("invalid API key")]
    InvalidApiKey,
    /// A well-formed, matching API key whose `expires_at` has passed.
    #[error("API key expired")]
    KeyExpired,
    /// A well-formed, matching API key that was revoked.
    #[error("API key revoked")]
    KeyRevoked,
    /// A bearer JWT that failed verification; the reason is safe to show.
    #[error("invalid token: {0}")]
    InvalidToken(String),
    /// A webhook signature that is missing, malformed, stale or wrong.
    #[error("invalid signature: {0}")]
    InvalidSignature(#[from] SignatureError),
    /// Too many failed verifications from one client address.
    #[error("too many failed authentication attempts")]
    TooManyFailures {
        /// How long the client should wait.
        retry_after: Duration,
    },
    /// Authenticated, but a required scope is not granted.
    #[error("missing scope `{0}`")]
    MissingScope(String),
    /// A dependency (key store, JWKS endpoint) is temporarily unavailable.
    #[error("authentication unavailable: {0}")]
    Unavailable(String),
    /// A server-side fault (bad configuration, worker panic); details are for logs.
    #[error("internal authentication error: {0}")]
    Internal(String),
}

/// Result alias for this crate.
pub type Result<T, E = AuthError> = std::result::Result<T, E>;

impl AuthError {
    /// The HTTP status the gateway answers with: 401, 403, 429, 503 or 500.
    ///
    /// A stored signing secret that cannot be used is the operator's
    /// misconfiguration, answered like a missing one: 503, so the provider
    /// retries once it is fixed.
    pub fn http_status(&self) -> u16 {
        match self {
            Self::InvalidSignature(SignatureError::InvalidSecret(_)) => 503,
            Self::MissingCredentials
            | Self::InvalidApiKey
            | Self::KeyExpired
            | Self::KeyRevoked
            | Self::InvalidToken(_)
            | Self::InvalidSignature(_) => 401,
            Self::MissingScope(_) => 403,
            Self::TooManyFailures { .. } => 429,
            Self::Unavailable(_) => 503,
            Self::Internal(_) => 500,
        }
    }

    /// A stable machine-readable code for problem+json bodies.
    pub fn code(&self) -> &'static str {
        match self {
            Self::MissingCredentials => "unauthenticated",
            Self::InvalidApiKey | Self::KeyExpired | Self::KeyRevoked | Self::InvalidToken(_) => {
                "invalid_credentials"
            }
            Self::InvalidSignature(SignatureError::InvalidSecret(_)) => "signature_secret_invalid",
            Self::InvalidSignature(_) => "invalid_signature",
            Self::TooManyFailures { .. } => "too_many_auth_failures",
            Self::MissingScope(_) => "insufficient_scope",
            Self::Unavailable(_) => "auth_unavailable",
            Self::Internal(_) => "internal",
        }
    }

    /// The `WWW-Authenticate` value for 401 (and, per RFC 6750, 403) answers.
    ///
    /// Missing credentials get the bare challenge `Bearer realm="flowgate"`;
    /// rejected ones add `error="invalid_token"` and a short description.
    pub fn www_authenticate(&self) -> Option<String> {
        let bearer_invalid = |desc: &str| {
            Some(format!(
                "Bearer realm=\"{REALM}\", error=\"invalid_token\", error_description=\"{}\"",
                quote_safe(desc)
            ))
        };
        match self {
            Self::MissingCredentials => Some(format!("Bearer realm=\"{REALM}\"")),
            Self::InvalidApiKey => bearer_invalid("invalid API key"),
            Self::KeyExpired => bearer_invalid("API key expired"),
            Self::KeyRevoked => bearer_invalid("API key revoked"),
            Self::InvalidToken(reason) => bearer_invalid(reason),
            Self::InvalidSignature(SignatureError::InvalidSecret(_)) => None,
            Self::InvalidSignature(_) => Some(format!("Signature realm=\"{REALM}\"")),
            Self::MissingScope(scope) => Some(format!(
                "Bearer realm=\"{REALM}\", error=\"insufficient_scope\", scope=\"{}\"",
                quote_safe(scope)
            )),
            Self::TooManyFailures { .. } | Self::Unavailable(_) | Self::Internal(_) => None,
        }
    }

    /// `Retry-After` in whole seconds (at least 1) for 429 answers.
    pub fn retry_after_secs(&self) -> Option<u64> {
        match self {
            Self::TooManyFailures { retry_after } => Some(ceil_secs(*retry_after)),
            _ => None,
        }
    }
}

/// Whole seconds, rounded up, never below 1.
pub(crate) fn ceil_secs(d: Duration) -> u64 {
    let s = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    s.max(1)
}

/// Keeps a value safe inside a quoted-string: drops `"`, `\` and control characters.
fn quote_safe(s: &str) -> String {
    s.chars()
        .filter(|c| *c != '"' && *c != '\\' && !c.is_control())
        .take(200)
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn statuses() {
        assert_eq!(AuthError::MissingCredentials.http_status(), 401);
        assert_eq!(AuthError::InvalidApiKey.http_status(), 401);
        assert_eq!(AuthError::KeyRevoked.http_status(), 401);
        assert_eq!(AuthError::InvalidToken("x".into()).http_status(), 401);
        assert_eq!(
            AuthError::InvalidSignature(SignatureError::Mismatch).http_status(),
            401
        );
        assert_eq!(AuthError::MissingScope("a".into()).http_status(), 403);
        let e = AuthError::TooManyFailures {
            retry_after: Duration::from_millis(2_100),
        };
        assert_eq!(e.http_status(), 429);
        assert_eq!(e.retry_after_secs(), Some(3));
        assert_eq!(AuthError::Unavailable("db".into()).http_status(), 503);
        // A malformed stored signing secret is unavailability, not a fault.
        let e = AuthError::InvalidSignature(SignatureError::InvalidSecret("not whsec_<base64>"));
        assert_eq!(e.http_status(), 503);
        assert_eq!(e.code(), "signature_secret_invalid");
        assert!(e.www_authenticate().is_none());
    }

    #[test]
    fn challenges() {
        assert_eq!(
            AuthError::MissingCredentials.www_authenticate().as_deref(),
            Some("Bearer realm=\"flowgate\"")
        );
        assert_eq!(
            AuthError::InvalidToken("token \"expired\"".into())
                .www_authenticate()
                .as_deref(),
            Some(
                "Bearer realm=\"flowgate\", error=\"invalid_token\", error_description=\"token expired\""
            )
        );
        assert_eq!(
            AuthError::KeyExpired.www_authenticate().as_deref(),
            Some("Bearer realm=\"flowgate\", error=\"invalid_token\", error_description=\"API key expired\"")
        );
        assert!(AuthError::InvalidSignature(SignatureError::Mismatch)
            .www_authenticate()
            .is_some());
        assert!(AuthError::TooManyFailures {
            retry_after: Duration::ZERO
        }
        .www_authenticate()
        .is_none());
    }

    #[test]
    fn ceil_is_at_least_one() {
        assert_eq!(ceil_secs(Duration::ZERO), 1);
        assert_eq!(ceil_secs(Duration::from_secs(5)), 5);
        assert_eq!(ceil_secs(Duration::from_millis(5_001)), 6);
    }
}
