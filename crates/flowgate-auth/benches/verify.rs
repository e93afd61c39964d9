//! API key verification: argon2 on a cache miss versus a cache hit.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion};
use flowgate_auth::api_key::{self, KeyStore, KeyVerifier, StoredKey};

struct OneKey(StoredKey);

impl KeyStore for OneKey {
    fn get_key(&self, id: &str) -> flowgate_core::Result<Option<StoredKey>> {
        Ok((id == self.0.id).then(|| self.0.clone()))
    }
    fn touch_last_used(&self, _id: &str, _now_ms: i64) -> flowgate_core::Result<()> {
        Ok(())
    }
}

fn bench(c: &mut Criterion) {
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => panic!("runtime: {e}"),
    };
    let (key, hash) = match api_key::generate() {
        Ok(k) => k,
        Err(e) => panic!("generate: {e}"),
    };
    let store = Arc::new(OneKey(StoredKey {
        id: key.id.to_string(),
        name: "bench".into(),
        hash: hash.clone(),
        scopes: vec!["admin".into()],
        expires_at: None,
        revoked: false,
    }));
    let ip = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let full = key.full_key.expose().to_owned();

    let mut g = c.benchmark_group("api_key");
    g.sample_size(20);
    g.bench_function("argon2_verify_hash", |b| {
        b.iter(|| api_key::verify_hash(&full, &hash))
    });
    let verifier = KeyVerifier::new(store.clone());
    g.bench_function("verify_cache_miss", |b| {
        b.iter(|| {
            verifier.evict(key.id.as_str());
            rt.block_on(verifier.verify(&full, ip, 0))
        })
    });
    g.finish();

    let mut g = c.benchmark_group("api_key");
    let verifier = KeyVerifier::new(store);
    let _ = rt.block_on(verifier.verify(&full, ip, 0));
    g.bench_function("verify_cache_hit", |b| {
        b.iter(|| rt.block_on(verifier.verify(&full, ip, 0)))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
