//! API keys: `fgk_<id>_<secret>`, argon2id hashes, and a verifier with a
//! short-lived cache of successful checks refreshed ahead of expiry,
//! single-flight verification, bounded argon2 concurrency and a per-address
//! throttle on failed attempts that never refuses a key that verifies.
//!
//! Format: `fgk_` + a 16-character lower-case hex id (8 random bytes) + `_` +
//! 43 characters of base64url (32 random bytes, no padding); 64 characters in
//! all. The id is not secret (it is listed by the admin API); only the whole
//! key, hashed with argon2id (m = 19456 KiB, t = 2, p = 1), is stored.
//!
//! The id is an [`ApiKeyId`], not core's UUID `KeyId`: it is embedded in the
//! key and kept short so keys stay readable in logs of *ids*.

use std::fmt;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use argon2::{Algorithm, Argon2, Params, Version};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use flowgate_core::SecretString;
use hmac::{KeyInit, Mac};
use moka::sync::Cache;
use serde::{Deserialize, Serialize};
use tokio::sync::Semaphore;

use crate::{AuthError, Principal, PrincipalKind, Result};

/// Prefix of every key.
pub const KEY_PREFIX: &str = "fgk_";
/// Length of the id part (hex characters).
pub const ID_LEN: usize = 16;
/// Length of the secret part (base64url characters for 32 bytes).
pub const SECRET_LEN: usize = 43;
/// Length of a whole key.
pub const KEY_LEN: usize = KEY_PREFIX.len() + ID_LEN + 1 + SECRET_LEN;

/// OWASP argon2id parameters: memory in KiB.
pub const ARGON2_M_KIB: u32 = 19_456;
/// OWASP argon2id parameters: iterations.
pub const ARGON2_T: u32 = 2;
/// OWASP argon2id parameters: lanes.
pub const ARGON2_P: u32 = 1;

/// The id of an API key: 16 lower-case hex characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ApiKeyId(String);

impl ApiKeyId {
    /// Parses an id, refusing anything but 16 lower-case hex characters.
    pub fn parse(s: &str) -> Result<Self, MalformedKey> {
        if s.len() == ID_LEN && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            Ok(Self(s.to_owned()))
        } else {
            Err(MalformedKey)
        }
    }

    /// A fresh random id.
    pub fn random() -> Self {
        Self(hex::encode(rand::random::<[u8; 8]>()))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ApiKeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for ApiKeyId {
    type Error = MalformedKey;
    fn try_from(s: String) -> Result<Self, MalformedKey> {
        Self::parse(&s)
    }
}

impl From<ApiKeyId> for String {
    fn from(id: ApiKeyId) -> Self {
        id.0
    }
}

/// A presented key that does not have the `fgk_<id>_<secret>` shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("malformed API key")]
pub struct MalformedKey;

/// A freshly generated key; `full_key` is shown to the user once and never stored.
#[derive(Debug, Clone)]
pub struct GeneratedKey {
    /// The key's id.
    pub id: ApiKeyId,
    /// The whole key, `fgk_<id>_<secret>`.
    pub full_key: SecretString,
}

/// What the store keeps about a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredKey {
    /// The key's id.
    pub id: String,
    /// Human name.
    pub name: String,
    /// argon2id PHC string of the whole key.
    pub hash: String,
    /// Granted scopes.
    pub scopes: Vec<String>,
    /// Expiry in epoch milliseconds.
    pub expires_at: Option<i64>,
    /// Revoked keys never verify again.
    pub revoked: bool,
}

/// What the verifier needs from storage. Blocking, like core's repository
/// traits; the verifier calls it from `spawn_blocking`.
pub trait KeyStore: Send + Sync + 'static {
    /// The stored record of key `id`, if any.
    fn get_key(&self, id: &str) -> flowgate_core::Result<Option<StoredKey>>;
    /// Records a successful use (called on cache misses only, so at most
    /// about once per cache TTL per key and process).
    fn touch_last_used(&self, id: &str, now_ms: i64) -> flowgate_core::Result<()>;
}

fn argon2() -> Result<Argon2<'static>> {
    let params = Params::new(ARGON2_M_KIB, ARGON2_T, ARGON2_P, None)
        .map_err(|e| AuthError::Internal(format!("argon2 parameters: {e}")))?;
    Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
}

/// Generates a key and its argon2id PHC hash (the value to store).
///
/// Hashing takes tens of milliseconds; call it from a blocking context.
pub fn generate() -> Result<(GeneratedKey, String)> {
    let id = ApiKeyId::random();
    let secret = URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>());
    let full_key = SecretString::new(format!("{KEY_PREFIX}{id}_{secret}"));
    let hash = hash_key(full_key.expose())?;
    Ok((GeneratedKey { id, full_key }, hash))
}

/// Hashes a whole key with argon2id at the OWASP parameters and a random salt.
pub fn hash_key(full_key: &str) -> Result<String> {
    argon2()?
        .hash_password(full_key.as_bytes())
        .map(|h| h.to_string())
        .map_err(|e| AuthError::Internal(format!("argon2 hash: {e}")))
}

/// Verifies a whole key against a PHC string (constant time in the secret).
/// A malformed hash verifies nothing.
pub fn verify_hash(full_key: &str, phc: &str) -> bool {
    match argon2() {
        Ok(a) => a.verify_password(full_key.as_bytes(), phc).is_ok(),
        Err(_) => false,
    }
}

/// Splits a presented key into `(id, secret)`, refusing anything malformed
/// before any expensive work: wrong length, prefix, id or secret alphabet.
pub fn parse_presented(presented: &str) -> Result<(ApiKeyId, &str), MalformedKey> {
    if presented.len() != KEY_LEN {
        return Err(MalformedKey);
    }
    let rest = presented.strip_prefix(KEY_PREFIX).ok_or(MalformedKey)?;
    let (id, rest) = rest.split_at_checked(ID_LEN).ok_or(MalformedKey)?;
    let secret = rest.strip_prefix('_').ok_or(MalformedKey)?;
    let id = ApiKeyId::parse(id)?;
    if secret.len() != SECRET_LEN
        || !secret
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(MalformedKey);
    }
    // 43 characters carry 258 bits: the last character must leave the 2 spare bits zero.
    let decoded = URL_SAFE_NO_PAD.decode(secret).map_err(|_| MalformedKey)?;
    if decoded.len() != 32 {
        return Err(MalformedKey);
    }
    Ok((id, secret))
}

/// Tuning of a [`KeyVerifier`].
#[derive(Debug, Clone)]
pub struct KeyVerifierConfig {
    /// How long a verification is trusted without reading the store again:
    /// also the longest a revocation made on another node takes to be seen.
    /// A key in use is re-read in the background after half of this, so its
    /// callers never wait for the store or argon2.
    pub cache_ttl: Duration,
    /// Most remembered verifications (and proofs of possession).
    pub cache_capacity: u64,
    /// argon2 verifications allowed to run at once (for addresses in good standing).
    pub argon2_permits: usize,
    /// Failed verifications allowed per client address and minute before the
    /// address is throttled.
    pub failures_per_minute: u32,
    /// How long this process remembers that a presented key matched its
    /// stored hash; within it, a re-verification reads the store but runs
    /// no argon2, and a throttled address still gets the key through.
    pub proof_ttl: Duration,
    /// Most client addresses with failure state.
    pub tracked_addresses: u64,
}

impl Default for KeyVerifierConfig {
    fn default() -> Self {
        Self {
            cache_ttl: Duration::from_secs(60),
            cache_capacity: 10_000,
            argon2_permits: 2,
            failures_per_minute: 20,
            proof_ttl: Duration::from_secs(24 * 3600),
            tracked_addresses: 100_000,
        }
    }
}

/// Counters for `/metrics`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CacheStats {
    /// Verifications answered from the cache.
    pub hits: u64,
    /// Verifications that needed the store (and argon2 for known ids).
    pub misses: u64,
    /// Entries now cached.
    pub entries: u64,
    /// Failed verifications.
    pub failures: u64,
    /// Requests refused by the per-address failure limit.
    pub throttled: u64,
    /// argon2 verifications run.
    pub argon2_runs: u64,
    /// argon2 verifications that had to wait for a permit.
    pub argon2_waits: u64,
    /// argon2 verifications running now.
    pub argon2_in_flight: u64,
    /// Most argon2 verifications seen running at once.
    pub max_argon2_in_flight: u64,
    /// Background re-reads of cached keys (refresh ahead of expiry).
    pub refreshes: u64,
    /// Client addresses with failure state now.
    pub tracked_addresses: u64,
}

/// A verification this process trusts until `checked_at + cache_ttl`.
#[derive(Debug)]
struct CachedKey {
    id: String,
    scopes: Vec<String>,
    expires_at: Option<i64>,
    /// Digest of the stored hash this key was proven against.
    hash_fp: [u8; 32],
    checked_at: Instant,
    refreshing: AtomicBool,
}

/// "This presented key matched stored hash `hash_fp` of key `id`."
#[derive(Debug, Clone)]
struct Proof {
    id: String,
    hash_fp: [u8; 32],
}

/// Failed verifications of one address in the current minute.
#[derive(Debug, Default)]
struct Failures {
    count: AtomicU64,
}

#[derive(Default)]
struct Counters {
    hits: AtomicU64,
    misses: AtomicU64,
    failures: AtomicU64,
    throttled: AtomicU64,
    argon2_runs: AtomicU64,
    argon2_waits: AtomicU64,
    argon2_in_flight: AtomicU64,
    max_argon2_in_flight: AtomicU64,
    refreshes: AtomicU64,
}

/// Which argon2 permits a verification waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lane {
    /// Addresses in good standing.
    Normal,
    /// Throttled addresses: one argon2 at a time between all of them, so they
    /// cannot take the permits of everyone else.
    Penalty,
}

struct Shared {
    store: Arc<dyn KeyStore>,
    /// HMAC keyed with a per-process random key: cache keys are digests,
    /// never the presented key. Keyed once; each digest starts from a copy.
    digester: hmac::Hmac<sha2::Sha256>,
    cache_ttl: Duration,
    /// Verified keys by digest. Concurrent misses for one digest share one
    /// load (moka's `try_get_with`): one store read, at most one argon2.
    fresh: moka::future::Cache<[u8; 32], Arc<CachedKey>>,
    /// Proofs of possession by digest (see [`KeyVerifierConfig::proof_ttl`]).
    proven: Cache<[u8; 32], Proof>,
    /// Digests refused recently: presenting the same wrong key again costs no
    /// store read and no argon2.
    rejected: Cache<[u8; 32], ()>,
    /// Ids evicted within the last TTL: a verification racing an eviction
    /// must not leave a stale entry behind.
    evicted: Cache<String, ()>,
    permits: Arc<Semaphore>,
    penalty: Arc<Semaphore>,
    failures_per_minute: u64,
    failures: Cache<IpAddr, Arc<Failures>>,
    blocked: Cache<IpAddr, Instant>,
    counters: Arc<Counters>,
}

/// Verifies presented API keys against a [`KeyStore`].
///
/// - A verified key is cached by the HMAC digest of the whole key for
///   `cache_ttl`; a key in use is re-read from the store in the background
///   after half of that (refresh ahead), so its callers wait neither for the
///   store nor for argon2, and a revocation on another node is seen within
///   `cache_ttl`. [`KeyVerifier::evict`] makes one on this node effective at once.
/// - Concurrent misses for one key share one store read and one argon2 run
///   (single-flight); argon2 runs are bounded by permits.
/// - Failures count against the client address; past the limit the address
///   is throttled: unproven keys from it get 429 (malformed or unknown ones
///   without any work, others after an argon2 run in a one-permit penalty
///   lane), but a key that verifies still gets through: the lockout never
///   refuses the credential it protects.
pub struct KeyVerifier {
    shared: Arc<Shared>,
}

impl fmt::Debug for KeyVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyVerifier")
            .field("stats", &self.cache_stats())
            .finish_non_exhaustive()
    }
}

fn elapsed_since(t: Instant) -> Duration {
    Instant::now().saturating_duration_since(t)
}

impl KeyVerifier {
    /// A verifier with default tuning (60 s cache, 2 argon2 permits, 20 failures/min/address).
    pub fn new(store: Arc<dyn KeyStore>) -> Self {
        Self::with_config(store, KeyVerifierConfig::default())
    }

    /// A verifier with explicit tuning.
    pub fn with_config(store: Arc<dyn KeyStore>, cfg: KeyVerifierConfig) -> Self {
        let capacity = cfg.cache_capacity.max(1);
        Self {
            shared: Arc::new(Shared {
                store,
                digester: keyed_digester(),
                cache_ttl: cfg.cache_ttl,
                fresh: moka::future::Cache::builder()
                    .max_capacity(capacity)
                    .time_to_live(cfg.cache_ttl)
                    .support_invalidation_closures()
                    .build(),
                proven: Cache::builder()
                    .max_capacity(capacity)
                    .time_to_live(cfg.proof_ttl)
                    .build(),
                rejected: Cache::builder()
                    .max_capacity(capacity)
                    .time_to_live(cfg.cache_ttl.max(Duration::from_secs(1)))
                    .build(),
                evicted: Cache::builder()
                    .max_capacity(10_000)
                    .time_to_live(cfg.cache_ttl.max(Duration::from_secs(1)))
                    .build(),
                permits: Arc::new(Semaphore::new(cfg.argon2_permits.max(1))),
                penalty: Arc::new(Semaphore::new(1)),
                failures_per_minute: u64::from(cfg.failures_per_minute.max(1)),
                failures: Cache::builder()
                    .max_capacity(cfg.tracked_addresses.max(1))
                    .time_to_live(Duration::from_secs(60))
                    .build(),
                blocked: Cache::builder()
                    .max_capacity(cfg.tracked_addresses.max(1))
                    .time_to_live(Duration::from_secs(60))
                    .build(),
                counters: Arc::default(),
            }),
        }
    }

    /// Verifies a presented key (from `Authorization: Bearer` or `X-API-Key`)
    /// for a caller at `client_ip`.
    ///
    /// Expiry is re-checked on every hit. Failures (malformed, unknown, wrong
    /// secret, expired, revoked) count against the address; see the type's
    /// documentation for what a throttled address still gets.
    #[tracing::instrument(skip_all, fields(client.ip = %client_ip))]
    pub async fn verify(
        &self,
        presented: &str,
        client_ip: IpAddr,
        now_ms: i64,
    ) -> Result<Principal> {
        let sh = &self.shared;
        let bucket = crate::client_addr::bucket(client_ip);
        let digest = sh.digest(presented);
        if let Some(hit) = sh.fresh.get(&digest).await {
            sh.counters.hits.fetch_add(1, Ordering::Relaxed);
            if hit.expires_at.is_some_and(|e| e <= now_ms) {
                sh.fresh.invalidate(&digest).await;
                return Err(sh.note_failure(bucket, AuthError::KeyExpired));
            }
            self.maybe_refresh(digest, &hit);
            return Ok(principal(&hit));
        }
        sh.counters.misses.fetch_add(1, Ordering::Relaxed);
        let throttled = sh.throttled_for(bucket);
        let lane = match throttled {
            // A key this process has seen verify goes through as usual.
            Some(_) if sh.proven.contains_key(&digest) => Lane::Normal,
            Some(retry_after) => {
                // Refuse what needs no work to refuse.
                if parse_presented(presented).is_err() || sh.rejected.contains_key(&digest) {
                    sh.counters.throttled.fetch_add(1, Ordering::Relaxed);
                    return Err(AuthError::TooManyFailures { retry_after });
                }
                Lane::Penalty
            }
            None => {
                if sh.rejected.contains_key(&digest) {
                    return Err(sh.note_failure(bucket, AuthError::InvalidApiKey));
                }
                Lane::Normal
            }
        };
        let loaded = sh
            .fresh
            .try_get_with(digest, {
                let sh = self.shared.clone();
                let presented = SecretString::new(presented);
                async move { sh.load(presented.expose(), digest, now_ms, lane).await }
            })
            .await;
        match loaded {
            Ok(key) => {
                if sh.evicted.contains_key(&key.id) {
                    sh.fresh.invalidate(&digest).await;
                }
                if key.expires_at.is_some_and(|e| e <= now_ms) {
                    sh.fresh.invalidate(&digest).await;
                    return Err(sh.note_failure(bucket, AuthError::KeyExpired));
                }
                Ok(principal(&key))
            }
            Err(e) => match &*e {
                AuthError::InvalidApiKey | AuthError::KeyExpired | AuthError::KeyRevoked => {
                    let err = sh.note_failure(bucket, (*e).clone());
                    match throttled {
                        Some(retry_after) if !matches!(err, AuthError::TooManyFailures { .. }) => {
                            Err(AuthError::TooManyFailures { retry_after })
                        }
                        _ => Err(err),
                    }
                }
                other => Err(other.clone()),
            },
        }
    }

    /// Starts a background re-read of a key in use once half its TTL is gone.
    fn maybe_refresh(&self, digest: [u8; 32], hit: &Arc<CachedKey>) {
        let sh = &self.shared;
        if elapsed_since(hit.checked_at) < sh.cache_ttl / 2
            || hit.refreshing.swap(true, Ordering::AcqRel)
        {
            return;
        }
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            hit.refreshing.store(false, Ordering::Release);
            return;
        };
        let sh = self.shared.clone();
        let hit = hit.clone();
        rt.spawn(async move { sh.refresh(digest, hit).await });
    }

    /// Forgets cached verifications of key `id`; call on revoke or scope
    /// change. Effective at once on this node: the next call reads the store.
    /// (Proofs of possession stay: they say only that the key matches its
    /// hash, and spare argon2 work on a revoked key that keeps being sent.)
    pub fn evict(&self, id: &str) {
        let sh = &self.shared;
        sh.evicted.insert(id.to_owned(), ());
        let owned = id.to_owned();
        if sh
            .fresh
            .invalidate_entries_if(move |_, k| k.id == owned)
            .is_err()
        {
            sh.fresh.invalidate_all();
        }
    }

    /// Forgets every cached verification and refusal (the store may have
    /// changed in ways this node was not told about). Effective at once.
    pub fn evict_all(&self) {
        self.shared.fresh.invalidate_all();
        self.shared.rejected.invalidate_all();
    }

    /// Applies pending evictions of per-address and cached state (bounded
    /// without it); the engine calls it every minute.
    pub fn housekeeping(&self) {
        let sh = &self.shared;
        sh.proven.run_pending_tasks();
        sh.rejected.run_pending_tasks();
        sh.evicted.run_pending_tasks();
        sh.failures.run_pending_tasks();
        sh.blocked.run_pending_tasks();
    }

    /// Cache and argon2 counters for `/metrics`.
    pub fn cache_stats(&self) -> CacheStats {
        let sh = &self.shared;
        let c = &sh.counters;
        CacheStats {
            hits: c.hits.load(Ordering::Relaxed),
            misses: c.misses.load(Ordering::Relaxed),
            entries: sh.fresh.entry_count(),
            failures: c.failures.load(Ordering::Relaxed),
            throttled: c.throttled.load(Ordering::Relaxed),
            argon2_runs: c.argon2_runs.load(Ordering::Relaxed),
            argon2_waits: c.argon2_waits.load(Ordering::Relaxed),
            argon2_in_flight: c.argon2_in_flight.load(Ordering::Relaxed),
            max_argon2_in_flight: c.max_argon2_in_flight.load(Ordering::Relaxed),
            refreshes: c.refreshes.load(Ordering::Relaxed),
            tracked_addresses: sh.failures.entry_count(),
        }
    }
}

/// An HMAC-SHA-256 keyed with a fresh random key.
fn keyed_digester() -> hmac::Hmac<sha2::Sha256> {
    // One SHA-256 block of key: used as it is, and `new` cannot fail.
    let mut key = [0u8; 64];
    for half in key.chunks_exact_mut(32) {
        half.copy_from_slice(&rand::random::<[u8; 32]>());
    }
    <hmac::Hmac<sha2::Sha256> as KeyInit>::new(&key.into())
}

impl Shared {
    fn digest(&self, data: &str) -> [u8; 32] {
        let mut mac = self.digester.clone();
        mac.update(data.as_bytes());
        mac.finalize().into_bytes().into()
    }

    /// `Some(retry_after)` while `bucket` is throttled.
    fn throttled_for(&self, bucket: IpAddr) -> Option<Duration> {
        let until = self.blocked.get(&bucket)?;
        let now = Instant::now();
        (until > now).then(|| until - now)
    }

    fn note_failure(&self, bucket: IpAddr, err: AuthError) -> AuthError {
        self.counters.failures.fetch_add(1, Ordering::Relaxed);
        let f = self.failures.get_with(bucket, Arc::default);
        let n = f.count.fetch_add(1, Ordering::AcqRel) + 1;
        if n <= self.failures_per_minute {
            return err;
        }
        let retry_after = match self.throttled_for(bucket) {
            Some(d) => d,
            None => {
                let d = Duration::from_secs(60);
                self.blocked.insert(bucket, Instant::now() + d);
                d
            }
        };
        self.counters.throttled.fetch_add(1, Ordering::Relaxed);
        AuthError::TooManyFailures { retry_after }
    }

    async fn lookup(&self, id: &ApiKeyId) -> Result<Option<StoredKey>> {
        let store = self.store.clone();
        let lookup_id = id.clone();
        let record = tokio::task::spawn_blocking(move || store.get_key(lookup_id.as_str()))
            .await
            .map_err(|e| AuthError::Internal(format!("key lookup task: {e}")))?
            .map_err(|e| AuthError::Unavailable(format!("key store: {e}")))?;
        Ok(record.filter(|r| r.id == id.as_str()))
    }

    /// The one load of a cache miss: store read, argon2 unless this process
    /// already proved this exact key against this exact hash, then the
    /// revocation and expiry checks.
    async fn load(
        &self,
        presented: &str,
        digest: [u8; 32],
        now_ms: i64,
        lane: Lane,
    ) -> Result<Arc<CachedKey>> {
        let Ok((id, _)) = parse_presented(presented) else {
            self.rejected.insert(digest, ());
            return Err(AuthError::InvalidApiKey);
        };
        let Some(record) = self.lookup(&id).await? else {
            self.rejected.insert(digest, ());
            return Err(AuthError::InvalidApiKey);
        };
        let hash_fp = self.digest(&record.hash);
        let proven = self
            .proven
            .get(&digest)
            .is_some_and(|p| p.id == record.id && p.hash_fp == hash_fp);
        if !proven {
            if !self.argon2(presented, &record.hash, lane).await? {
                self.rejected.insert(digest, ());
                return Err(AuthError::InvalidApiKey);
            }
            self.proven.insert(
                digest,
                Proof {
                    id: record.id.clone(),
                    hash_fp,
                },
            );
        }
        // Only holders of the real key learn that it is revoked or expired.
        if record.revoked {
            return Err(AuthError::KeyRevoked);
        }
        if record.expires_at.is_some_and(|e| e <= now_ms) {
            return Err(AuthError::KeyExpired);
        }
        self.touch(&record.id, now_ms).await;
        Ok(Arc::new(CachedKey {
            id: record.id,
            scopes: record.scopes,
            expires_at: record.expires_at,
            hash_fp,
            checked_at: Instant::now(),
            refreshing: AtomicBool::new(false),
        }))
    }

    /// Re-reads a cached key so its TTL restarts without its callers waiting;
    /// a revoked, expired, deleted or re-hashed key is dropped instead.
    async fn refresh(&self, digest: [u8; 32], old: Arc<CachedKey>) {
        self.counters.refreshes.fetch_add(1, Ordering::Relaxed);
        let Ok(id) = ApiKeyId::parse(&old.id) else {
            self.fresh.invalidate(&digest).await;
            return;
        };
        let now_ms = flowgate_core::now_ms();
        match self.lookup(&id).await {
            Ok(Some(r))
                if !r.revoked
                    && r.expires_at.is_none_or(|e| e > now_ms)
                    && self.digest(&r.hash) == old.hash_fp =>
            {
                self.fresh
                    .insert(
                        digest,
                        Arc::new(CachedKey {
                            id: r.id,
                            scopes: r.scopes,
                            expires_at: r.expires_at,
                            hash_fp: old.hash_fp,
                            checked_at: Instant::now(),
                            refreshing: AtomicBool::new(false),
                        }),
                    )
                    .await;
                // An eviction racing this refresh wins.
                if self.evicted.contains_key(&old.id) {
                    self.fresh.invalidate(&digest).await;
                }
                self.touch(&old.id, now_ms).await;
            }
            Ok(_) => self.fresh.invalidate(&digest).await,
            Err(e) => {
                // Keep serving until the TTL; the next hit tries again.
                tracing::warn!(key.id = %old.id, error = %e, "refreshing a cached key failed");
                old.refreshing.store(false, Ordering::Release);
            }
        }
    }

    async fn argon2(&self, presented: &str, phc: &str, lane: Lane) -> Result<bool> {
        let sem = match lane {
            Lane::Normal => &self.permits,
            Lane::Penalty => &self.penalty,
        };
        let permit = match sem.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                self.counters.argon2_waits.fetch_add(1, Ordering::Relaxed);
                sem.clone()
                    .acquire_owned()
                    .await
                    .map_err(|e| AuthError::Internal(format!("argon2 permits: {e}")))?
            }
        };
        self.counters.argon2_runs.fetch_add(1, Ordering::Relaxed);
        let key = SecretString::new(presented);
        let hash = phc.to_owned();
        let span = tracing::Span::current();
        let counters = self.counters.clone();
        // Gauge and permit live in the blocking task, which always runs to
        // its end, even when the request that started it goes away.
        let ok = tokio::task::spawn_blocking(move || {
            let _g = span.enter();
            let running = counters.argon2_in_flight.fetch_add(1, Ordering::SeqCst) + 1;
            counters
                .max_argon2_in_flight
                .fetch_max(running, Ordering::SeqCst);
            let ok = verify_hash(key.expose(), &hash);
            counters.argon2_in_flight.fetch_sub(1, Ordering::SeqCst);
            // Release the permit only after the gauge is down.
            drop(permit);
            ok
        })
        .await;
        ok.map_err(|e| AuthError::Internal(format!("argon2 task: {e}")))
    }

    async fn touch(&self, id: &str, now_ms: i64) {
        let store = self.store.clone();
        let id_owned = id.to_owned();
        match tokio::task::spawn_blocking(move || store.touch_last_used(&id_owned, now_ms)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(key.id = id, error = %e, "recording key use failed"),
            Err(e) => tracing::warn!(key.id = id, error = %e, "recording key use panicked"),
        }
    }
}

fn principal(key: &CachedKey) -> Principal {
    Principal {
        kind: PrincipalKind::ApiKey,
        id: key.id.clone(),
        scopes: key.scopes.clone(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::sync::Mutex;

    #[derive(Default)]
    struct MemStore {
        keys: Mutex<HashMap<String, StoredKey>>,
        gets: AtomicU64,
        touches: Mutex<Vec<(String, i64)>>,
    }

    impl KeyStore for MemStore {
        fn get_key(&self, id: &str) -> flowgate_core::Result<Option<StoredKey>> {
            self.gets.fetch_add(1, Ordering::SeqCst);
            Ok(self.keys.lock().unwrap().get(id).cloned())
        }
        fn touch_last_used(&self, id: &str, now_ms: i64) -> flowgate_core::Result<()> {
            self.touches.lock().unwrap().push((id.to_owned(), now_ms));
            Ok(())
        }
    }

    fn add(store: &MemStore, scopes: &[&str], expires_at: Option<i64>) -> GeneratedKey {
        let (k, hash) = generate().unwrap();
        store.keys.lock().unwrap().insert(
            k.id.to_string(),
            StoredKey {
                id: k.id.to_string(),
                name: "test".into(),
                hash,
                scopes: scopes.iter().map(|s| s.to_string()).collect(),
                expires_at,
                revoked: false,
            },
        );
        k
    }

    const IP: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 1));
    const NOW: i64 = 1_700_000_000_000;

    #[test]
    fn generated_keys_parse_and_hash_is_owasp_argon2id() {
        let (k, hash) = generate().unwrap();
        let full = k.full_key.expose();
        assert_eq!(full.len(), KEY_LEN);
        assert!(full.starts_with("fgk_"));
        let (id, secret) = parse_presented(full).unwrap();
        assert_eq!(id, k.id);
        assert_eq!(URL_SAFE_NO_PAD.decode(secret).unwrap().len(), 32);
        assert!(
            hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{hash}"
        );
        assert!(verify_hash(full, &hash));
        assert!(!verify_hash(&full.replace(secret, &"A".repeat(43)), &hash));
        assert!(!verify_hash(full, "not a phc string"));
        assert!(!format!("{k:?}").contains(secret));
    }

    #[test]
    fn malformed_keys_are_refused() {
        let good = format!("fgk_{}_{}", "0123456789abcdef", "A".repeat(43));
        assert!(parse_presented(&good).is_ok());
        let cases = [
            String::new(),
            "fgk_".into(),
            good.replacen("fgk_", "fgx_", 1),
            good.replacen("0123456789abcdef", "0123456789ABCDEF", 1),
            good.replacen("0123456789abcdef_", "0123456789abcdef-", 1),
            format!("{good}A"),
            good[..good.len() - 1].to_string(),
            good.replacen("AAAA", "AA+/", 1),
            // Non-zero spare bits in the last character.
            format!("fgk_{}_{}B", "0123456789abcdef", "A".repeat(42)),
            // Multi-byte characters must not panic the split.
            format!("fgk_é123456789abcde_{}", "A".repeat(43)),
        ];
        for c in cases {
            assert_eq!(parse_presented(&c), Err(MalformedKey), "{c:?}");
        }
        assert!(ApiKeyId::parse("0123456789abcde").is_err());
        assert!(serde_json::from_str::<ApiKeyId>("\"xyz\"").is_err());
    }

    #[tokio::test]
    async fn verifies_caches_and_evicts() {
        let store = Arc::new(MemStore::default());
        let key = add(&store, &["billing:write"], None);
        let v = KeyVerifier::new(store.clone());
        let p = v.verify(key.full_key.expose(), IP, NOW).await.unwrap();
        assert_eq!(p.kind, PrincipalKind::ApiKey);
        assert_eq!(p.id, key.id.as_str());
        assert_eq!(p.scopes, vec!["billing:write".to_string()]);
        assert_eq!(store.touches.lock().unwrap().len(), 1);

        // Second call is a cache hit: no store lookup, no argon2.
        v.verify(key.full_key.expose(), IP, NOW + 1).await.unwrap();
        let s = v.cache_stats();
        assert_eq!((s.hits, s.misses, s.argon2_runs), (1, 1, 1));
        assert_eq!(store.gets.load(Ordering::SeqCst), 1);

        // Revoke: the store says so and the cache is evicted.
        store
            .keys
            .lock()
            .unwrap()
            .get_mut(key.id.as_str())
            .unwrap()
            .revoked = true;
        v.evict(key.id.as_str());
        let e = v
            .verify(key.full_key.expose(), IP, NOW + 2)
            .await
            .unwrap_err();
        assert!(matches!(e, AuthError::KeyRevoked), "{e:?}");
        assert_eq!(store.gets.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn wrong_secret_unknown_id_and_expiry_are_distinct() {
        let store = Arc::new(MemStore::default());
        let key = add(&store, &[], Some(NOW + 1_000));
        let v = KeyVerifier::new(store.clone());
        let (_, secret) = parse_presented(key.full_key.expose()).unwrap();
        let wrong = key.full_key.expose().replace(secret, &"A".repeat(43));
        let e = v.verify(&wrong, IP, NOW).await.unwrap_err();
        assert!(matches!(e, AuthError::InvalidApiKey), "{e:?}");
        let unknown = format!("fgk_{}_{}", "ffffffffffffffff", "A".repeat(43));
        let e = v.verify(&unknown, IP, NOW).await.unwrap_err();
        assert!(matches!(e, AuthError::InvalidApiKey), "{e:?}");

        // Valid now, cached, then expired on a later hit.
        v.verify(key.full_key.expose(), IP, NOW).await.unwrap();
        let e = v
            .verify(key.full_key.expose(), IP, NOW + 1_000)
            .await
            .unwrap_err();
        assert!(matches!(e, AuthError::KeyExpired), "{e:?}");
        // And expired when the store is consulted too (cache was dropped).
        let e = v
            .verify(key.full_key.expose(), IP, NOW + 5_000)
            .await
            .unwrap_err();
        assert!(matches!(e, AuthError::KeyExpired), "{e:?}");
    }

    #[tokio::test]
    async fn failures_are_limited_per_ip() {
        let store = Arc::new(MemStore::default());
        let v = KeyVerifier::with_config(
            store.clone(),
            KeyVerifierConfig {
                failures_per_minute: 3,
                ..Default::default()
            },
        );
        for _ in 0..3 {
            let e = v.verify("garbage", IP, NOW).await.unwrap_err();
            assert!(matches!(e, AuthError::InvalidApiKey), "{e:?}");
        }
        let e = v.verify("garbage", IP, NOW).await.unwrap_err();
        let AuthError::TooManyFailures { retry_after } = e else {
            panic!("expected TooManyFailures, got {e:?}")
        };
        assert!(retry_after > Duration::from_secs(30) && retry_after <= Duration::from_secs(60));
        assert_eq!(e_status(&v, IP).await, 429);
        // Another address is unaffected.
        let other: IpAddr = "198.51.100.7".parse().unwrap();
        let e = v.verify("garbage", other, NOW).await.unwrap_err();
        assert!(matches!(e, AuthError::InvalidApiKey), "{e:?}");
        // Blocked callers cost no store lookups.
        assert_eq!(store.gets.load(Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn a_throttled_address_still_gets_a_valid_key_through() {
        let store = Arc::new(MemStore::default());
        let good = add(&store, &["admin"], None);
        let fresh = add(&store, &["billing:write"], None);
        let v = KeyVerifier::with_config(
            store.clone(),
            KeyVerifierConfig {
                failures_per_minute: 3,
                ..Default::default()
            },
        );
        // A key proven before the lockout, with its cache entry gone.
        v.verify(good.full_key.expose(), IP, NOW).await.unwrap();
        v.shared.fresh.invalidate_all();
        let (_, secret) = parse_presented(good.full_key.expose()).unwrap();
        for i in 0..6u8 {
            let wrong = good
                .full_key
                .expose()
                .replace(secret, &URL_SAFE_NO_PAD.encode([i; 32]));
            let _ = v.verify(&wrong, IP, NOW).await;
        }
        assert_eq!(
            v.verify("garbage", IP, NOW)
                .await
                .unwrap_err()
                .http_status(),
            429
        );
        // The proven key, and a key never seen before, both verify.
        let p = v.verify(good.full_key.expose(), IP, NOW).await.unwrap();
        assert_eq!(p.scopes, vec!["admin".to_string()]);
        v.verify(fresh.full_key.expose(), IP, NOW).await.unwrap();
        // A wrong secret from the throttled address is still refused (429),
        // and re-presenting it costs no argon2.
        let wrong = fresh.full_key.expose().replace(
            parse_presented(fresh.full_key.expose()).unwrap().1,
            &"A".repeat(43),
        );
        let e = v.verify(&wrong, IP, NOW).await.unwrap_err();
        assert!(matches!(e, AuthError::TooManyFailures { .. }), "{e:?}");
        let runs = v.cache_stats().argon2_runs;
        let e = v.verify(&wrong, IP, NOW).await.unwrap_err();
        assert!(matches!(e, AuthError::TooManyFailures { .. }), "{e:?}");
        assert_eq!(v.cache_stats().argon2_runs, runs);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_misses_share_one_verification() {
        let store = Arc::new(MemStore::default());
        let key = add(&store, &["billing:write"], None);
        let v = Arc::new(KeyVerifier::new(store.clone()));
        let barrier = Arc::new(tokio::sync::Barrier::new(16));
        let tasks: Vec<_> = (0..16)
            .map(|_| {
                let v = v.clone();
                let b = barrier.clone();
                let full = key.full_key.expose().to_owned();
                tokio::spawn(async move {
                    b.wait().await;
                    v.verify(&full, IP, NOW).await
                })
            })
            .collect();
        for t in tasks {
            assert_eq!(t.await.unwrap().unwrap().id, key.id.as_str());
        }
        let s = v.cache_stats();
        assert_eq!(s.argon2_runs, 1, "{s:?}");
        assert_eq!(store.gets.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn re_verification_after_expiry_needs_no_argon2() {
        let store = Arc::new(MemStore::default());
        let key = add(&store, &[], None);
        // No cache at all: every call reads the store.
        let v = KeyVerifier::with_config(
            store.clone(),
            KeyVerifierConfig {
                cache_ttl: Duration::ZERO,
                ..Default::default()
            },
        );
        for i in 0..3 {
            v.verify(key.full_key.expose(), IP, NOW + i).await.unwrap();
        }
        assert_eq!(v.cache_stats().argon2_runs, 1);
        assert_eq!(store.gets.load(Ordering::SeqCst), 3);
        // A revocation seen in the store is effective although proven.
        store
            .keys
            .lock()
            .unwrap()
            .get_mut(key.id.as_str())
            .unwrap()
            .revoked = true;
        let e = v.verify(key.full_key.expose(), IP, NOW).await.unwrap_err();
        assert!(matches!(e, AuthError::KeyRevoked), "{e:?}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn keys_in_use_are_refreshed_ahead_and_revocation_reaches_them() {
        let store = Arc::new(MemStore::default());
        let key = add(&store, &[], None);
        let v = KeyVerifier::with_config(
            store.clone(),
            KeyVerifierConfig {
                cache_ttl: Duration::from_secs(3_600),
                ..Default::default()
            },
        );
        v.verify(key.full_key.expose(), IP, NOW).await.unwrap();
        // Age the entry past half its TTL: the next hit is served from the
        // cache and starts a background re-read.
        let digest = v.shared.digest(key.full_key.expose());
        let old = v.shared.fresh.get(&digest).await.unwrap();
        let aged = Arc::new(CachedKey {
            id: old.id.clone(),
            scopes: old.scopes.clone(),
            expires_at: old.expires_at,
            hash_fp: old.hash_fp,
            checked_at: Instant::now() - Duration::from_secs(1_801),
            refreshing: AtomicBool::new(false),
        });
        v.shared.fresh.insert(digest, aged).await;
        // Revoked on "another node": only the store knows.
        store
            .keys
            .lock()
            .unwrap()
            .get_mut(key.id.as_str())
            .unwrap()
            .revoked = true;
        v.verify(key.full_key.expose(), IP, NOW).await.unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while v.shared.fresh.get(&digest).await.is_some() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let e = v.verify(key.full_key.expose(), IP, NOW).await.unwrap_err();
        assert!(matches!(e, AuthError::KeyRevoked), "{e:?}");
        let s = v.cache_stats();
        assert_eq!((s.refreshes, s.argon2_runs), (1, 1), "{s:?}");
    }

    #[tokio::test]
    async fn failure_state_is_bounded() {
        let store = Arc::new(MemStore::default());
        let v = KeyVerifier::with_config(
            store,
            KeyVerifierConfig {
                tracked_addresses: 50,
                cache_capacity: 50,
                ..Default::default()
            },
        );
        for i in 0..2_000u32 {
            let ip = IpAddr::V4(std::net::Ipv4Addr::from(i));
            let _ = v.verify(&format!("garbage-{i}"), ip, NOW).await;
        }
        v.housekeeping();
        let s = v.cache_stats();
        assert!(s.tracked_addresses <= 50, "{s:?}");
        assert!(v.shared.rejected.entry_count() <= 50);
    }

    async fn e_status(v: &KeyVerifier, ip: IpAddr) -> u16 {
        v.verify("garbage", ip, NOW)
            .await
            .unwrap_err()
            .http_status()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn argon2_work_is_bounded_by_permits() {
        let store = Arc::new(MemStore::default());
        let keys: Vec<_> = (0..3).map(|_| add(&store, &[], None)).collect();
        let v = Arc::new(KeyVerifier::with_config(
            store.clone(),
            KeyVerifierConfig {
                argon2_permits: 1,
                ..Default::default()
            },
        ));
        let tasks: Vec<_> = keys
            .iter()
            .map(|k| {
                let v = v.clone();
                let full = k.full_key.expose().to_owned();
                tokio::spawn(async move { v.verify(&full, IP, NOW).await })
            })
            .collect();
        for t in tasks {
            t.await.unwrap().unwrap();
        }
        let s = v.cache_stats();
        assert_eq!(s.argon2_runs, 3);
        assert!(s.argon2_waits >= 1, "{s:?}");
        assert_eq!(s.max_argon2_in_flight, 1, "{s:?}");
    }

    #[tokio::test]
    async fn cache_is_keyed_by_whole_key_not_id() {
        let store = Arc::new(MemStore::default());
        let key = add(&store, &[], None);
        let v = KeyVerifier::new(store.clone());
        v.verify(key.full_key.expose(), IP, NOW).await.unwrap();
        let (_, secret) = parse_presented(key.full_key.expose()).unwrap();
        let forged = key
            .full_key
            .expose()
            .replace(secret, &format!("{}A", "B".repeat(42)));
        assert!(v.verify(&forged, IP, NOW).await.is_err());
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod props {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Any input is either refused or has exactly the documented shape.
        #[test]
        fn parse_never_panics(s in "\\PC{0,80}") {
            if let Ok((id, secret)) = parse_presented(&s) {
                prop_assert_eq!(s.len(), KEY_LEN);
                prop_assert_eq!(format!("fgk_{id}_{secret}"), s);
            }
        }

        /// Keys of the right shape parse back to their parts.
        #[test]
        fn shaped_keys_parse(id in "[0-9a-f]{16}", secret in proptest::array::uniform32(any::<u8>())) {
            let s = URL_SAFE_NO_PAD.encode(secret);
            let key = format!("fgk_{id}_{s}");
            let (pid, psecret) = parse_presented(&key).unwrap();
            prop_assert_eq!(pid.as_str(), id.as_str());
            prop_assert_eq!(psecret, s.as_str());
        }
    }
}
