//! Hardening of authentication and per-caller state (issue 11, items 7, 8, 11,
//! 12, 13, 14, 18, 20), over HTTP against the real binary.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use common::{runs_of, send, Res, Server};
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::Method;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

/// A well-formed key (`fgk_<16 hex>_<43 base64url>`) that was never issued.
fn bogus_key(id: &str, fill: u8) -> String {
    format!("fgk_{id}_{}", URL_SAFE_NO_PAD.encode([fill; 32]))
}

fn flow(name: &str, mode: &str, scopes: &[&str], script: &str, extra: &str) -> Value {
    json!({
        "flow.toml": format!(
            "name = \"{name}\"\n\n[[trigger]]\nkind = \"http\"\n\n[auth]\nmode = \"{mode}\"\nscopes = {}\n{extra}",
            serde_json::to_string(scopes).unwrap()
        ),
        "main.rhai": script,
    })
}

const CALLER_SCRIPT: &str = "#{ kind: caller.kind, id: caller.id, n: request.body.n }";

async fn create_key(s: &Server, bearer: &str, scopes: &[&str]) -> Res {
    send(
        s.request(Method::POST, "/admin/v1/keys")
            .bearer_auth(bearer)
            .json(&json!({"name": "t", "scopes": scopes})),
    )
    .await
}

// ------------------------------------------------------------ item 13

#[tokio::test]
async fn admin_bodies_are_parsed_only_after_authentication() {
    let s = Server::start().await;
    let cases: Vec<(Method, &str, Option<&str>)> = vec![
        (Method::POST, "/admin/v1/keys", Some("{\"scopes\": 7}")),
        (Method::POST, "/admin/v1/keys", Some("not json at all")),
        (Method::POST, "/admin/v1/flows", Some("{\"bogus\": true}")),
        (Method::POST, "/admin/v1/users", Some("[1, 2")),
        (Method::PUT, "/admin/v1/secrets/X", Some("{}")),
        (Method::PATCH, "/admin/v1/users/nope", Some("{")),
        (
            Method::POST,
            "/admin/v1/flows/f/rollback",
            Some("{\"version\": \"x\"}"),
        ),
        (Method::GET, "/admin/v1/runs?limit=abc", None),
        (Method::POST, "/events", Some("{\"type\": 1}")),
        // The router decodes the path: so does the guard.
        (Method::POST, "/admin/%76%31/keys", Some("{\"scopes\": 7}")),
    ];
    for (m, path, body) in &cases {
        for cred in [None, Some(bogus_key("0123456789abcdef", 1))] {
            let mut req = s
                .request(m.clone(), path)
                .header("content-type", "application/json");
            if let Some(b) = body {
                req = req.body(b.to_string());
            }
            if let Some(c) = &cred {
                req = req.bearer_auth(c);
            }
            let r = send(req).await;
            assert_eq!(r.status, 401, "{m} {path} with {cred:?}: {:?}", r.body);
            assert!(r.h("www-authenticate").is_some(), "{m} {path}");
            let text = r.body.to_string();
            for leak in ["scopes", "missing field", "expected", "unknown field"] {
                assert!(
                    !text.contains(leak),
                    "{m} {path} describes the schema: {text}"
                );
            }
        }
    }
    // The admin document stays public; authenticated callers still get 400/422.
    assert_eq!(send(s.get("/admin/v1/openapi.json")).await.status, 200);
    let r = send(
        s.request(Method::POST, "/admin/v1/keys")
            .bearer_auth(&s.admin_key)
            .json(&json!({"scopes": 7})),
    )
    .await;
    assert!(matches!(r.status, 400 | 422), "{:?}", r.body);
}

// ------------------------------------------------------------ item 11

#[tokio::test]
async fn keys_manage_grants_only_scopes_it_holds() {
    let s = Server::start().await;
    let r = create_key(&s, &s.admin_key, &["keys:manage", "flows:read"]).await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let manager = r.body["key"].as_str().unwrap().to_owned();
    for (scopes, what) in [
        (vec!["admin"], "admin"),
        (vec!["flows:write"], "flows:write"),
        (vec!["flows:read", "secrets:write"], "secrets:write"),
    ] {
        let r = create_key(&s, &manager, &scopes).await;
        assert_eq!(r.status, 403, "{scopes:?}: {:?}", r.body);
        assert_eq!(r.body["code"], "scope_not_grantable", "{:?}", r.body);
        assert_eq!(r.body["missing_scope"], what, "{:?}", r.body);
    }
    for scopes in [vec!["flows:read"], vec!["keys:manage", "flows:read"]] {
        let r = create_key(&s, &manager, &scopes).await;
        assert_eq!(r.status, 201, "{scopes:?}: {:?}", r.body);
    }
    // The admin scope holds every scope.
    let r = create_key(&s, &s.admin_key, &["admin"]).await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let (_, listed) = s.admin(Method::GET, "/admin/v1/keys", None).await;
    let admins = listed["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|k| k["scopes"] == json!(["admin"]))
        .count();
    assert_eq!(admins, 2, "only the admin minted an admin key: {listed}");
}

// ------------------------------------------------------------ item 8

#[tokio::test]
async fn a_valid_key_gets_through_its_addresses_lockout() {
    let s = Server::start().await;
    s.deploy(
        "keyed",
        flow("keyed", "api_key", &["billing:write"], CALLER_SCRIPT, ""),
    )
    .await;
    // Created (by the admin), never used before the lockout.
    let r = create_key(&s, &s.admin_key, &["billing:write"]).await;
    let fresh = r.body["key"].as_str().unwrap().to_owned();
    let fresh_id = r.body["id"].as_str().unwrap().to_owned();

    // Many bad keys from this address: it is throttled.
    let mut last = 0;
    for i in 0..30u8 {
        let bad = if i % 2 == 0 {
            bogus_key("0123456789abcdef", i)
        } else {
            bogus_key(&fresh_id, i)
        };
        last = send(s.get("/admin/v1/flows").bearer_auth(&bad))
            .await
            .status;
    }
    assert_eq!(last, 429, "the address is throttled after 30 bad keys");
    let r = send(s.get("/admin/v1/flows").bearer_auth("fgk_garbage")).await;
    assert_eq!(r.status, 429, "{:?}", r.body);
    assert!(r.h("retry-after").is_some());

    // The admin key (used before) and the fresh key (never used) get through.
    let r = send(s.get("/admin/v1/flows").bearer_auth(&s.admin_key)).await;
    assert_eq!(
        r.status, 200,
        "admin key from a throttled address: {:?}",
        r.body
    );
    let r = send(
        s.request(Method::POST, "/flows/keyed")
            .bearer_auth(&fresh)
            .json(&json!({"n": 1})),
    )
    .await;
    assert_eq!(
        r.status, 200,
        "fresh key from a throttled address: {:?}",
        r.body
    );
    // A wrong secret is still throttled.
    let r = send(
        s.request(Method::POST, "/flows/keyed")
            .bearer_auth(bogus_key(&fresh_id, 200))
            .json(&json!({})),
    )
    .await;
    assert_eq!(r.status, 429, "{:?}", r.body);
}

#[tokio::test]
async fn forwarded_for_is_believed_only_from_trusted_proxies() {
    let anon = flow("anon", "none", &[], CALLER_SCRIPT, "");
    // No trusted proxies: the header is the caller's claim and ignored.
    let s = Server::start().await;
    s.deploy("anon", anon.clone()).await;
    let r = send(
        s.request(Method::POST, "/flows/anon")
            .header("x-forwarded-for", "203.0.113.9")
            .json(&json!({})),
    )
    .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["id"], "127.0.0.1");
    drop(s);

    // Behind a trusted proxy: the right-most untrusted entry is the client.
    let s = Server::start_with(
        None,
        &[("FLOWGATE_TRUSTED_PROXIES", "127.0.0.1/32,10.0.0.0/8")],
    )
    .await;
    s.deploy("anon", anon).await;
    for (xff, client) in [
        ("203.0.113.9", "203.0.113.9"),
        ("6.6.6.6, 203.0.113.9, 10.1.2.3", "203.0.113.9"),
        ("2001:db8:1:2::7", "2001:db8:1:2::/64"),
    ] {
        let r = send(
            s.request(Method::POST, "/flows/anon")
                .header("x-forwarded-for", xff)
                .json(&json!({})),
        )
        .await;
        assert_eq!(r.status, 200, "{:?}", r.body);
        assert_eq!(r.body["id"], client, "{xff}");
    }
    // The failure throttle follows the real client, not the proxy.
    for i in 0..30u8 {
        send(
            s.get("/admin/v1/flows")
                .header("x-forwarded-for", "198.51.100.66")
                .bearer_auth(bogus_key("0123456789abcdef", i)),
        )
        .await;
    }
    let from = |ip: &str| {
        s.get("/admin/v1/flows")
            .header("x-forwarded-for", ip.to_owned())
            .bearer_auth(bogus_key("0123456789abcdef", 250))
    };
    assert_eq!(send(from("198.51.100.66")).await.status, 429);
    assert_eq!(send(from("198.51.100.67")).await.status, 401);
}

// ------------------------------------------------------------ item 14

#[tokio::test]
async fn anonymous_callers_are_keyed_by_address() {
    let s = Server::start_with(None, &[("FLOWGATE_TRUSTED_PROXIES", "127.0.0.1")]).await;
    s.deploy(
        "anon",
        flow(
            "anon",
            "none",
            &[],
            CALLER_SCRIPT,
            "[limits]\nrate = \"2/minute\"\n",
        ),
    )
    .await;
    let call = |ip: &str, body: Value, idem: Option<&str>| {
        let mut req = s
            .request(Method::POST, "/flows/anon")
            .header("x-forwarded-for", ip.to_owned())
            .json(&body);
        if let Some(k) = idem {
            req = req.header("idempotency-key", k.to_owned());
        }
        req
    };
    // Idempotency keys: the same key from two clients does not collide.
    let a = send(call("192.0.2.1", json!({"n": 1}), Some("order-1"))).await;
    assert_eq!(
        (a.status, a.body["n"].clone()),
        (200, json!(1)),
        "{:?}",
        a.body
    );
    let b = send(call("192.0.2.2", json!({"n": 2}), Some("order-1"))).await;
    assert_eq!(
        b.status, 200,
        "another client's key is its own: {:?}",
        b.body
    );
    assert_eq!(b.body["n"], 2);
    assert!(b.h("idempotent-replayed").is_none());
    // Rate limits: one client spends only its own allowance.
    let r = send(call("192.0.2.1", json!({}), None)).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let r = send(call("192.0.2.1", json!({}), None)).await;
    assert_eq!(r.status, 429, "{:?}", r.body);
    let r = send(call("192.0.2.3", json!({}), None)).await;
    assert_eq!(r.status, 200, "another anonymous client: {:?}", r.body);
}

// ------------------------------------------------------------ item 7

#[tokio::test]
async fn metrics_do_not_take_made_up_methods_as_labels() {
    let s = Server::start().await;
    for m in ["FROBNICATE", "X-INVENT-1", "X-INVENT-2"] {
        let method = Method::from_bytes(m.as_bytes()).unwrap();
        let _ = s.request(method, "/healthz").send().await.unwrap();
    }
    let _ = s.get("/healthz").send().await.unwrap();
    let text = s.metrics().await;
    assert!(text.contains("method=\"GET\""), "{text}");
    assert!(text.contains("method=\"other\""), "{text}");
    for m in ["FROBNICATE", "X-INVENT"] {
        assert!(!text.contains(m), "{m} became a label");
    }
}

// ------------------------------------------------------------ item 12

const ISS: &str = "https://idp.example.test";
const AUD: &str = "flowgate-api";
const ADMIN_AUD: &str = "flowgate-admin";

fn rsa() -> EncodingKey {
    EncodingKey::from_rsa_pem(flowgate_auth::test_keys::RSA_PRIVATE.as_bytes()).unwrap()
}

fn token(aud: &str, scope: &str) -> String {
    let mut h = Header::new(Algorithm::RS256);
    h.kid = Some("rsa1".to_owned());
    let now = chrono::Utc::now().timestamp();
    let claims = json!({
        "iss": ISS, "aud": aud, "sub": "someone", "iat": now, "exp": now + 600, "scope": scope,
    });
    jsonwebtoken::encode(&h, &claims, &rsa()).unwrap()
}

#[tokio::test]
async fn the_admin_api_refuses_partner_oauth2_tokens() {
    let mut j = Jwk::from_encoding_key(&rsa(), Algorithm::RS256).unwrap();
    j.common.key_id = Some("rsa1".to_owned());
    let body = serde_json::to_string(&JwkSet { keys: vec![j] }).unwrap();
    let idp = flowgate_auth::test_keys::jwks_server(body).await.unwrap();
    let partner = token(AUD, "admin billing:write");
    let admin = token(ADMIN_AUD, "admin");
    let base = [
        ("FLOWGATE_OAUTH2_ISSUER", ISS),
        ("FLOWGATE_OAUTH2_JWKS_URL", idp.url.as_str()),
        ("FLOWGATE_OAUTH2_AUDIENCE", AUD),
    ];

    let s = Server::start_with(None, &base).await;
    s.deploy("oa", flow("oa", "oauth2", &["billing:write"], "#{}", ""))
        .await;
    // The partner token works where partners are served…
    let r = send(
        s.request(Method::POST, "/flows/oa")
            .bearer_auth(&partner)
            .json(&json!({})),
    )
    .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    // …but never opens the admin API, even with an `admin` scope.
    for t in [&partner, &admin] {
        let r = create_key(&s, t, &["admin"]).await;
        assert_eq!(r.status, 401, "{:?}", r.body);
        let r = send(s.get("/admin/v1/keys").bearer_auth(t)).await;
        assert_eq!(r.status, 401, "{:?}", r.body);
    }
    drop(s);

    // A separately configured admin issuer/audience opens it; partners' still not.
    let mut env = base.to_vec();
    env.push(("FLOWGATE_OAUTH2_ADMIN_ISSUER", ISS));
    env.push(("FLOWGATE_OAUTH2_ADMIN_AUDIENCE", ADMIN_AUD));
    let s = Server::start_with(None, &env).await;
    let r = send(s.get("/admin/v1/keys").bearer_auth(&admin)).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let r = send(s.get("/admin/v1/keys").bearer_auth(&partner)).await;
    assert_eq!(r.status, 401, "{:?}", r.body);
}

// ------------------------------------------------------------ item 18

#[tokio::test]
async fn a_malformed_webhook_secret_is_503_and_logged() {
    let s = Server::start_logged(None, &[]).await;
    s.deploy(
        "hook",
        json!({
            "flow.toml": "name = \"hook\"\n\n[[trigger]]\nkind = \"webhook\"\nsignature = { scheme = \"standard-webhooks\", secret = \"HOOK_SECRET\" }\n",
            "main.rhai": "#{ ok: true }",
        }),
    )
    .await;
    let (st, v) = s
        .admin(
            Method::PUT,
            "/admin/v1/secrets/HOOK_SECRET",
            Some(json!({"value": "whsec_!!!not-base64!!!"})),
        )
        .await;
    assert_eq!(st, 204, "{v}");
    for headers in [
        vec![],
        vec![
            ("webhook-id", "msg_1"),
            ("webhook-timestamp", "1"),
            ("webhook-signature", "v1,AAAA"),
        ],
    ] {
        let mut req = s.request(Method::POST, "/flows/hook").body("{\"junk\":1}");
        for (k, v) in &headers {
            req = req.header(*k, *v);
        }
        let r = send(req).await;
        assert_eq!(r.status, 503, "{:?}", r.body);
        assert_eq!(r.body["code"], "signature_secret_invalid");
        assert_eq!(r.h("retry-after"), Some("60"));
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while !s.log_text().contains("malformed") && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let log = s.log_text();
    let line = log
        .lines()
        .find(|l| l.contains("webhook signature secret") && l.contains("malformed"))
        .unwrap_or_else(|| panic!("no log line: {log}"));
    assert!(
        line.contains("HOOK_SECRET") && line.contains("hook"),
        "{line}"
    );
    assert!(
        !line.contains("not-base64"),
        "the secret value is logged: {line}"
    );
}

// ------------------------------------------------------------ item 20

#[tokio::test]
async fn sampled_auth_failures_carry_the_number_suppressed() {
    let s = Server::start().await;
    s.deploy(
        "watch",
        json!({
            "flow.toml": "name = \"watch\"\n\n[[trigger]]\nkind = \"event\"\nevents = [\"security.auth_failed\"]\n",
            "main.rhai": "log::info(\"suppressed=\" + trigger.event.data.suppressed); #{}",
        }),
    )
    .await;
    let fail = || send(s.get("/admin/v1/flows").bearer_auth("fgk_wrong"));
    for _ in 0..6 {
        assert_eq!(fail().await.status, 401);
    }
    // The sampling period (5 s) passes; the next failure is emitted with the count.
    tokio::time::sleep(Duration::from_millis(5_500)).await;
    assert_eq!(fail().await.status, 401);

    let deadline = Instant::now() + Duration::from_secs(20);
    let mut counts: Vec<u64> = Vec::new();
    while Instant::now() < deadline {
        counts.clear();
        for run in runs_of(&s, "watch").await {
            let id = run["id"].as_str().unwrap_or_default().to_owned();
            let done = s.wait_run(&id, Duration::from_secs(10)).await;
            let logs = done["logs"].to_string();
            if let Some(rest) = logs.split("suppressed=").nth(1) {
                let n: String = rest.chars().take_while(char::is_ascii_digit).collect();
                counts.push(n.parse().unwrap_or(0));
            }
        }
        if counts.len() >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    counts.sort_unstable();
    assert_eq!(
        counts,
        vec![0, 5],
        "two events; the second counts the 5 held back"
    );
    assert_eq!(counts.len() as u64 + counts.iter().sum::<u64>(), 7);
}
