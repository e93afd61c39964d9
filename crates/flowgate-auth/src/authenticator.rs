//! Picks the credential out of request headers and checks it according to a
//! flow's `[auth] mode`, so the gateway makes one call per request.
//!
//! Credentials come from `Authorization: Bearer <token>` or `X-API-Key: <key>`
//! (never the query string). A bearer value starting with `fgk_` is an API
//! key; anything else is taken for a JWT.

use std::net::IpAddr;
use std::sync::Arc;

use flowgate_core::manifest::AuthMode;
use flowgate_core::SecretString;

use crate::api_key::{KeyVerifier, KEY_PREFIX};
use crate::jwt::JwtVerifier;
use crate::{AuthError, Principal, Result};

/// A credential found in the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    /// `fgk_…`, from `X-API-Key` or `Authorization: Bearer`.
    ApiKey(SecretString),
    /// Any other bearer token.
    Jwt(SecretString),
}

/// Longest credential looked at; anything longer is refused unread.
const MAX_CREDENTIAL_LEN: usize = 16 * 1024;

/// Extracts the credential from the `Authorization` and `X-API-Key` values.
///
/// `Ok(None)` when neither is present. Two different credentials, a
/// non-Bearer scheme or an empty value are refused (401).
pub fn extract_credential(
    authorization: Option<&str>,
    x_api_key: Option<&str>,
) -> Result<Option<Credential>> {
    let bearer = match authorization {
        None => None,
        Some(v) => {
            let v = v.trim();
            let (scheme, rest) = v.split_once(' ').unwrap_or((v, ""));
            if !scheme.eq_ignore_ascii_case("bearer") {
                return Err(AuthError::InvalidToken(
                    "only the Bearer scheme is supported".into(),
                ));
            }
            let token = rest.trim();
            if token.is_empty() || token.len() > MAX_CREDENTIAL_LEN {
                return Err(AuthError::InvalidToken("malformed bearer token".into()));
            }
            Some(token)
        }
    };
    let header_key = match x_api_key.map(str::trim) {
        None => None,
        Some(k) if k.is_empty() || k.len() > MAX_CREDENTIAL_LEN => {
            return Err(AuthError::InvalidApiKey)
        }
        Some(k) => Some(k),
    };
    match (bearer, header_key) {
        (None, None) => Ok(None),
        (Some(b), Some(k)) if b != k => Err(AuthError::InvalidToken(
            "send one credential, not two".into(),
        )),
        (_, Some(k)) => Ok(Some(Credential::ApiKey(SecretString::new(k)))),
        (Some(b), None) if b.starts_with(KEY_PREFIX) => {
            Ok(Some(Credential::ApiKey(SecretString::new(b))))
        }
        (Some(b), None) => Ok(Some(Credential::Jwt(SecretString::new(b)))),
    }
}

/// API key and (optional) OAuth2 verification behind one call.
#[derive(Debug, Clone)]
pub struct Authenticator {
    keys: Arc<KeyVerifier>,
    jwt: Option<Arc<JwtVerifier>>,
}

impl Authenticator {
    /// `jwt` is `None` when OAuth2 is not configured.
    pub fn new(keys: Arc<KeyVerifier>, jwt: Option<Arc<JwtVerifier>>) -> Self {
        Self { keys, jwt }
    }

    /// Whether bearer JWTs are verified at all (an issuer is configured).
    pub fn has_jwt(&self) -> bool {
        self.jwt.is_some()
    }

    /// The API key verifier (for `evict` on revoke and `cache_stats`).
    pub fn keys(&self) -> &KeyVerifier {
        &self.keys
    }

    /// Authenticates a request for a flow with `mode`.
    ///
    /// `none` answers anonymous without looking at credentials; `api_key` and
    /// `oauth2` refuse the other kind; `any` takes either.
    pub async fn authenticate(
        &self,
        mode: AuthMode,
        credential: Option<&Credential>,
        client_ip: IpAddr,
        now_ms: i64,
    ) -> Result<Principal> {
        if mode == AuthMode::None {
            return Ok(Principal::anonymous_from(client_ip));
        }
        let Some(credential) = credential else {
            return Err(AuthError::MissingCredentials);
        };
        match (mode, credential) {
            (AuthMode::ApiKey | AuthMode::Any, Credential::ApiKey(k)) => {
                self.keys.verify(k.expose(), client_ip, now_ms).await
            }
            (AuthMode::OAuth2 | AuthMode::Any, Credential::Jwt(t)) => match &self.jwt {
                Some(j) => j.verify(t.expose()).await,
                None if mode == AuthMode::OAuth2 => {
                    Err(AuthError::Unavailable("OAuth2 is not configured".into()))
                }
                None => Err(AuthError::InvalidApiKey),
            },
            (AuthMode::ApiKey, Credential::Jwt(_)) => Err(AuthError::InvalidApiKey),
            (_, Credential::ApiKey(_)) => Err(AuthError::InvalidToken(
                "this endpoint takes OAuth2 access tokens".into(),
            )),
            _ => Err(AuthError::MissingCredentials),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::api_key::{KeyStore, StoredKey};
    use crate::PrincipalKind;

    const KEY: &str = "fgk_0123456789abcdef_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";

    #[test]
    fn extraction() {
        assert_eq!(extract_credential(None, None).unwrap(), None);
        assert_eq!(
            extract_credential(Some(&format!("Bearer {KEY}")), None).unwrap(),
            Some(Credential::ApiKey(SecretString::new(KEY)))
        );
        assert_eq!(
            extract_credential(Some("bearer eyJ.x.y"), None).unwrap(),
            Some(Credential::Jwt(SecretString::new("eyJ.x.y")))
        );
        assert_eq!(
            extract_credential(None, Some(KEY)).unwrap(),
            Some(Credential::ApiKey(SecretString::new(KEY)))
        );
        // Same key in both places is fine; different ones are not.
        assert!(extract_credential(Some(&format!("Bearer {KEY}")), Some(KEY)).is_ok());
        assert!(extract_credential(Some("Bearer eyJ.x.y"), Some(KEY)).is_err());
        for bad in ["Basic dXNlcjpwdw==", "Bearer", "Bearer   ", "Token abc"] {
            let e = extract_credential(Some(bad), None).unwrap_err();
            assert_eq!(e.http_status(), 401, "{bad}");
        }
        assert!(extract_credential(None, Some("")).is_err());
    }

    struct NoKeys;
    impl KeyStore for NoKeys {
        fn get_key(&self, _id: &str) -> flowgate_core::Result<Option<StoredKey>> {
            Ok(None)
        }
        fn touch_last_used(&self, _id: &str, _now_ms: i64) -> flowgate_core::Result<()> {
            Ok(())
        }
    }

    #[tokio::test]
    async fn modes() {
        let a = Authenticator::new(Arc::new(KeyVerifier::new(Arc::new(NoKeys))), None);
        let ip: IpAddr = "192.0.2.9".parse().unwrap();
        let p = a.authenticate(AuthMode::None, None, ip, 0).await.unwrap();
        assert_eq!(p.kind, PrincipalKind::Anonymous);
        for mode in [AuthMode::ApiKey, AuthMode::OAuth2, AuthMode::Any] {
            let e = a.authenticate(mode, None, ip, 0).await.unwrap_err();
            assert!(matches!(e, AuthError::MissingCredentials), "{mode:?}");
            assert_eq!(
                e.www_authenticate().as_deref(),
                Some("Bearer realm=\"flowgate\"")
            );
        }
        let jwt = Credential::Jwt(SecretString::new("eyJ.x.y"));
        let key = Credential::ApiKey(SecretString::new(KEY));
        let e = a
            .authenticate(AuthMode::ApiKey, Some(&jwt), ip, 0)
            .await
            .unwrap_err();
        assert_eq!(e.http_status(), 401);
        let e = a
            .authenticate(AuthMode::OAuth2, Some(&key), ip, 0)
            .await
            .unwrap_err();
        assert!(matches!(e, AuthError::InvalidToken(_)), "{e:?}");
        let e = a
            .authenticate(AuthMode::OAuth2, Some(&jwt), ip, 0)
            .await
            .unwrap_err();
        assert_eq!(e.http_status(), 503);
        // Unknown key: verified (and refused) by the key verifier.
        let e = a
            .authenticate(AuthMode::Any, Some(&key), ip, 0)
            .await
            .unwrap_err();
        assert!(matches!(e, AuthError::InvalidApiKey), "{e:?}");
        assert_eq!(a.keys().cache_stats().failures, 1);
    }
}
