//! Tests of `jwt`: a tiny JWKS server on 127.0.0.1:0 serving keys from `test_keys`.
#![allow(clippy::unwrap_used)]

use super::*;
use crate::test_keys::{
    jwks_server, JwksServer, EC_PRIVATE, ED_PRIVATE, RSA2_PRIVATE, RSA_PRIVATE, RSA_PUBLIC,
};
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{encode, EncodingKey, Header};
use serde_json::json;
use std::sync::atomic::Ordering;

const ISS: &str = "https://idp.example.com";
const AUD: &str = "flowgate";

async fn serve(body: String) -> JwksServer {
    jwks_server(body).await.unwrap()
}

fn jwk(enc: &EncodingKey, alg: Algorithm, kid: &str) -> Jwk {
    let mut j = Jwk::from_encoding_key(enc, alg).unwrap();
    j.common.key_id = Some(kid.to_owned());
    j
}

fn rsa() -> EncodingKey {
    EncodingKey::from_rsa_pem(RSA_PRIVATE.as_bytes()).unwrap()
}
fn rsa2() -> EncodingKey {
    EncodingKey::from_rsa_pem(RSA2_PRIVATE.as_bytes()).unwrap()
}
fn ec() -> EncodingKey {
    EncodingKey::from_ec_pem(EC_PRIVATE.as_bytes()).unwrap()
}
fn ed() -> EncodingKey {
    EncodingKey::from_ed_pem(ED_PRIVATE.as_bytes()).unwrap()
}

fn jwks(keys: Vec<Jwk>) -> String {
    serde_json::to_string(&JwkSet { keys }).unwrap()
}

fn default_jwks() -> String {
    jwks(vec![
        jwk(&rsa(), Algorithm::RS256, "rsa1"),
        jwk(&ec(), Algorithm::ES256, "ec1"),
        jwk(&ed(), Algorithm::EdDSA, "ed1"),
    ])
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

fn claims() -> serde_json::Value {
    json!({
        "iss": ISS, "aud": AUD, "sub": "client-42",
        "iat": now(), "exp": now() + 300,
        "scope": "billing:read billing:write",
    })
}

fn header(alg: Algorithm, kid: &str) -> Header {
    let mut h = Header::new(alg);
    h.kid = Some(kid.to_owned());
    h.typ = Some("at+jwt".to_owned());
    h
}

fn sign(alg: Algorithm, kid: &str, claims: &serde_json::Value, key: &EncodingKey) -> String {
    encode(&header(alg, kid), claims, key).unwrap()
}

fn rs(claims: &serde_json::Value) -> String {
    sign(Algorithm::RS256, "rsa1", claims, &rsa())
}

async fn verifier(server: &JwksServer, require_at_jwt: bool, refetch: Duration) -> JwtVerifier {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut cfg = OAuth2Config::new(ISS, server.url.clone(), AUD);
    cfg.require_at_jwt = require_at_jwt;
    cfg.leeway_secs = 5;
    cfg.jwks_min_refetch = refetch;
    JwtVerifier::new(cfg).unwrap()
}

fn reason(r: Result<Principal>) -> String {
    match r {
        Err(AuthError::InvalidToken(reason)) => reason,
        other => panic!("expected InvalidToken, got {other:?}"),
    }
}

#[tokio::test]
async fn valid_tokens_of_each_algorithm() {
    let srv = serve(default_jwks()).await;
    let v = verifier(&srv, true, Duration::from_secs(60)).await;
    let p = v.verify(&rs(&claims())).await.unwrap();
    assert_eq!(p.kind, PrincipalKind::OAuth2);
    assert_eq!(p.id, "client-42");
    assert_eq!(p.scopes, vec!["billing:read", "billing:write"]);

    let mut c = claims();
    c.as_object_mut().unwrap().remove("scope");
    c["scp"] = json!(["users:read"]);
    let p = v
        .verify(&sign(Algorithm::ES256, "ec1", &c, &ec()))
        .await
        .unwrap();
    assert_eq!(p.scopes, vec!["users:read"]);
    let p = v
        .verify(&sign(Algorithm::EdDSA, "ed1", &claims(), &ed()))
        .await
        .unwrap();
    assert_eq!(p.id, "client-42");
    // `application/at+jwt` is accepted too; aud may be an array.
    let mut h = header(Algorithm::RS256, "rsa1");
    h.typ = Some("application/at+jwt".into());
    let mut c = claims();
    c["aud"] = json!(["other", AUD]);
    assert!(v.verify(&encode(&h, &c, &rsa()).unwrap()).await.is_ok());
    // One JWKS fetch served all of them.
    assert_eq!(srv.hits.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn time_issuer_and_audience_checks() {
    let srv = serve(default_jwks()).await;
    let v = verifier(&srv, false, Duration::from_secs(60)).await;
    let mut c = claims();
    c["exp"] = json!(now() - 60);
    assert_eq!(reason(v.verify(&rs(&c)).await), "token expired");
    let mut c = claims();
    c["nbf"] = json!(now() + 120);
    assert_eq!(reason(v.verify(&rs(&c)).await), "token not yet valid");
    // Within leeway is fine.
    let mut c = claims();
    c["nbf"] = json!(now() + 2);
    assert!(v.verify(&rs(&c)).await.is_ok());

    for iss in [
        "https://idp.example.com/",
        "https://evil.example.com",
        "HTTPS://idp.example.com",
    ] {
        let mut c = claims();
        c["iss"] = json!(iss);
        assert_eq!(reason(v.verify(&rs(&c)).await), "wrong issuer", "{iss}");
    }
    let mut c = claims();
    c.as_object_mut().unwrap().remove("iss");
    assert_eq!(reason(v.verify(&rs(&c)).await), "missing required claim");
    let mut c = claims();
    c["aud"] = json!("someone-else");
    assert_eq!(reason(v.verify(&rs(&c)).await), "wrong audience");
    let mut c = claims();
    c.as_object_mut().unwrap().remove("exp");
    assert_eq!(reason(v.verify(&rs(&c)).await), "missing required claim");
}

#[tokio::test]
async fn algorithm_attacks_are_refused() {
    let srv = serve(default_jwks()).await;
    let v = verifier(&srv, false, Duration::from_secs(60)).await;
    let b64 = |v: &serde_json::Value| URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap());
    let none = format!(
        "{}.{}.",
        b64(&json!({"alg": "none", "kid": "rsa1", "typ": "at+jwt"})),
        b64(&claims())
    );
    assert_eq!(reason(v.verify(&none).await), "algorithm not allowed");
    let none_upper = format!(
        "{}.{}.",
        b64(&json!({"alg": "None", "kid": "rsa1"})),
        b64(&claims())
    );
    assert_eq!(reason(v.verify(&none_upper).await), "algorithm not allowed");
    // HS256 keyed with the RSA public key (the classic confusion attack).
    let hs = sign(
        Algorithm::HS256,
        "rsa1",
        &claims(),
        &EncodingKey::from_secret(RSA_PUBLIC.as_bytes()).unwrap(),
    );
    assert_eq!(reason(v.verify(&hs).await), "algorithm not allowed");
    // Other RSA variants are not on the list either.
    let rs512 = sign(Algorithm::RS512, "rsa1", &claims(), &rsa());
    assert_eq!(reason(v.verify(&rs512).await), "algorithm not allowed");
    // None of these even fetched the keys.
    assert_eq!(srv.hits.load(Ordering::SeqCst), 0);
    // ES256 header on an RSA key id.
    let fake = format!(
        "{}.{}.{}",
        b64(&json!({"alg": "ES256", "kid": "rsa1"})),
        b64(&claims()),
        "AAAA"
    );
    assert_eq!(
        reason(v.verify(&fake).await),
        "algorithm does not match the key"
    );
    // Tampered payload, signature kept.
    let token = rs(&claims());
    let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
    let mut c = claims();
    c["scope"] = json!("admin");
    parts[1] = b64(&c);
    assert_eq!(reason(v.verify(&parts.join(".")).await), "bad signature");
    // Garbage.
    for junk in ["", "a.b", "a.b.c.d", "!!!.e30.x", "e30.e30.x"] {
        assert!(v.verify(junk).await.is_err(), "{junk}");
    }
}

#[tokio::test]
async fn typ_must_be_at_jwt_when_required() {
    let srv = serve(default_jwks()).await;
    let strict = verifier(&srv, true, Duration::from_secs(60)).await;
    let mut h = header(Algorithm::RS256, "rsa1");
    h.typ = Some("JWT".into());
    let token = encode(&h, &claims(), &rsa()).unwrap();
    assert_eq!(
        reason(strict.verify(&token).await),
        "token type must be at+jwt"
    );
    h.typ = None;
    let untyped = encode(&h, &claims(), &rsa()).unwrap();
    assert!(strict.verify(&untyped).await.is_err());
    let lenient = verifier(&srv, false, Duration::from_secs(60)).await;
    assert!(lenient.verify(&token).await.is_ok());
}

#[tokio::test]
async fn unknown_kid_refetches_at_most_once_per_interval() {
    let srv = serve(default_jwks()).await;
    let v = verifier(&srv, false, Duration::from_secs(60)).await;
    v.verify(&rs(&claims())).await.unwrap();
    assert_eq!(srv.hits.load(Ordering::SeqCst), 1);
    // Unknown kid: allowed one refetch? No: the last fetch was just now.
    let unknown = sign(Algorithm::RS256, "nope", &claims(), &rsa());
    assert_eq!(reason(v.verify(&unknown).await), "unknown signing key");
    let unknown2 = sign(Algorithm::RS256, "nope-2", &claims(), &rsa());
    assert_eq!(reason(v.verify(&unknown2).await), "unknown signing key");
    assert_eq!(srv.hits.load(Ordering::SeqCst), 1);

    // With a zero interval, each unknown kid triggers exactly one refetch.
    let srv = serve(default_jwks()).await;
    let v = verifier(&srv, false, Duration::ZERO).await;
    assert_eq!(reason(v.verify(&unknown).await), "unknown signing key");
    assert_eq!(srv.hits.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn key_rotation_is_picked_up() {
    let srv = serve(jwks(vec![jwk(&rsa(), Algorithm::RS256, "rsa1")])).await;
    let v = verifier(&srv, false, Duration::from_millis(100)).await;
    v.verify(&rs(&claims())).await.unwrap();
    // The issuer rotates: rsa2 is published, rsa1 withdrawn.
    *srv.body.lock().unwrap() = jwks(vec![jwk(&rsa2(), Algorithm::RS256, "rsa2")]);
    tokio::time::sleep(Duration::from_millis(150)).await;
    let new_token = sign(Algorithm::RS256, "rsa2", &claims(), &rsa2());
    assert_eq!(v.verify(&new_token).await.unwrap().id, "client-42");
    assert_eq!(srv.hits.load(Ordering::SeqCst), 2);
    // The withdrawn key is gone with the old set.
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(
        reason(v.verify(&rs(&claims())).await),
        "unknown signing key"
    );
}

#[tokio::test]
async fn jku_and_x5u_are_never_fetched() {
    let srv = serve(default_jwks()).await;
    let evil_keys = jwks(vec![jwk(&rsa2(), Algorithm::RS256, "evil")]);
    let evil = serve(evil_keys).await;
    let v = verifier(&srv, false, Duration::ZERO).await;
    let mut h = header(Algorithm::RS256, "evil");
    h.jku = Some(evil.url.clone());
    h.x5u = Some(evil.url.clone());
    let token = encode(&h, &claims(), &rsa2()).unwrap();
    assert_eq!(reason(v.verify(&token).await), "unknown signing key");
    // An embedded `jwk` header is ignored as well.
    let mut h = header(Algorithm::RS256, "evil");
    h.jwk = Some(jwk(&rsa2(), Algorithm::RS256, "evil"));
    let token = encode(&h, &claims(), &rsa2()).unwrap();
    assert!(v.verify(&token).await.is_err());
    assert_eq!(evil.hits.load(Ordering::SeqCst), 0);
    assert!(srv.hits.load(Ordering::SeqCst) >= 1);
}

#[tokio::test]
async fn jwks_outage_is_unavailable_not_invalid() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/jwks", listener.local_addr().unwrap());
    drop(listener);
    let v = JwtVerifier::new(OAuth2Config::new(ISS, url, AUD)).unwrap();
    let e = v.verify(&rs(&claims())).await.unwrap_err();
    assert!(matches!(e, AuthError::Unavailable(_)), "{e:?}");
    assert_eq!(e.http_status(), 503);
}

#[tokio::test]
async fn hand_written_jwks_with_odd_keys() {
    // n/e as the issuer would publish them, no `alg`, next to keys we must skip.
    let AlgorithmParameters::RSA(rsa_params) = jwk(&rsa(), Algorithm::RS256, "x").algorithm else {
        panic!("rsa expected")
    };
    let doc = json!({"keys": [
        {"kty": "oct", "kid": "hmac", "k": "c2VjcmV0"},
        {"kty": "XYZ", "kid": "weird"},
        {"kty": "RSA", "kid": "enc", "use": "enc", "n": rsa_params.n, "e": rsa_params.e},
        {"kty": "RSA", "kid": "rsa1", "use": "sig", "n": rsa_params.n, "e": rsa_params.e},
    ]});
    let srv = serve(doc.to_string()).await;
    let v = verifier(&srv, false, Duration::from_secs(60)).await;
    assert!(v.verify(&rs(&claims())).await.is_ok());
    // The encryption key is not a signing key.
    let enc = sign(Algorithm::RS256, "enc", &claims(), &rsa());
    assert_eq!(reason(v.verify(&enc).await), "unknown signing key");
    // No kid with a single usable key is fine; no subject is not.
    let mut h = Header::new(Algorithm::RS256);
    h.kid = None;
    assert!(v
        .verify(&encode(&h, &claims(), &rsa()).unwrap())
        .await
        .is_ok());
    let mut c = claims();
    c.as_object_mut().unwrap().remove("sub");
    assert_eq!(reason(v.verify(&rs(&c)).await), "token names no subject");
    c["client_id"] = json!("svc");
    assert_eq!(v.verify(&rs(&c)).await.unwrap().id, "svc");
}
