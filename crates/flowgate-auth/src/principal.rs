//! Who is calling: the result of a successful authentication.

use serde::Serialize;

/// How a caller authenticated (the script API's `caller.kind`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum PrincipalKind {
    /// An API key (`fgk_…`).
    ApiKey,
    /// An OAuth2 access token (JWT).
    #[serde(rename = "oauth2")]
    OAuth2,
    /// A signed webhook.
    Signature,
    /// No credentials (flows with `[auth] mode = "none"`).
    Anonymous,
    /// The scheduler.
    Schedule,
    /// An event subscription.
    Event,
    /// An administrator ("run now", replay, dry run).
    Admin,
}

impl PrincipalKind {
    /// The spelling used in `caller.kind`, audit entries and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ApiKey => "api_key",
            Self::OAuth2 => "oauth2",
            Self::Signature => "signature",
            Self::Anonymous => "anonymous",
            Self::Schedule => "schedule",
            Self::Event => "event",
            Self::Admin => "admin",
        }
    }
}

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Principal {
    /// How it authenticated.
    pub kind: PrincipalKind,
    /// API key id, JWT `sub` (or `client_id`), webhook scheme, or the client
    /// address for anonymous callers (`""` when there is none, e.g. in tests).
    pub id: String,
    /// Granted scopes.
    pub scopes: Vec<String>,
}

impl Principal {
    /// An anonymous caller with no scopes.
    pub fn anonymous() -> Self {
        Self {
            kind: PrincipalKind::Anonymous,
            id: String::new(),
            scopes: Vec::new(),
        }
    }

    /// An anonymous caller identified by its client address (IPv6 by /64),
    /// so per-caller state (rate limits, idempotency keys) is its own.
    pub fn anonymous_from(ip: std::net::IpAddr) -> Self {
        Self {
            id: crate::client_addr::bucket_label(ip),
            ..Self::anonymous()
        }
    }

    /// A stable key for per-caller state (rate limits, idempotency): `kind:id`.
    pub fn caller_key(&self) -> String {
        [self.kind.as_str(), ":", &self.id].concat()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn kinds_and_keys() {
        let p = Principal {
            kind: PrincipalKind::OAuth2,
            id: "client-1".into(),
            scopes: vec![],
        };
        assert_eq!(p.caller_key(), "oauth2:client-1");
        assert_eq!(
            serde_json::to_value(PrincipalKind::ApiKey).unwrap(),
            serde_json::json!("api_key")
        );
        assert_eq!(
            serde_json::to_value(PrincipalKind::OAuth2).unwrap(),
            serde_json::json!("oauth2")
        );
        assert_eq!(Principal::anonymous().kind.as_str(), "anonymous");
        let a = Principal::anonymous_from("192.0.2.1".parse().unwrap());
        let b = Principal::anonymous_from("192.0.2.2".parse().unwrap());
        assert_eq!(a.caller_key(), "anonymous:192.0.2.1");
        assert_ne!(a.caller_key(), b.caller_key());
    }
}
