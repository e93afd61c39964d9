//! Inbound security over HTTP (issue 5): API keys, OAuth2 bearer JWTs against
//! a local JWKS server, webhook signatures made by independent implementations
//! (the `standardwebhooks` and `stripe` PyPI packages), rate limits, input
//! validation, the audit log, and no credential or secret anywhere it should
//! not be.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use common::{runs_of, send, Res, Server};
use flowgate_core::SecretString;
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::header::HeaderValue;
use reqwest::Method;
use serde_json::{json, Value};
use std::process::Command;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

// ---------------------------------------------------------------- helpers

/// A package with one http trigger and the given `[auth]` block.
fn flow(name: &str, mode: &str, scopes: &[&str], script: &str, extra: &str) -> Value {
    json!({
        "flow.toml": format!(
            "name = \"{name}\"\n\n[[trigger]]\nkind = \"http\"\n\n[auth]\nmode = \"{mode}\"\nscopes = {}\n{extra}",
            serde_json::to_string(scopes).unwrap()
        ),
        "main.rhai": script,
    })
}

/// A package with one async webhook trigger verified by `scheme`.
fn webhook_flow(name: &str, scheme: &str, secret: &str) -> Value {
    json!({
        "flow.toml": format!(
            "name = \"{name}\"\n\n[[trigger]]\nkind = \"webhook\"\nsignature = {{ scheme = \"{scheme}\", secret = \"{secret}\" }}\n"
        ),
        "main.rhai": "log::info(\"delivery received\"); #{ ok: true }",
    })
}

const CALLER_SCRIPT: &str = "#{ kind: caller.kind, id: caller.id, scopes: caller.scopes }";

/// POST `{}` to a flow with an optional bearer.
async fn call_bearer(s: &Server, path: &str, bearer: Option<&str>) -> Res {
    let mut req = s.request(Method::POST, path).json(&json!({}));
    if let Some(b) = bearer {
        req = req.bearer_auth(b);
    }
    send(req).await
}

/// A 401 with a Bearer challenge and a problem body.
fn assert_401(r: &Res, what: &str) {
    assert_eq!(r.status, 401, "{what}: {:?}", r.body);
    let www = r
        .h("www-authenticate")
        .unwrap_or_else(|| panic!("{what}: no WWW-Authenticate"));
    assert!(www.starts_with("Bearer"), "{what}: {www}");
    assert!(
        r.h("content-type")
            .is_some_and(|c| c.starts_with("application/problem+json")),
        "{what}: not problem+json"
    );
    assert_eq!(r.body["status"], 401, "{what}");
}

/// A 401 naming `invalid_token` (rejected, not missing, credentials).
fn assert_invalid_token(r: &Res, what: &str) {
    assert_401(r, what);
    let www = r.h("www-authenticate").unwrap_or("");
    assert!(www.contains("error=\"invalid_token\""), "{what}: {www}");
}

fn assert_403_scope(r: &Res, scope: &str, what: &str) {
    assert_eq!(r.status, 403, "{what}: {:?}", r.body);
    assert!(
        r.body.to_string().contains(scope),
        "{what}: the 403 does not name `{scope}`: {}",
        r.body
    );
}

async fn create_key(s: &Server, scopes: &[&str], expires_at: Option<String>) -> (String, String) {
    let mut body = json!({"name": "sec-test", "scopes": scopes});
    if let Some(e) = expires_at {
        body["expires_at"] = Value::String(e);
    }
    let (st, v) = s.admin(Method::POST, "/admin/v1/keys", Some(body)).await;
    assert_eq!(st, 201, "{v}");
    (
        v["id"].as_str().unwrap().to_owned(),
        v["key"].as_str().unwrap().to_owned(),
    )
}

async fn put_secret(s: &Server, name: &str, value: &str) {
    let (st, v) = s
        .admin(
            Method::PUT,
            &format!("/admin/v1/secrets/{name}"),
            Some(json!({"value": value})),
        )
        .await;
    assert_eq!(st, 204, "put secret: {v}");
}

fn now_secs() -> i64 {
    chrono::Utc::now().timestamp()
}

/// A well-formed key (`fgk_<16 hex>_<43 base64url>`) that was never issued.
fn bogus_key(id: &str) -> String {
    format!("fgk_{id}_{}", URL_SAFE_NO_PAD.encode([7u8; 32]))
}

// ---------------------------------------------------------------- API keys

#[tokio::test]
async fn api_keys_are_enforced() {
    let s = Server::start().await;
    s.deploy(
        "keyed",
        flow("keyed", "api_key", &["billing:write"], CALLER_SCRIPT, ""),
    )
    .await;
    let (id, key) = create_key(&s, &["billing:write"], None).await;
    let (_, reader) = create_key(&s, &["billing:read"], None).await;

    // Accepted: Bearer and X-API-Key.
    let r = call_bearer(&s, "/flows/keyed", Some(&key)).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["kind"], "api_key");
    assert_eq!(r.body["id"], id);
    let r = send(
        s.request(Method::POST, "/flows/keyed")
            .header("x-api-key", &key)
            .json(&json!({})),
    )
    .await;
    assert_eq!(r.status, 200, "X-API-Key: {:?}", r.body);

    // Missing: the bare challenge.
    let r = call_bearer(&s, "/flows/keyed", None).await;
    assert_401(&r, "missing");
    assert!(!r.h("www-authenticate").unwrap().contains("invalid_token"));

    // Never from the query string.
    for q in ["api_key", "key", "access_token", "apikey"] {
        let r = send(
            s.request(Method::POST, &format!("/flows/keyed?{q}={key}"))
                .json(&json!({})),
        )
        .await;
        assert_401(&r, &format!("key in ?{q}="));
    }

    // Malformed, unknown, wrong secret, and a non-bearer scheme.
    assert_invalid_token(
        &call_bearer(&s, "/flows/keyed", Some("fgk_nothex_short")).await,
        "malformed",
    );
    assert_invalid_token(
        &call_bearer(&s, "/flows/keyed", Some(&bogus_key("0123456789abcdef"))).await,
        "unknown",
    );
    assert_invalid_token(
        &call_bearer(&s, "/flows/keyed", Some(&bogus_key(&id))).await,
        "wrong secret",
    );
    let r = send(
        s.request(Method::POST, "/flows/keyed")
            .header("authorization", format!("Basic {key}"))
            .json(&json!({})),
    )
    .await;
    assert_eq!(r.status, 401, "Basic scheme: {:?}", r.body);

    // Valid but lacking the scope: 403 naming it.
    let r = call_bearer(&s, "/flows/keyed", Some(&reader)).await;
    assert_403_scope(&r, "billing:write", "lacking scope");

    // Admin endpoints refuse a flow-only key.
    for (m, p) in [
        (Method::GET, "/admin/v1/flows"),
        (Method::GET, "/admin/v1/keys"),
        (Method::GET, "/admin/v1/audit"),
        (Method::GET, "/admin/v1/secrets"),
    ] {
        let r = send(s.request(m, p).bearer_auth(&key)).await;
        assert_eq!(r.status, 403, "{p} with a flow key: {:?}", r.body);
    }
    let r = send(
        s.request(Method::POST, "/admin/v1/keys")
            .bearer_auth(&key)
            .json(&json!({"name": "escalate", "scopes": ["admin"]})),
    )
    .await;
    assert_eq!(r.status, 403, "minting a key with a flow key: {:?}", r.body);
    let r = send(s.request(Method::GET, "/admin/v1/flows")).await;
    assert_401(&r, "admin without credentials");

    // Revoked: effective immediately, although the key is in the cache.
    let (rid, rkey) = create_key(&s, &["billing:write"], None).await;
    assert_eq!(
        call_bearer(&s, "/flows/keyed", Some(&rkey)).await.status,
        200
    );
    let (st, v) = s
        .admin(Method::DELETE, &format!("/admin/v1/keys/{rid}"), None)
        .await;
    assert!(st == 204 || st == 200, "revoke: {st} {v}");
    assert_invalid_token(
        &call_bearer(&s, "/flows/keyed", Some(&rkey)).await,
        "revoked",
    );
    let (_, listed) = s.admin(Method::GET, "/admin/v1/keys", None).await;
    let item = listed["items"]
        .as_array()
        .or(listed.as_array())
        .and_then(|a| a.iter().find(|k| k["id"] == rid).cloned())
        .expect("revoked key listed");
    assert_eq!(item["revoked"], true, "{item}");
    assert!(item.get("key").is_none() && item.get("hash").is_none());
    assert!(!listed.to_string().contains(&rkey[21..]));

    // Expired: works until expires_at, then 401.
    let exp = chrono::Utc::now() + chrono::Duration::seconds(3);
    let (_, ekey) = create_key(
        &s,
        &["billing:write"],
        Some(exp.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
    )
    .await;
    let r = call_bearer(&s, "/flows/keyed", Some(&ekey)).await;
    if chrono::Utc::now() < exp {
        assert_eq!(r.status, 200, "before expiry: {:?}", r.body);
    }
    tokio::time::sleep(
        (exp - chrono::Utc::now())
            .to_std()
            .unwrap_or_default()
            .saturating_add(Duration::from_millis(1_200)),
    )
    .await;
    assert_invalid_token(
        &call_bearer(&s, "/flows/keyed", Some(&ekey)).await,
        "expired",
    );

    // The good key still works after all these failures.
    assert_eq!(
        call_bearer(&s, "/flows/keyed", Some(&key)).await.status,
        200
    );
}

// ---------------------------------------------------------------- OAuth2 / JWKS

const ISS: &str = "https://idp.example.test";
const AUD: &str = "flowgate-api";
use flowgate_auth::test_keys::{JwksServer, RSA2_PRIVATE, RSA_PRIVATE, RSA_PUBLIC};

fn rsa() -> EncodingKey {
    EncodingKey::from_rsa_pem(RSA_PRIVATE.as_bytes()).unwrap()
}
fn rsa2() -> EncodingKey {
    EncodingKey::from_rsa_pem(RSA2_PRIVATE.as_bytes()).unwrap()
}

fn jwk(enc: &EncodingKey, kid: &str) -> Jwk {
    let mut j = Jwk::from_encoding_key(enc, Algorithm::RS256).unwrap();
    j.common.key_id = Some(kid.to_owned());
    j
}

fn jwks(keys: Vec<Jwk>) -> String {
    serde_json::to_string(&JwkSet { keys }).unwrap()
}

/// A tiny JWKS server on 127.0.0.1:0 that counts its hits.
async fn jwks_server(body: String) -> JwksServer {
    flowgate_auth::test_keys::jwks_server(body).await.unwrap()
}

fn claims(scope: &str) -> Value {
    json!({
        "iss": ISS, "aud": AUD, "sub": "partner-7", "client_id": "partner-7",
        "iat": now_secs(), "exp": now_secs() + 600, "scope": scope,
    })
}

fn at_header(kid: &str) -> Header {
    let mut h = Header::new(Algorithm::RS256);
    h.kid = Some(kid.to_owned());
    h.typ = Some("at+jwt".to_owned());
    h
}

fn sign(h: &Header, c: &Value, key: &EncodingKey) -> String {
    jsonwebtoken::encode(h, c, key).unwrap()
}

fn b64json(v: &Value) -> String {
    URL_SAFE_NO_PAD.encode(v.to_string())
}

async fn oauth2_server(jwks_url: &str, require_at_jwt: bool, logged: bool) -> Server {
    let env = [
        ("FLOWGATE_OAUTH2_ISSUER", ISS),
        ("FLOWGATE_OAUTH2_JWKS_URL", jwks_url),
        ("FLOWGATE_OAUTH2_AUDIENCE", AUD),
        ("FLOWGATE_OAUTH2_JWKS_MIN_REFETCH_SECS", "3"),
        (
            "FLOWGATE_OAUTH2_REQUIRE_AT_JWT",
            if require_at_jwt { "true" } else { "false" },
        ),
        (
            "FLOWGATE_LOG",
            "info,flowgate=debug,flowgate_gateway=debug,flowgate_engine=debug,flowgate_auth=debug,flowgate_script=debug",
        ),
    ];
    if logged {
        Server::start_logged(None, &env).await
    } else {
        Server::start_with(None, &env).await
    }
}

#[tokio::test]
async fn oauth2_bearer_tokens() {
    let idp = jwks_server(jwks(vec![jwk(&rsa(), "rsa1")])).await;
    let evil = jwks_server(jwks(vec![jwk(&rsa2(), "attacker")])).await;
    let s = oauth2_server(&idp.url, true, false).await;
    s.deploy(
        "oa",
        flow("oa", "oauth2", &["billing:write"], CALLER_SCRIPT, ""),
    )
    .await;
    s.deploy(
        "either",
        flow("either", "any", &["billing:write"], CALLER_SCRIPT, ""),
    )
    .await;
    let good_claims = claims("billing:read billing:write");

    // Valid.
    let good = sign(&at_header("rsa1"), &good_claims, &rsa());
    let r = call_bearer(&s, "/flows/oa", Some(&good)).await;
    assert_eq!(r.status, 200, "valid token: {:?}", r.body);
    assert_eq!(r.body["kind"], "oauth2");
    assert_eq!(r.body["id"], "partner-7");
    let r = call_bearer(&s, "/flows/either", Some(&good)).await;
    assert_eq!(r.status, 200, "valid token on an `any` flow: {:?}", r.body);
    // `scp` as an array works too.
    let mut scp = good_claims.clone();
    scp.as_object_mut().unwrap().remove("scope");
    scp["scp"] = json!(["billing:write"]);
    let r = call_bearer(
        &s,
        "/flows/oa",
        Some(&sign(&at_header("rsa1"), &scp, &rsa())),
    )
    .await;
    assert_eq!(r.status, 200, "scp claim: {:?}", r.body);
    let hits_after_valid = idp.hits.load(Ordering::SeqCst);
    assert_eq!(hits_after_valid, 1, "the JWKS is fetched once and cached");

    let mut cases: Vec<(&str, String)> = Vec::new();
    let with = |k: &str, v: Value| {
        let mut c = good_claims.clone();
        c[k] = v;
        c
    };
    cases.push((
        "expired",
        sign(
            &at_header("rsa1"),
            &with("exp", json!(now_secs() - 3_600)),
            &rsa(),
        ),
    ));
    cases.push((
        "not yet valid",
        sign(
            &at_header("rsa1"),
            &with("nbf", json!(now_secs() + 3_600)),
            &rsa(),
        ),
    ));
    cases.push((
        "wrong iss",
        sign(
            &at_header("rsa1"),
            &with("iss", json!("https://evil.example.test")),
            &rsa(),
        ),
    ));
    cases.push((
        "iss with a trailing slash",
        sign(
            &at_header("rsa1"),
            &with("iss", json!(format!("{ISS}/"))),
            &rsa(),
        ),
    ));
    cases.push((
        "wrong aud",
        sign(
            &at_header("rsa1"),
            &with("aud", json!("someone-else")),
            &rsa(),
        ),
    ));
    cases.push((
        "alg none",
        format!(
            "{}.{}.",
            b64json(&json!({"alg": "none", "typ": "at+jwt", "kid": "rsa1"})),
            b64json(&good_claims)
        ),
    ));
    let mut hs = Header::new(Algorithm::HS256);
    hs.kid = Some("rsa1".into());
    hs.typ = Some("at+jwt".into());
    cases.push((
        "HS256 with the RSA public key",
        sign(
            &hs,
            &good_claims,
            &EncodingKey::from_secret(RSA_PUBLIC.as_bytes()).unwrap(),
        ),
    ));
    let mut jku = at_header("attacker");
    jku.jku = Some(evil.url.clone());
    cases.push(("jku elsewhere", sign(&jku, &good_claims, &rsa2())));
    let mut plain = at_header("rsa1");
    plain.typ = Some("JWT".into());
    cases.push((
        "typ JWT while at+jwt is required",
        sign(&plain, &good_claims, &rsa()),
    ));
    let parts: Vec<&str> = good.split('.').collect();
    cases.push((
        "tampered payload",
        format!(
            "{}.{}.{}",
            parts[0],
            b64json(&with("scope", json!("admin billing:write"))),
            parts[2]
        ),
    ));
    cases.push((
        "signed by an unknown key under a known kid",
        sign(&at_header("rsa1"), &good_claims, &rsa2()),
    ));
    for (what, token) in &cases {
        for path in ["/flows/oa", "/flows/either"] {
            let r = call_bearer(&s, path, Some(token)).await;
            assert_invalid_token(&r, &format!("{what} on {path}"));
        }
    }
    assert_eq!(
        evil.hits.load(Ordering::SeqCst),
        0,
        "a token's jku must never be fetched"
    );

    // Missing scope → 403 naming it.
    let weak = sign(&at_header("rsa1"), &claims("billing:read"), &rsa());
    let r = call_bearer(&s, "/flows/oa", Some(&weak)).await;
    assert_403_scope(&r, "billing:write", "token without the scope");

    // API keys on an oauth2 flow, tokens on an api_key flow.
    let key = s.key(&["billing:write"]).await;
    assert_invalid_token(
        &call_bearer(&s, "/flows/oa", Some(&key)).await,
        "API key on an oauth2 flow",
    );
    assert_eq!(
        call_bearer(&s, "/flows/either", Some(&key)).await.status,
        200,
        "API key on an `any` flow"
    );
    s.deploy(
        "keyonly",
        flow("keyonly", "api_key", &["billing:write"], CALLER_SCRIPT, ""),
    )
    .await;
    assert_eq!(
        call_bearer(&s, "/flows/keyonly", Some(&good)).await.status,
        401,
        "JWT on an api_key flow"
    );
    // Still valid after all of that.
    assert_eq!(call_bearer(&s, "/flows/oa", Some(&good)).await.status, 200);
}

#[tokio::test]
async fn jwks_unknown_kid_refetches_once_and_rotation_is_picked_up() {
    let idp = jwks_server(jwks(vec![jwk(&rsa(), "rsa1")])).await;
    let s = oauth2_server(&idp.url, false, false).await;
    s.deploy("oa", flow("oa", "oauth2", &[], CALLER_SCRIPT, ""))
        .await;
    let c = claims("billing:read");
    let r = call_bearer(&s, "/flows/oa", Some(&sign(&at_header("rsa1"), &c, &rsa()))).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(idp.hits.load(Ordering::SeqCst), 1);

    // The issuer rotates: rsa2 joins the set. The server's JWKS refetch is
    // rate-limited (3 s in these tests), so wait that out first.
    *idp.body.lock().unwrap() = jwks(vec![jwk(&rsa(), "rsa1"), jwk(&rsa2(), "rsa2")]);
    tokio::time::sleep(Duration::from_secs(4)).await;

    // An unknown kid: exactly one refetch, then 401; a second one does not hammer.
    let ghost = sign(&at_header("ghost"), &c, &rsa2());
    assert_invalid_token(
        &call_bearer(&s, "/flows/oa", Some(&ghost)).await,
        "unknown kid",
    );
    assert_eq!(idp.hits.load(Ordering::SeqCst), 2, "one refetch");
    assert_invalid_token(
        &call_bearer(&s, "/flows/oa", Some(&ghost)).await,
        "unknown kid again",
    );
    assert_eq!(
        idp.hits.load(Ordering::SeqCst),
        2,
        "no refetch storm on unknown kids"
    );

    // The rotated key was picked up by that refetch.
    let r = call_bearer(
        &s,
        "/flows/oa",
        Some(&sign(&at_header("rsa2"), &c, &rsa2())),
    )
    .await;
    assert_eq!(r.status, 200, "rotated key: {:?}", r.body);
    let r = call_bearer(&s, "/flows/oa", Some(&sign(&at_header("rsa1"), &c, &rsa()))).await;
    assert_eq!(r.status, 200, "old key still listed: {:?}", r.body);
}

// ---------------------------------------------------------------- signatures

const SW_PY: &str = r#"
import sys, datetime
from standardwebhooks.webhooks import Webhook
secret, msg_id, ts, body = sys.argv[1:5]
print(Webhook(secret).sign(msg_id, datetime.datetime.fromtimestamp(int(ts), tz=datetime.timezone.utc), body))
"#;

const STRIPE_PY: &str = r#"
import sys, stripe
secret, ts, body = sys.argv[1:4]
print(stripe.WebhookSignature.generate_signature_header(body, secret, timestamp=int(ts)))
"#;

/// Runs `python3 -c script args…`; `None` (with a note) when python or the
/// package is missing.
fn python(script: &str, args: &[&str], package: &str) -> Option<String> {
    let out = Command::new("python3")
        .arg("-c")
        .arg(script)
        .args(args)
        .output();
    match out {
        Ok(o) if o.status.success() => Some(String::from_utf8_lossy(&o.stdout).trim().to_owned()),
        Ok(o) => {
            eprintln!(
                "NOTE: python3 could not sign with `{package}` ({}); falling back to flowgate-auth's signer. \
                 Install it with `python3 -m pip install {package}` for an independent check.",
                String::from_utf8_lossy(&o.stderr).lines().last().unwrap_or("")
            );
            None
        }
        Err(e) => {
            eprintln!("NOTE: python3 is not available ({e}); falling back to flowgate-auth's signer for `{package}`.");
            None
        }
    }
}

/// `webhook-signature` for a Standard Webhooks delivery (independent signer when available).
fn sw_sign(secret: &str, id: &str, ts: i64, body: &str) -> String {
    python(
        SW_PY,
        &[secret, id, ts.to_string().as_str(), body],
        "standardwebhooks",
    )
    .unwrap_or_else(|| {
        flowgate_auth::signature::sign_standard_webhooks(
            &SecretString::new(secret),
            id,
            ts,
            body.as_bytes(),
        )
        .unwrap()
    })
}

/// `Stripe-Signature` (independent signer when available).
fn stripe_sign(secret: &str, ts: i64, body: &str) -> String {
    python(
        STRIPE_PY,
        &[secret, ts.to_string().as_str(), body],
        "stripe",
    )
    .unwrap_or_else(|| {
        flowgate_auth::signature::sign_stripe(&SecretString::new(secret), ts, body.as_bytes())
            .unwrap()
    })
}

async fn deliver(s: &Server, flow: &str, headers: &[(&str, String)], body: &str) -> Res {
    let mut req = s
        .request(Method::POST, &format!("/flows/{flow}"))
        .header("content-type", "application/json")
        .body(body.to_owned());
    for (k, v) in headers {
        req = req.header(*k, v);
    }
    send(req).await
}

fn assert_sig_401(r: &Res, what: &str) {
    assert_eq!(r.status, 401, "{what}: {:?}", r.body);
    assert!(r.h("www-authenticate").is_some(), "{what}: no challenge");
}

/// Header name/value pairs of one delivery.
type Headers = Vec<(&'static str, String)>;

const SW_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const SW_OLD_SECRET: &str = "whsec_b2xkIHNlY3JldCBmb3Igcm90YXRpb24=";
const STRIPE_SECRET: &str = "whsec_stripe_test_4f9a0c1b2d3e";

#[tokio::test]
async fn webhook_signatures_end_to_end() {
    let s = Server::start().await;
    s.deploy("sw", webhook_flow("sw", "standard-webhooks", "SW_SECRET"))
        .await;
    s.deploy("st", webhook_flow("st", "stripe", "STRIPE_SECRET"))
        .await;
    s.deploy("gh", webhook_flow("gh", "github", "GH_SECRET"))
        .await;
    put_secret(&s, "SW_SECRET", SW_SECRET).await;
    put_secret(&s, "STRIPE_SECRET", STRIPE_SECRET).await;
    put_secret(&s, "GH_SECRET", "It's a Secret to Everybody").await;

    let body = r#"{"id":"evt_100","type":"invoice.paid","data":{"amount":4200}}"#;
    let tampered = body.replace("4200", "4201");
    let now = now_secs();

    // --- Standard Webhooks: refusals first; the flow must not run.
    let sw = |id: &str, ts: i64, sig: String| {
        vec![
            ("webhook-id", id.to_owned()),
            ("webhook-timestamp", ts.to_string()),
            ("webhook-signature", sig),
        ]
    };
    let good_sig = sw_sign(SW_SECRET, "msg_1", now, body);
    let refusals: Vec<(&str, Headers, String)> = vec![
        (
            "one changed body byte",
            sw("msg_1", now, good_sig.clone()),
            tampered.clone(),
        ),
        (
            "timestamp 301 s old",
            sw(
                "msg_1",
                now - 301,
                sw_sign(SW_SECRET, "msg_1", now - 301, body),
            ),
            body.to_owned(),
        ),
        (
            "wrong secret",
            sw("msg_1", now, sw_sign(SW_OLD_SECRET, "msg_1", now, body)),
            body.to_owned(),
        ),
        (
            "missing signature header",
            sw("msg_1", now, good_sig.clone())[..2].to_vec(),
            body.to_owned(),
        ),
        ("no headers at all", vec![], body.to_owned()),
    ];
    for (what, headers, b) in &refusals {
        assert_sig_401(&deliver(&s, "sw", headers, b).await, what);
    }
    // +302 signed just before sending: the server reads its clock a moment
    // later, so it sees at least 301 s.
    let ahead = now_secs() + 302;
    let headers = sw("msg_1", ahead, sw_sign(SW_SECRET, "msg_1", ahead, body));
    assert_sig_401(
        &deliver(&s, "sw", &headers, body).await,
        "timestamp 301 s ahead",
    );
    // --- Stripe refusals.
    let st_good = stripe_sign(STRIPE_SECRET, now, body);
    for (what, header, b) in [
        ("stripe: changed byte", st_good.clone(), tampered.clone()),
        (
            "stripe: 301 s old",
            stripe_sign(STRIPE_SECRET, now - 301, body),
            body.to_owned(),
        ),
        (
            "stripe: wrong secret",
            stripe_sign("whsec_other", now, body),
            body.to_owned(),
        ),
    ] {
        assert_sig_401(
            &deliver(&s, "st", &[("stripe-signature", header)], &b).await,
            what,
        );
    }
    let header = stripe_sign(STRIPE_SECRET, now_secs() + 302, body);
    assert_sig_401(
        &deliver(&s, "st", &[("stripe-signature", header)], body).await,
        "stripe: 301 s ahead",
    );
    assert_sig_401(&deliver(&s, "st", &[], body).await, "stripe: missing");
    // --- GitHub refusals.
    let gh_example = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
    assert_sig_401(
        &deliver(
            &s,
            "gh",
            &[("x-hub-signature-256", gh_example.to_owned())],
            "Hello, World?",
        )
        .await,
        "github: changed byte",
    );
    assert_sig_401(
        &deliver(&s, "gh", &[], "Hello, World!").await,
        "github: missing",
    );

    tokio::time::sleep(Duration::from_millis(500)).await;
    for f in ["sw", "st", "gh"] {
        assert!(
            runs_of(&s, f).await.is_empty(),
            "a refused delivery ran flow {f}"
        );
    }

    // --- Accepted, signed by the independent implementations.
    let r = deliver(&s, "sw", &sw("msg_1", now, good_sig), body).await;
    assert_eq!(r.status, 202, "standard-webhooks: {:?}", r.body);
    let run = r.body["run_id"].as_str().unwrap().to_owned();
    assert_eq!(
        s.wait_run(&run, Duration::from_secs(20)).await["status"],
        "succeeded"
    );
    // Rotation: old and new signatures side by side (either order).
    let both = format!(
        "{} {}",
        sw_sign(SW_OLD_SECRET, "msg_2", now, body),
        sw_sign(SW_SECRET, "msg_2", now, body)
    );
    let r = deliver(&s, "sw", &sw("msg_2", now, both), body).await;
    assert_eq!(r.status, 202, "rotation: {:?}", r.body);
    let both = format!(
        "{} {}",
        sw_sign(SW_SECRET, "msg_3", now, body),
        sw_sign(SW_OLD_SECRET, "msg_3", now, body)
    );
    assert_eq!(
        deliver(&s, "sw", &sw("msg_3", now, both), body)
            .await
            .status,
        202
    );
    // Within tolerance (298 s) is fine.
    let t = now_secs() - 298;
    let r = deliver(
        &s,
        "sw",
        &sw("msg_4", t, sw_sign(SW_SECRET, "msg_4", t, body)),
        body,
    )
    .await;
    assert_eq!(r.status, 202, "299 s old: {:?}", r.body);

    let r = deliver(&s, "st", &[("stripe-signature", st_good)], body).await;
    assert_eq!(r.status, 202, "stripe: {:?}", r.body);
    // Stripe rotation: two v1 entries.
    let body2 = body.replace("evt_100", "evt_101");
    let old = stripe_sign("whsec_previous", now, &body2);
    let new = stripe_sign(STRIPE_SECRET, now, &body2);
    let v1_new = new.split(",v1=").nth(1).unwrap();
    let r = deliver(
        &s,
        "st",
        &[("stripe-signature", format!("{old},v1={v1_new}"))],
        &body2,
    )
    .await;
    assert_eq!(r.status, 202, "stripe rotation: {:?}", r.body);

    // GitHub's documented example.
    let r = s
        .request(Method::POST, "/flows/gh")
        .header("content-type", "text/plain")
        .header("x-hub-signature-256", gh_example)
        .header("x-github-delivery", "72d3162e-cc78-11e3-81ab-4c9367dc0958")
        .body("Hello, World!");
    let r = send(r).await;
    assert_eq!(r.status, 202, "github example: {:?}", r.body);

    // Runs: exactly the accepted deliveries.
    let start = Instant::now();
    loop {
        let n = (
            runs_of(&s, "sw").await.len(),
            runs_of(&s, "st").await.len(),
            runs_of(&s, "gh").await.len(),
        );
        if n == (4, 2, 1) || start.elapsed() > Duration::from_secs(10) {
            assert_eq!(n, (4, 2, 1), "runs per flow");
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

// ---------------------------------------------------------------- rate limits

#[tokio::test]
async fn rate_limit_per_caller() {
    let s = Server::start().await;
    s.deploy(
        "limited",
        flow(
            "limited",
            "api_key",
            &[],
            "#{ ok: true }",
            "\n[limits]\nrate = \"3/minute\"\n",
        ),
    )
    .await;
    let a = s.key(&["billing:read"]).await;
    let b = s.key(&["billing:read"]).await;
    for i in 0..3 {
        let r = call_bearer(&s, "/flows/limited", Some(&a)).await;
        assert_eq!(r.status, 200, "call {i}: {:?}", r.body);
        assert_eq!(r.h("ratelimit-policy"), Some("\"flow\";q=3;w=60"));
        let rl = r.h("ratelimit").expect("RateLimit header");
        assert!(
            rl.starts_with(&format!("\"flow\";r={};t=", 2 - i)),
            "call {i}: {rl}"
        );
    }
    let r = call_bearer(&s, "/flows/limited", Some(&a)).await;
    assert_eq!(r.status, 429, "{:?}", r.body);
    assert_eq!(r.body["status"], 429);
    let retry: u64 = r
        .h("retry-after")
        .expect("Retry-After")
        .parse()
        .expect("Retry-After in seconds");
    assert!((1..=60).contains(&retry), "Retry-After {retry}");
    assert_eq!(r.h("ratelimit-policy"), Some("\"flow\";q=3;w=60"));
    assert!(r.h("ratelimit").is_some_and(|v| v.contains("r=0")));
    // Another caller is unaffected.
    let r = call_bearer(&s, "/flows/limited", Some(&b)).await;
    assert_eq!(r.status, 200, "other caller: {:?}", r.body);
    assert!(r.h("ratelimit").is_some_and(|v| v.contains("r=2")));
    // A refusal before the caller is known still states the policy.
    let r = call_bearer(&s, "/flows/limited", None).await;
    assert_eq!(r.status, 401, "{:?}", r.body);
    assert_eq!(r.h("ratelimit-policy"), Some("\"flow\";q=3;w=60"));
}

// ---------------------------------------------------------------- validation

const SCHEMA: &str = r#"{
  "type": "object",
  "required": ["amount", "currency"],
  "properties": {
    "amount": {"type": "integer", "minimum": 1},
    "currency": {"type": "string", "enum": ["EUR", "USD"]},
    "note": {"type": "string", "maxLength": 5}
  },
  "additionalProperties": false
}"#;

#[tokio::test]
async fn input_validation() {
    let s = Server::start().await;
    let mut strict = flow(
        "strict",
        "none",
        &[],
        "#{ body: request.body }",
        "\n[limits]\nmax_body_bytes = 1024\n",
    );
    strict["input.schema.json"] = Value::String(SCHEMA.to_owned());
    s.deploy("strict", strict).await;
    s.deploy(
        "loose",
        flow("loose", "none", &[], "#{ body: request.body }", ""),
    )
    .await;
    let post = |path: &str, ct: Option<&str>, body: Vec<u8>| {
        let mut r = s.request(Method::POST, path).body(body);
        if let Some(ct) = ct {
            r = r.header("content-type", ct);
        }
        r
    };
    let problem = |r: &Res, status: u16, what: &str| {
        assert_eq!(r.status, status, "{what}: {:?}", r.body);
        assert!(
            r.h("content-type")
                .is_some_and(|c| c.starts_with("application/problem+json")),
            "{what}: not problem+json"
        );
        assert_eq!(r.body["status"], status, "{what}");
        assert!(r.body["request_id"].is_string(), "{what}: {:?}", r.body);
    };
    let json_ct = Some("application/json");

    let ok = send(post(
        "/flows/strict",
        json_ct,
        br#"{"amount": 5, "currency": "EUR"}"#.to_vec(),
    ))
    .await;
    assert_eq!(ok.status, 200, "{:?}", ok.body);

    // 413.
    let big = format!(
        r#"{{"amount": 5, "currency": "EUR", "note": "{}"}}"#,
        "x".repeat(2000)
    );
    problem(
        &send(post("/flows/strict", json_ct, big.clone().into_bytes())).await,
        413,
        "body over max_body_bytes",
    );

    // 415.
    problem(
        &send(post(
            "/flows/strict",
            Some("text/plain"),
            br#"{"amount": 5, "currency": "EUR"}"#.to_vec(),
        ))
        .await,
        415,
        "text/plain with an input schema",
    );
    problem(
        &send(post("/flows/strict", None, b"amount=5".to_vec())).await,
        415,
        "no content type with an input schema",
    );

    // 400: malformed JSON, with and without a schema.
    problem(
        &send(post("/flows/strict", json_ct, br#"{"amount": "#.to_vec())).await,
        400,
        "malformed JSON (schema)",
    );
    problem(
        &send(post("/flows/loose", json_ct, b"{not json".to_vec())).await,
        400,
        "malformed JSON (no schema)",
    );
    problem(
        &send(post("/flows/loose", json_ct, vec![0xff, 0xfe, b'{'])).await,
        400,
        "binary sent as JSON",
    );
    let r = send(post("/flows/loose", Some("text/plain"), b"hello".to_vec())).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["body"], "hello");

    // 422 with every violation.
    let r = send(post(
        "/flows/strict",
        json_ct,
        br#"{"amount": -5, "currency": "GBP", "note": "far too long", "extra": true}"#.to_vec(),
    ))
    .await;
    problem(&r, 422, "schema violations");
    let errors = r.body["errors"].as_array().expect("errors array").clone();
    let pointers: Vec<&str> = errors
        .iter()
        .map(|e| e["pointer"].as_str().expect("pointer"))
        .collect();
    for e in &errors {
        assert!(e["detail"].as_str().is_some_and(|d| !d.is_empty()), "{e}");
    }
    for p in ["/amount", "/currency", "/note"] {
        assert!(pointers.contains(&p), "{p} missing from {pointers:?}");
    }
    assert_eq!(errors.len(), 4, "every violation listed: {errors:?}");
    let r = send(post("/flows/strict", json_ct, b"{}".to_vec())).await;
    problem(&r, 422, "missing required");
    assert_eq!(
        r.body["errors"].as_array().map(Vec::len),
        Some(2),
        "{:?}",
        r.body
    );

    // Path and header limits.
    let long = format!("/flows/loose/{}", "a".repeat(3000));
    let r = send(s.request(Method::POST, &long).json(&json!({}))).await;
    assert!((400..500).contains(&r.status), "long path: {}", r.status);
    let r = send(
        s.request(Method::POST, "/flows/loose")
            .header("x-big", "b".repeat(10_000))
            .json(&json!({})),
    )
    .await;
    assert!((400..500).contains(&r.status), "big header: {}", r.status);
    match s
        .request(Method::POST, "/flows/loose")
        .header("x-huge", "h".repeat(200_000))
        .json(&json!({}))
        .send()
        .await
    {
        Ok(res) => assert!(
            res.status().is_client_error(),
            "huge header: {}",
            res.status()
        ),
        Err(e) => eprintln!("huge header: the server closed the connection ({e})"),
    }

    // Idempotency-Key: empty, too long, not ASCII.
    for (what, v) in [
        ("empty", HeaderValue::from_static("")),
        (
            "256 chars",
            HeaderValue::from_str(&"k".repeat(256)).unwrap(),
        ),
        (
            "non-ASCII",
            HeaderValue::from_bytes("clé-1".as_bytes()).unwrap(),
        ),
        ("control", HeaderValue::from_bytes(b"a\tb").unwrap()),
    ] {
        let r = send(
            s.request(Method::POST, "/flows/loose")
                .header("idempotency-key", v)
                .json(&json!({})),
        )
        .await;
        problem(&r, 400, &format!("Idempotency-Key {what}"));
    }
    let r = send(
        s.request(Method::POST, "/flows/loose")
            .header("idempotency-key", "k".repeat(255))
            .json(&json!({})),
    )
    .await;
    assert_eq!(r.status, 200, "255 chars is fine: {:?}", r.body);

    // The server is still healthy.
    assert_eq!(send(s.get("/healthz")).await.status, 200);
}

// ---------------------------------------------------------------- audit & hygiene

/// Every page of an admin list.
async fn all_pages(s: &Server, base: &str) -> Vec<Value> {
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let sep = if base.contains('?') { '&' } else { '?' };
        let path = match &cursor {
            Some(c) => format!("{base}{sep}limit=500&cursor={c}"),
            None => format!("{base}{sep}limit=500"),
        };
        let (st, v) = s.admin(Method::GET, &path, None).await;
        assert_eq!(st, 200, "{path}: {v}");
        out.extend(v["items"].as_array().cloned().unwrap_or_default());
        match v["next_cursor"].as_str() {
            Some(c) if !c.is_empty() => cursor = Some(c.to_owned()),
            _ => return out,
        }
    }
}

#[tokio::test]
async fn audit_log_and_no_secrets_anywhere() {
    let idp = jwks_server(jwks(vec![jwk(&rsa(), "rsa1")])).await;
    let s = oauth2_server(&idp.url, false, true).await;

    // A watcher of security.auth_failed events.
    s.deploy(
        "watch",
        json!({
            "flow.toml": "name = \"watch\"\n\n[[trigger]]\nkind = \"event\"\nevents = [\"security.auth_failed\"]\n",
            "main.rhai": "log::info(\"auth failure seen: \" + trigger.event.data.reason); #{}",
        }),
    )
    .await;
    let partner_token = "ptok_Zr8Kq2LmN4vX7wPa9Qs3";
    put_secret(&s, "PARTNER_TOKEN", partner_token).await;
    put_secret(&s, "HOOK_SECRET", SW_SECRET).await;
    // A script that tries hard to leak: the secret, its request (headers included).
    s.deploy(
        "paid",
        flow(
            "paid",
            "any",
            &["billing:write"],
            "let t = secrets::get(\"PARTNER_TOKEN\");\n\
             log::info(\"token is \" + t);\n\
             print(t);\n\
             log::info(\"request \" + to_json(request));\n\
             #{ ok: true }",
            "",
        ),
    )
    .await;
    s.deploy(
        "hook",
        webhook_flow("hook", "standard-webhooks", "HOOK_SECRET"),
    )
    .await;

    let (key_id, key) = create_key(&s, &["billing:write"], None).await;
    let token = sign(&at_header("rsa1"), &claims("billing:write"), &rsa());
    let wrong = bogus_key(&key_id);

    // Accepted flow call with an idempotency key.
    let r = send(
        s.request(Method::POST, "/flows/paid")
            .bearer_auth(&key)
            .header("idempotency-key", "order-123")
            .json(&json!({"amount": 1})),
    )
    .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(
        call_bearer(&s, "/flows/paid", Some(&token)).await.status,
        200
    );
    // Refused flow calls.
    assert_eq!(
        call_bearer(&s, "/flows/paid", Some(&wrong)).await.status,
        401
    );
    assert_eq!(
        send(
            s.request(Method::POST, &format!("/flows/paid?api_key={key}"))
                .json(&json!({}))
        )
        .await
        .status,
        401
    );
    // Admin: accepted, forbidden, unauthenticated.
    assert_eq!(s.admin(Method::GET, "/admin/v1/flows", None).await.0, 200);
    assert_eq!(
        send(s.request(Method::GET, "/admin/v1/flows").bearer_auth(&key))
            .await
            .status,
        403
    );
    assert_eq!(
        send(
            s.request(Method::GET, "/admin/v1/flows")
                .bearer_auth(&wrong)
        )
        .await
        .status,
        401
    );
    // Webhook: accepted and refused.
    let body = r#"{"id":"evt_9","amount":7}"#;
    let now = now_secs();
    let headers = vec![
        ("webhook-id", "msg_audit".to_owned()),
        ("webhook-timestamp", now.to_string()),
        (
            "webhook-signature",
            sw_sign(SW_SECRET, "msg_audit", now, body),
        ),
    ];
    assert_eq!(deliver(&s, "hook", &headers, body).await.status, 202);
    assert_eq!(
        deliver(&s, "hook", &headers, &body.replace('7', "8"))
            .await
            .status,
        401
    );

    // security.auth_failed reached the event subscriber.
    let start = Instant::now();
    loop {
        let runs = runs_of(&s, "watch").await;
        if !runs.is_empty() {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "no security.auth_failed event was delivered to the watcher"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Audit entries (the writer batches: poll).
    let find = |items: &[Value], f: &dyn Fn(&Value) -> bool| items.iter().any(f);
    let start = Instant::now();
    let audit = loop {
        let items = all_pages(&s, "/admin/v1/audit").await;
        let have = find(&items, &|e| {
            e["path"] == "/flows/hook" && e["status"] == 401
        }) && find(&items, &|e| {
            e["path"] == "/admin/v1/flows" && e["status"] == 403
        });
        if have || start.elapsed() > Duration::from_secs(15) {
            break items;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let key_caller = format!("api_key:{key_id}");
    assert!(
        find(&audit, &|e| e["path"] == "/flows/paid"
            && e["status"] == 200
            && e["caller"] == key_caller.as_str()
            && e["flow"] == "paid"
            && e["version"] == 1
            && e["method"] == "POST"
            && e["idempotency_key"] == "order-123"
            && e["request_id"].is_string()
            && e["duration_ms"].is_number()
            && e["time"].is_string()),
        "accepted flow call with its caller, version and idempotency key: {audit:#?}"
    );
    assert!(
        find(&audit, &|e| e["path"] == "/flows/paid"
            && e["status"] == 200
            && e["caller"] == "oauth2:partner-7"),
        "accepted JWT call"
    );
    assert!(
        find(&audit, &|e| e["path"] == "/flows/paid"
            && e["status"] == 401
            && e["flow"] == "paid"),
        "refused flow call"
    );
    assert!(
        find(&audit, &|e| e["path"] == "/admin/v1/flows"
            && e["status"] == 200
            && e["caller"]
                .as_str()
                .is_some_and(|c| c.starts_with("api_key:"))),
        "accepted admin call"
    );
    assert!(
        find(&audit, &|e| e["path"] == "/admin/v1/flows"
            && e["status"] == 403
            && e["caller"] == key_caller.as_str()),
        "forbidden admin call names its caller"
    );
    assert!(
        find(&audit, &|e| e["path"] == "/admin/v1/flows"
            && e["status"] == 401),
        "unauthenticated admin call"
    );
    assert!(
        find(&audit, &|e| e["path"] == "/flows/hook"
            && e["status"] == 202
            && e["caller"] == "signature:standard-webhooks"),
        "accepted webhook"
    );
    assert!(
        find(&audit, &|e| e["path"] == "/flows/hook"
            && e["status"] == 401),
        "refused webhook"
    );
    // Filters work.
    let (st, v) = s
        .admin(Method::GET, "/admin/v1/audit?flow=paid&status=401", None)
        .await;
    assert_eq!(st, 200, "{v}");
    let items = v["items"].as_array().unwrap();
    assert!(!items.is_empty());
    assert!(items
        .iter()
        .all(|e| e["flow"] == "paid" && e["status"] == 401));

    // The scan: audit table, every run with its logs, the server log.
    let audit_text = serde_json::to_string(&all_pages(&s, "/admin/v1/audit").await).unwrap();
    let mut runs_text = String::new();
    let mut logged_token_line = false;
    for run in all_pages(&s, "/admin/v1/runs").await {
        let id = run["id"].as_str().unwrap();
        let (st, v) = s
            .admin(Method::GET, &format!("/admin/v1/runs/{id}"), None)
            .await;
        assert_eq!(st, 200);
        logged_token_line |= v["logs"].as_array().is_some_and(|l| {
            l.iter().any(|x| {
                x["message"]
                    .as_str()
                    .is_some_and(|m| m.starts_with("token is"))
            })
        });
        runs_text.push_str(&v.to_string());
    }
    assert!(
        logged_token_line,
        "the run log should hold the (redacted) line: {runs_text}"
    );
    // Give the server a moment to flush its log.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let log_text = s.log_text();
    assert!(!log_text.is_empty(), "the server log was not captured");

    let token_sig = token.rsplit('.').next().unwrap().to_owned();
    let sw_raw = SW_SECRET.trim_start_matches("whsec_").to_owned();
    let sw_bytes_b64 = STANDARD.encode(STANDARD.decode(&sw_raw).unwrap());
    let secrets: Vec<(&str, String)> = vec![
        ("admin key secret", s.admin_key[21..].to_owned()),
        ("flow key secret", key[21..].to_owned()),
        ("wrong key secret", wrong[21..].to_owned()),
        ("bearer token", token.clone()),
        ("bearer token signature", token_sig),
        ("signature secret", sw_raw),
        ("signature secret (re-encoded)", sw_bytes_b64),
        ("secret value", partner_token.to_owned()),
    ];
    for (what, needle) in &secrets {
        assert!(needle.len() >= 16, "{what} is too short to scan for");
        for (place, hay) in [
            ("audit table", &audit_text),
            ("run logs", &runs_text),
            ("server log", &log_text),
        ] {
            assert!(
                !hay.contains(needle.as_str()),
                "{what} found in the {place}"
            );
        }
    }
}
