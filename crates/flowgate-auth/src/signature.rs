//! Webhook signatures: Standard Webhooks, Stripe, GitHub and generic
//! HMAC-SHA256, verified over the raw body bytes with constant-time compares,
//! plus signing helpers for tests and users' documentation.
//!
//! Header names are looked up in lower case.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use flowgate_core::manifest::{SignatureConfig, SignatureEncoding, SignatureScheme};
use flowgate_core::SecretString;
use hmac::{KeyInit, Mac};
use subtle::ConstantTimeEq;

/// Allowed distance between a signed timestamp and now (both ways), seconds.
pub const TOLERANCE_SECS: i64 = 300;
/// Most signatures examined in one header (rotation needs two or three).
const MAX_CANDIDATES: usize = 16;

/// Why a webhook signature was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SignatureError {
    /// A required header is absent.
    #[error("missing header `{0}`")]
    MissingHeader(&'static str),
    /// A header is present but cannot be parsed.
    #[error("malformed header `{0}`")]
    Malformed(&'static str),
    /// The signed timestamp is more than 5 minutes from now.
    #[error("timestamp outside the 5-minute tolerance")]
    TimestampOutOfTolerance,
    /// No signature matches.
    #[error("signature mismatch")]
    Mismatch,
    /// The configured secret is unusable (operator error, not the caller's).
    #[error("signing secret is invalid: {0}")]
    InvalidSecret(&'static str),
}

/// What a verified delivery tells the gateway.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct VerifiedDelivery {
    /// De-duplication id: `webhook-id`, `X-GitHub-Delivery`, or the Stripe event `id`.
    pub delivery_id: Option<String>,
}

type HmacSha256 = hmac::Hmac<sha2::Sha256>;

fn mac(key: &[u8], parts: &[&[u8]]) -> Result<[u8; 32], SignatureError> {
    let mut m = HmacSha256::new_from_slice(key)
        .map_err(|_| SignatureError::InvalidSecret("unusable key length"))?;
    for p in parts {
        m.update(p);
    }
    Ok(m.finalize().into_bytes().into())
}

/// Constant-time comparison of a candidate against the expected MAC.
fn matches(expected: &[u8; 32], candidate: &[u8]) -> bool {
    candidate.len() == expected.len() && bool::from(expected.as_slice().ct_eq(candidate))
}

fn check_timestamp(ts: i64, now_secs: i64) -> Result<(), SignatureError> {
    if now_secs.abs_diff(ts) > TOLERANCE_SECS.unsigned_abs() {
        Err(SignatureError::TimestampOutOfTolerance)
    } else {
        Ok(())
    }
}

fn parse_ts(s: &str, header: &'static str) -> Result<i64, SignatureError> {
    let s = s.trim();
    if s.is_empty() || s.len() > 12 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(SignatureError::Malformed(header));
    }
    s.parse().map_err(|_| SignatureError::Malformed(header))
}

/// Decodes a Standard Webhooks secret (`whsec_<base64>`, prefix optional).
fn standard_webhooks_key(secret: &str) -> Result<Vec<u8>, SignatureError> {
    let b64 = secret.strip_prefix("whsec_").unwrap_or(secret);
    let key = STANDARD
        .decode(b64.trim())
        .map_err(|_| SignatureError::InvalidSecret("not whsec_<base64>"))?;
    if key.is_empty() {
        return Err(SignatureError::InvalidSecret("empty"));
    }
    Ok(key)
}

/// Verifies a delivery according to the trigger's signature configuration.
///
/// `headers` returns a header's value by lower-case name. `now_secs` is the
/// current Unix time (pinned in tests).
pub fn verify_signature(
    cfg: &SignatureConfig,
    secret: &SecretString,
    headers: &dyn Fn(&str) -> Option<String>,
    body: &[u8],
    now_secs: i64,
) -> Result<VerifiedDelivery, SignatureError> {
    if secret.expose().is_empty() {
        return Err(SignatureError::InvalidSecret("empty"));
    }
    match cfg.scheme {
        SignatureScheme::StandardWebhooks => verify_standard(secret, headers, body, now_secs),
        SignatureScheme::Stripe => verify_stripe(secret, headers, body, now_secs),
        SignatureScheme::Github => verify_github(secret, headers, body),
        SignatureScheme::HmacSha256 => verify_generic(cfg, secret, headers, body),
    }
}

fn verify_standard(
    secret: &SecretString,
    headers: &dyn Fn(&str) -> Option<String>,
    body: &[u8],
    now_secs: i64,
) -> Result<VerifiedDelivery, SignatureError> {
    let key = standard_webhooks_key(secret.expose())?;
    let id = headers("webhook-id").ok_or(SignatureError::MissingHeader("webhook-id"))?;
    let ts_raw =
        headers("webhook-timestamp").ok_or(SignatureError::MissingHeader("webhook-timestamp"))?;
    let sigs =
        headers("webhook-signature").ok_or(SignatureError::MissingHeader("webhook-signature"))?;
    if id.is_empty() || id.len() > 256 || id.contains('.') {
        return Err(SignatureError::Malformed("webhook-id"));
    }
    let ts = parse_ts(&ts_raw, "webhook-timestamp")?;
    check_timestamp(ts, now_secs)?;
    let ts_text = ts.to_string();
    let expected = mac(&key, &[id.as_bytes(), b".", ts_text.as_bytes(), b".", body])?;
    let mut any_v1 = false;
    let mut ok = false;
    for item in sigs.split_whitespace().take(MAX_CANDIDATES) {
        let Some(b64) = item.strip_prefix("v1,") else {
            continue;
        };
        any_v1 = true;
        if let Ok(candidate) = STANDARD.decode(b64) {
            // Keep comparing after a match: time does not depend on which one matched.
            ok |= matches(&expected, &candidate);
        }
    }
    if !any_v1 {
        return Err(SignatureError::Malformed("webhook-signature"));
    }
    if ok {
        Ok(VerifiedDelivery {
            delivery_id: Some(id),
        })
    } else {
        Err(SignatureError::Mismatch)
    }
}

fn verify_stripe(
    secret: &SecretString,
    headers: &dyn Fn(&str) -> Option<String>,
    body: &[u8],
    now_secs: i64,
) -> Result<VerifiedDelivery, SignatureError> {
    const H: &str = "stripe-signature";
    let header = headers(H).ok_or(SignatureError::MissingHeader(H))?;
    let mut ts = None;
    let mut candidates = Vec::new();
    for part in header.split(',') {
        let (k, v) = part
            .trim()
            .split_once('=')
            .ok_or(SignatureError::Malformed(H))?;
        match k {
            "t" if ts.is_none() => ts = Some(parse_ts(v, H)?),
            "t" => return Err(SignatureError::Malformed(H)),
            "v1" if candidates.len() < MAX_CANDIDATES => candidates.push(v),
            _ => {}
        }
    }
    let ts = ts.ok_or(SignatureError::Malformed(H))?;
    if candidates.is_empty() {
        return Err(SignatureError::Malformed(H));
    }
    check_timestamp(ts, now_secs)?;
    let ts_text = ts.to_string();
    let expected = mac(
        secret.expose().as_bytes(),
        &[ts_text.as_bytes(), b".", body],
    )?;
    let mut ok = false;
    for c in candidates {
        if let Ok(candidate) = hex::decode(c) {
            ok |= matches(&expected, &candidate);
        }
    }
    if !ok {
        return Err(SignatureError::Mismatch);
    }
    // The event id de-duplicates retries; read only after the body is authentic.
    let delivery_id = serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get("id").and_then(|i| i.as_str()).map(str::to_owned));
    Ok(VerifiedDelivery { delivery_id })
}

fn verify_github(
    secret: &SecretString,
    headers: &dyn Fn(&str) -> Option<String>,
    body: &[u8],
) -> Result<VerifiedDelivery, SignatureError> {
    const H: &str = "x-hub-signature-256";
    let header = headers(H).ok_or(SignatureError::MissingHeader(H))?;
    let hex_sig = header
        .trim()
        .strip_prefix("sha256=")
        .ok_or(SignatureError::Malformed(H))?;
    let candidate = hex::decode(hex_sig).map_err(|_| SignatureError::Malformed(H))?;
    let expected = mac(secret.expose().as_bytes(), &[body])?;
    if !matches(&expected, &candidate) {
        return Err(SignatureError::Mismatch);
    }
    Ok(VerifiedDelivery {
        delivery_id: headers("x-github-delivery").filter(|d| !d.is_empty()),
    })
}

fn verify_generic(
    cfg: &SignatureConfig,
    secret: &SecretString,
    headers: &dyn Fn(&str) -> Option<String>,
    body: &[u8],
) -> Result<VerifiedDelivery, SignatureError> {
    const H: &str = "signature header";
    let name = cfg.header.to_ascii_lowercase();
    let header = headers(&name).ok_or(SignatureError::MissingHeader(H))?;
    let encoded = header
        .trim()
        .strip_prefix(cfg.prefix.as_str())
        .ok_or(SignatureError::Malformed(H))?;
    let candidate = match cfg.encoding {
        SignatureEncoding::Hex => hex::decode(encoded).ok(),
        SignatureEncoding::Base64 => STANDARD.decode(encoded).ok(),
    }
    .ok_or(SignatureError::Malformed(H))?;
    let expected = mac(secret.expose().as_bytes(), &[body])?;
    if !matches(&expected, &candidate) {
        return Err(SignatureError::Mismatch);
    }
    Ok(VerifiedDelivery { delivery_id: None })
}

/// `webhook-signature` value (`v1,<base64>`) for a Standard Webhooks delivery.
pub fn sign_standard_webhooks(
    secret: &SecretString,
    msg_id: &str,
    timestamp: i64,
    body: &[u8],
) -> Result<String, SignatureError> {
    let key = standard_webhooks_key(secret.expose())?;
    let ts = timestamp.to_string();
    let sig = mac(&key, &[msg_id.as_bytes(), b".", ts.as_bytes(), b".", body])?;
    Ok(format!("v1,{}", STANDARD.encode(sig)))
}

/// `Stripe-Signature` value (`t=<ts>,v1=<hex>`).
pub fn sign_stripe(
    secret: &SecretString,
    timestamp: i64,
    body: &[u8],
) -> Result<String, SignatureError> {
    let ts = timestamp.to_string();
    let sig = mac(secret.expose().as_bytes(), &[ts.as_bytes(), b".", body])?;
    Ok(format!("t={ts},v1={}", hex::encode(sig)))
}

/// `X-Hub-Signature-256` value (`sha256=<hex>`).
pub fn sign_github(secret: &SecretString, body: &[u8]) -> Result<String, SignatureError> {
    let sig = mac(secret.expose().as_bytes(), &[body])?;
    Ok(format!("sha256={}", hex::encode(sig)))
}

/// Header value for the generic scheme: prefix + hex or base64 HMAC-SHA256 of the body.
pub fn sign_hmac_sha256(
    cfg: &SignatureConfig,
    secret: &SecretString,
    body: &[u8],
) -> Result<String, SignatureError> {
    let sig = mac(secret.expose().as_bytes(), &[body])?;
    let enc = match cfg.encoding {
        SignatureEncoding::Hex => hex::encode(sig),
        SignatureEncoding::Base64 => STANDARD.encode(sig),
    };
    Ok(format!("{}{enc}", cfg.prefix))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn cfg(scheme: SignatureScheme) -> SignatureConfig {
        SignatureConfig {
            scheme,
            secret: "S".into(),
            header: "x-signature".into(),
            encoding: SignatureEncoding::Hex,
            prefix: String::new(),
        }
    }

    fn hdrs(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name: &str| map.get(name).cloned()
    }

    // Official vector from standard-webhooks/standard-webhooks (libraries' tests).
    const SW_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const SW_ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const SW_TS: i64 = 1_614_265_330;
    const SW_BODY: &[u8] = br#"{"test": 2432232314}"#;
    const SW_SIG: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

    fn sw(sig: &str, body: &[u8], now: i64) -> Result<VerifiedDelivery, SignatureError> {
        let ts = SW_TS.to_string();
        let h = hdrs(&[
            ("webhook-id", SW_ID),
            ("webhook-timestamp", &ts),
            ("webhook-signature", sig),
        ]);
        verify_signature(
            &cfg(SignatureScheme::StandardWebhooks),
            &SecretString::new(SW_SECRET),
            &h,
            body,
            now,
        )
    }

    #[test]
    fn standard_webhooks_official_vector() {
        let secret = SecretString::new(SW_SECRET);
        assert_eq!(
            sign_standard_webhooks(&secret, SW_ID, SW_TS, SW_BODY).unwrap(),
            SW_SIG
        );
        let d = sw(SW_SIG, SW_BODY, SW_TS).unwrap();
        assert_eq!(d.delivery_id.as_deref(), Some(SW_ID));
    }

    #[test]
    fn standard_webhooks_failures() {
        let mut body = SW_BODY.to_vec();
        body[3] ^= 1;
        assert_eq!(sw(SW_SIG, &body, SW_TS), Err(SignatureError::Mismatch));
        assert!(sw(SW_SIG, SW_BODY, SW_TS + 300).is_ok());
        assert!(sw(SW_SIG, SW_BODY, SW_TS - 300).is_ok());
        assert_eq!(
            sw(SW_SIG, SW_BODY, SW_TS + 301),
            Err(SignatureError::TimestampOutOfTolerance)
        );
        assert_eq!(
            sw(SW_SIG, SW_BODY, SW_TS - 301),
            Err(SignatureError::TimestampOutOfTolerance)
        );
        // Rotation: several signatures, only the second matches.
        let other = sign_standard_webhooks(
            &SecretString::new("whsec_b2xkIHNlY3JldCBmb3Igcm90YXRpb24="),
            SW_ID,
            SW_TS,
            SW_BODY,
        )
        .unwrap();
        assert_ne!(other, SW_SIG);
        assert!(sw(&format!("{other} {SW_SIG}"), SW_BODY, SW_TS).is_ok());
        assert_eq!(
            sw(&format!("{other} v1a,xyz"), SW_BODY, SW_TS),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            sw("v2,abc", SW_BODY, SW_TS),
            Err(SignatureError::Malformed("webhook-signature"))
        );
        // Wrong secret.
        let h = hdrs(&[
            ("webhook-id", SW_ID),
            ("webhook-timestamp", "1614265330"),
            ("webhook-signature", SW_SIG),
        ]);
        assert_eq!(
            verify_signature(
                &cfg(SignatureScheme::StandardWebhooks),
                &SecretString::new("whsec_b2xkIHNlY3JldCBmb3Igcm90YXRpb24="),
                &h,
                SW_BODY,
                SW_TS
            ),
            Err(SignatureError::Mismatch)
        );
        // Missing header, malformed timestamp.
        let h = hdrs(&[("webhook-id", SW_ID), ("webhook-signature", SW_SIG)]);
        let c = cfg(SignatureScheme::StandardWebhooks);
        let s = SecretString::new(SW_SECRET);
        assert_eq!(
            verify_signature(&c, &s, &h, SW_BODY, SW_TS),
            Err(SignatureError::MissingHeader("webhook-timestamp"))
        );
        let h = hdrs(&[
            ("webhook-id", SW_ID),
            ("webhook-timestamp", "-5"),
            ("webhook-signature", SW_SIG),
        ]);
        assert_eq!(
            verify_signature(&c, &s, &h, SW_BODY, SW_TS),
            Err(SignatureError::Malformed("webhook-timestamp"))
        );
        // A broken stored secret is the operator's fault.
        assert!(matches!(
            verify_signature(&c, &SecretString::new("whsec_!!!"), &h, SW_BODY, SW_TS),
            Err(SignatureError::InvalidSecret(_))
        ));
    }

    #[test]
    fn github_documented_example() {
        let secret = SecretString::new("It's a Secret to Everybody");
        let sig = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
        assert_eq!(sign_github(&secret, b"Hello, World!").unwrap(), sig);
        let h = hdrs(&[("x-hub-signature-256", sig), ("x-github-delivery", "d-1")]);
        let c = cfg(SignatureScheme::Github);
        let d = verify_signature(&c, &secret, &h, b"Hello, World!", 0).unwrap();
        assert_eq!(d.delivery_id.as_deref(), Some("d-1"));
        assert_eq!(
            verify_signature(&c, &secret, &h, b"Hello, World?", 0),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify_signature(&c, &SecretString::new("nope"), &h, b"Hello, World!", 0),
            Err(SignatureError::Mismatch)
        );
        let h = hdrs(&[("x-hub-signature-256", "sha1=abc")]);
        assert_eq!(
            verify_signature(&c, &secret, &h, b"Hello, World!", 0),
            Err(SignatureError::Malformed("x-hub-signature-256"))
        );
        assert_eq!(
            verify_signature(&c, &secret, &hdrs(&[]), b"Hello, World!", 0),
            Err(SignatureError::MissingHeader("x-hub-signature-256"))
        );
    }

    #[test]
    fn stripe_scheme() {
        let secret = SecretString::new("whsec_test_secret");
        let body = br#"{"id":"evt_123","type":"invoice.paid"}"#;
        let t = 1_700_000_000;
        let header = sign_stripe(&secret, t, body).unwrap();
        assert!(header.starts_with("t=1700000000,v1="));
        let c = cfg(SignatureScheme::Stripe);
        let run = |h: &str, body: &[u8], now: i64| {
            verify_signature(&c, &secret, &hdrs(&[("stripe-signature", h)]), body, now)
        };
        let d = run(&header, body, t).unwrap();
        assert_eq!(d.delivery_id.as_deref(), Some("evt_123"));
        // Rotation: an old v1 first, the right one second; v0 ignored.
        let v1 = header.split_once(",v1=").unwrap().1;
        let rotated = format!("t={t},v1={},v0=dead,v1={v1}", "ab".repeat(32));
        assert!(run(&rotated, body, t).is_ok());
        let mut tampered = body.to_vec();
        tampered[8] = b'4';
        assert_eq!(run(&header, &tampered, t), Err(SignatureError::Mismatch));
        assert_eq!(
            run(&header, body, t + 301),
            Err(SignatureError::TimestampOutOfTolerance)
        );
        assert_eq!(
            run(&header, body, t - 301),
            Err(SignatureError::TimestampOutOfTolerance)
        );
        assert_eq!(
            run(&format!("v1={v1}"), body, t),
            Err(SignatureError::Malformed("stripe-signature"))
        );
        assert_eq!(
            run(&format!("t={t}"), body, t),
            Err(SignatureError::Malformed("stripe-signature"))
        );
        // The secret is used as its UTF-8 bytes, prefix included: not base64-decoded.
        let other = SecretString::new("test_secret");
        assert_eq!(
            verify_signature(&c, &other, &hdrs(&[("stripe-signature", &header)]), body, t),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn generic_hmac_hex_and_base64_with_prefix() {
        let secret = SecretString::new("k");
        let mut c = cfg(SignatureScheme::HmacSha256);
        c.header = "x-partner-signature".into();
        c.prefix = "sha256=".into();
        let sig = sign_hmac_sha256(&c, &secret, b"body").unwrap();
        assert!(sig.starts_with("sha256="));
        let ok = verify_signature(
            &c,
            &secret,
            &hdrs(&[("x-partner-signature", &sig)]),
            b"body",
            0,
        );
        assert_eq!(ok, Ok(VerifiedDelivery::default()));
        assert_eq!(
            verify_signature(
                &c,
                &secret,
                &hdrs(&[("x-partner-signature", &sig)]),
                b"bodY",
                0
            ),
            Err(SignatureError::Mismatch)
        );
        let no_prefix = sig.trim_start_matches("sha256=").to_string();
        assert_eq!(
            verify_signature(
                &c,
                &secret,
                &hdrs(&[("x-partner-signature", &no_prefix)]),
                b"body",
                0
            ),
            Err(SignatureError::Malformed("signature header"))
        );
        c.encoding = SignatureEncoding::Base64;
        c.prefix = String::new();
        let sig64 = sign_hmac_sha256(&c, &secret, b"body").unwrap();
        assert!(verify_signature(
            &c,
            &secret,
            &hdrs(&[("x-partner-signature", &sig64)]),
            b"body",
            0
        )
        .is_ok());
        assert_eq!(
            verify_signature(&c, &secret, &hdrs(&[]), b"body", 0),
            Err(SignatureError::MissingHeader("signature header"))
        );
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod props {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Arbitrary header values never panic and never verify.
        #[test]
        fn arbitrary_headers_never_verify(v in ".{0,200}", ts in ".{0,20}", body in proptest::collection::vec(any::<u8>(), 0..64)) {
            let secret = SecretString::new("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw");
            for scheme in [SignatureScheme::StandardWebhooks, SignatureScheme::Stripe, SignatureScheme::Github, SignatureScheme::HmacSha256] {
                let cfg = SignatureConfig {
                    scheme,
                    secret: "S".into(),
                    header: "x-signature".into(),
                    encoding: SignatureEncoding::Base64,
                    prefix: String::new(),
                };
                let h = |name: &str| match name {
                    "webhook-timestamp" => Some(ts.clone()),
                    "webhook-id" => Some("msg_1".to_string()),
                    _ => Some(v.clone()),
                };
                prop_assert!(verify_signature(&cfg, &secret, &h, &body, 1_614_265_330).is_err());
            }
        }

        /// Signing then verifying round-trips for any body and timestamp.
        #[test]
        fn sign_verify_round_trip(body in proptest::collection::vec(any::<u8>(), 0..256), ts in 0i64..4_000_000_000) {
            let s = SecretString::new("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw");
            let sig = sign_standard_webhooks(&s, "msg_x", ts, &body).unwrap();
            let tss = ts.to_string();
            let h = |name: &str| match name {
                "webhook-id" => Some("msg_x".to_string()),
                "webhook-timestamp" => Some(tss.clone()),
                "webhook-signature" => Some(sig.clone()),
                _ => None,
            };
            let cfg = SignatureConfig {
                scheme: SignatureScheme::StandardWebhooks,
                secret: "S".into(),
                header: String::new(),
                encoding: SignatureEncoding::Hex,
                prefix: String::new(),
            };
            prop_assert!(verify_signature(&cfg, &s, &h, &body, ts).is_ok());
            let stripe = sign_stripe(&s, ts, &body).unwrap();
            let cfg = SignatureConfig { scheme: SignatureScheme::Stripe, ..cfg };
            let h = |name: &str| (name == "stripe-signature").then(|| stripe.clone());
            prop_assert!(verify_signature(&cfg, &s, &h, &body, ts).is_ok());
        }
    }
}
