//! Layered configuration: built-in defaults → `flowgate.toml` → `FLOWGATE_*`
//! environment variables (SPEC §6). Validated once at start; errors name the key.

use anyhow::{bail, Context};
use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The whole configuration.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// `[server]`.
    pub server: ServerConfig,
    /// `[database]`.
    pub database: DatabaseConfig,
    /// `[http]` (outbound calls from flows).
    pub http: HttpConfig,
    /// `[secrets]`.
    pub secrets: SecretsConfig,
    /// `[runs]`.
    pub runs: RunsConfig,
    /// `[oauth2]`; off unless issuer and JWKS URL are set.
    pub oauth2: OAuth2Config,
    /// `[log]`.
    pub log: LogConfig,
    /// `[idempotency]`.
    pub idempotency: IdempotencyConfig,
    /// `[auth]`.
    pub auth: AuthConfig,
    /// `[retention]`.
    pub retention: RetentionConfig,
    /// `[cluster]`: heartbeats and change checks between nodes.
    pub cluster: ClusterConfig,
}

/// `[cluster]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterConfig {
    /// Milliseconds between heartbeats of this node.
    pub heartbeat_ms: u64,
    /// Heartbeats a node may miss before it is shown as gone and its runs
    /// are released to the other nodes.
    pub missed_heartbeats: u32,
    /// Milliseconds between checks of the change sequence, the fallback for a
    /// missed change notification (PostgreSQL).
    pub change_check_ms: u64,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        Self {
            heartbeat_ms: 500,
            missed_heartbeats: 3,
            change_check_ms: 5_000,
        }
    }
}

impl ClusterConfig {
    /// The engine's view.
    pub fn to_engine(&self) -> flowgate_engine::cluster::ClusterSettings {
        flowgate_engine::cluster::ClusterSettings {
            heartbeat: std::time::Duration::from_millis(self.heartbeat_ms),
            missed_heartbeats: self.missed_heartbeats,
            change_check: std::time::Duration::from_millis(self.change_check_ms),
        }
    }
}

/// `[retention]`: days finished work is kept (0 keeps it forever).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetentionConfig {
    /// Finished runs with their logs.
    pub runs_days: u64,
    /// Audit entries.
    pub audit_days: u64,
    /// Dispatched events and schedule ticks.
    pub events_days: u64,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        Self {
            runs_days: 30,
            audit_days: 90,
            events_days: 30,
        }
    }
}

impl RetentionConfig {
    /// The engine's view: `None` for "keep forever".
    pub fn to_engine(&self) -> flowgate_engine::Retention {
        let days =
            |d: u64| (d > 0).then(|| std::time::Duration::from_secs(d.saturating_mul(86_400)));
        flowgate_engine::Retention {
            runs: days(self.runs_days),
            audit: days(self.audit_days),
            events: days(self.events_days),
        }
    }
}

/// `[auth]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// Seconds a verified API key is trusted without argon2; also the longest a
    /// revocation made on another node takes to reach this one.
    pub key_cache_seconds: u64,
    /// Per-address limit for unauthenticated calls (`N/second|minute|hour`).
    pub anonymous_rate: Option<String>,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            key_cache_seconds: 10,
            anonymous_rate: None,
        }
    }
}

/// `[server]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Listen address.
    pub listen: String,
    /// Seconds in-flight requests get to finish on shutdown.
    pub shutdown_grace_secs: u64,
    /// HTTP worker threads (0 = number of cores).
    pub workers: usize,
    /// Base URL partners use, for generated docs (default: `http://<listen>`).
    pub public_url: Option<String>,
    /// Reverse proxies (addresses or CIDR blocks) whose `X-Forwarded-For`
    /// names the client; empty: the TCP peer is the client. A list, or one
    /// comma-separated string (as in `FLOWGATE_TRUSTED_PROXIES`).
    #[serde(deserialize_with = "string_list")]
    pub trusted_proxies: Vec<String>,
    /// Seconds a request body may take to arrive in full (then 408).
    pub body_timeout_secs: u64,
    /// This node's id in the cluster (default: `node-<uuidv7>`, new at each start).
    pub node_id: Option<String>,
}

/// A list of strings given as a list or as one comma-separated string.
fn string_list<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum List {
        One(String),
        Many(Vec<String>),
    }
    Ok(match List::deserialize(d)? {
        List::One(s) => s
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect(),
        List::Many(v) => v,
    })
}

/// `[database]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseConfig {
    /// `sqlite://path` or `postgres://…`.
    pub url: String,
    /// Connections in the pool (default: 8 for SQLite, 16 for PostgreSQL).
    pub pool_size: Option<u32>,
}

/// `[http]`.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Allow flows to call loopback/private/link-local addresses.
    pub allow_private_hosts: bool,
}

/// `[secrets]`.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct SecretsConfig {
    /// Base64 of 32 bytes; generated into the data directory when unset.
    pub key: Option<String>,
}

/// `[runs]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RunsConfig {
    /// Lease length; a dead node's runs are claimed again after this.
    pub lease_seconds: u64,
    /// Concurrent async runs per node.
    pub workers: usize,
    /// Execution slots of the run pool (sync and async runs; default 4 × cores).
    pub pool_size: Option<usize>,
    /// Most of the pool one flow may hold, in percent.
    pub flow_share_percent: u8,
    /// Most of the pool one caller may hold, in percent.
    pub caller_share_percent: u8,
    /// Longest chain of runs triggered by events that runs caused.
    pub max_event_depth: u32,
    /// Longest a run executes inline on the HTTP worker before it moves to a
    /// run thread, in microseconds (0: always on a run thread).
    pub inline_budget_us: u64,
}

/// `[oauth2]`.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct OAuth2Config {
    /// Expected `iss`.
    pub issuer: Option<String>,
    /// Where the JWKS is fetched.
    pub jwks_url: Option<String>,
    /// Expected `aud`.
    pub audience: Option<String>,
    /// Require `typ: at+jwt` (RFC 9068).
    pub require_at_jwt: bool,
    /// Least seconds between JWKS refetches caused by unknown `kid`s (default 30).
    pub jwks_min_refetch_secs: Option<u64>,
    /// The issuer whose tokens the admin API accepts. Unset (the default):
    /// the admin API takes admin API keys only, never the partners' tokens.
    pub admin_issuer: Option<String>,
    /// Expected `aud` of admin tokens (required with `admin_issuer`).
    pub admin_audience: Option<String>,
    /// JWKS of the admin issuer (default: `jwks_url`).
    pub admin_jwks_url: Option<String>,
}

impl OAuth2Config {
    /// The admin API's OAuth2 settings, when an admin issuer is configured.
    pub fn admin_settings(&self) -> Option<flowgate_engine::OAuth2Settings> {
        let issuer = self.admin_issuer.clone()?;
        let jwks_url = self
            .admin_jwks_url
            .clone()
            .or_else(|| self.jwks_url.clone())?;
        Some(flowgate_engine::OAuth2Settings {
            issuer,
            jwks_url,
            audience: self.admin_audience.clone().unwrap_or_default(),
            require_at_jwt: self.require_at_jwt,
            jwks_min_refetch: std::time::Duration::from_secs(
                self.jwks_min_refetch_secs.unwrap_or(30),
            ),
        })
    }
}

/// `[log]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// `tracing` filter, e.g. `info,flowgate=debug`.
    pub filter: String,
}

/// `[idempotency]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IdempotencyConfig {
    /// How long a stored response is replayed.
    pub ttl_seconds: u64,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            server: ServerConfig {
                listen: "127.0.0.1:8080".into(),
                shutdown_grace_secs: 30,
                workers: 0,
                public_url: None,
                trusted_proxies: Vec::new(),
                body_timeout_secs: 30,
                node_id: None,
            },
            database: DatabaseConfig {
                url: "sqlite://./data/flowgate.db".into(),
                pool_size: None,
            },
            http: HttpConfig::default(),
            secrets: SecretsConfig::default(),
            runs: RunsConfig {
                lease_seconds: 30,
                workers: 16,
                pool_size: None,
                flow_share_percent: 50,
                caller_share_percent: 25,
                max_event_depth: 8,
                inline_budget_us: 2_000,
            },
            oauth2: OAuth2Config::default(),
            log: LogConfig {
                filter: "info".into(),
            },
            idempotency: IdempotencyConfig {
                ttl_seconds: 24 * 3600,
            },
            auth: AuthConfig::default(),
            retention: RetentionConfig::default(),
            cluster: ClusterConfig::default(),
        }
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        Config::default().server
    }
}
impl Default for DatabaseConfig {
    fn default() -> Self {
        Config::default().database
    }
}
impl Default for RunsConfig {
    fn default() -> Self {
        Config::default().runs
    }
}
impl Default for LogConfig {
    fn default() -> Self {
        Config::default().log
    }
}
impl Default for IdempotencyConfig {
    fn default() -> Self {
        Config::default().idempotency
    }
}

/// Environment variable → config key (SPEC §6, plus a few of our own).
const ENV_KEYS: &[(&str, &str)] = &[
    ("FLOWGATE_LISTEN", "server.listen"),
    ("FLOWGATE_PUBLIC_URL", "server.public_url"),
    ("FLOWGATE_SHUTDOWN_GRACE_SECS", "server.shutdown_grace_secs"),
    ("FLOWGATE_BODY_TIMEOUT_SECS", "server.body_timeout_secs"),
    ("FLOWGATE_NODE_ID", "server.node_id"),
    ("FLOWGATE_CLUSTER_HEARTBEAT_MS", "cluster.heartbeat_ms"),
    (
        "FLOWGATE_CLUSTER_MISSED_HEARTBEATS",
        "cluster.missed_heartbeats",
    ),
    (
        "FLOWGATE_CLUSTER_CHANGE_CHECK_MS",
        "cluster.change_check_ms",
    ),
    ("FLOWGATE_DATABASE_URL", "database.url"),
    ("FLOWGATE_DATABASE_POOL_SIZE", "database.pool_size"),
    ("FLOWGATE_ALLOW_PRIVATE_HOSTS", "http.allow_private_hosts"),
    ("FLOWGATE_SECRETS_KEY", "secrets.key"),
    ("FLOWGATE_RUN_LEASE_SECONDS", "runs.lease_seconds"),
    ("FLOWGATE_RUN_WORKERS", "runs.workers"),
    ("FLOWGATE_RUN_POOL_SIZE", "runs.pool_size"),
    ("FLOWGATE_RUN_FLOW_SHARE_PERCENT", "runs.flow_share_percent"),
    (
        "FLOWGATE_RUN_CALLER_SHARE_PERCENT",
        "runs.caller_share_percent",
    ),
    ("FLOWGATE_MAX_EVENT_DEPTH", "runs.max_event_depth"),
    ("FLOWGATE_RUN_INLINE_BUDGET_US", "runs.inline_budget_us"),
    ("FLOWGATE_OAUTH2_ISSUER", "oauth2.issuer"),
    ("FLOWGATE_OAUTH2_JWKS_URL", "oauth2.jwks_url"),
    ("FLOWGATE_OAUTH2_AUDIENCE", "oauth2.audience"),
    ("FLOWGATE_OAUTH2_REQUIRE_AT_JWT", "oauth2.require_at_jwt"),
    ("FLOWGATE_OAUTH2_ADMIN_ISSUER", "oauth2.admin_issuer"),
    ("FLOWGATE_OAUTH2_ADMIN_AUDIENCE", "oauth2.admin_audience"),
    ("FLOWGATE_OAUTH2_ADMIN_JWKS_URL", "oauth2.admin_jwks_url"),
    ("FLOWGATE_TRUSTED_PROXIES", "server.trusted_proxies"),
    ("FLOWGATE_LOG", "log.filter"),
    (
        "FLOWGATE_IDEMPOTENCY_TTL_SECONDS",
        "idempotency.ttl_seconds",
    ),
    ("FLOWGATE_RETENTION_RUNS_DAYS", "retention.runs_days"),
    ("FLOWGATE_RETENTION_AUDIT_DAYS", "retention.audit_days"),
    ("FLOWGATE_RETENTION_EVENTS_DAYS", "retention.events_days"),
    ("FLOWGATE_KEY_CACHE_SECONDS", "auth.key_cache_seconds"),
    ("FLOWGATE_ANONYMOUS_RATE", "auth.anonymous_rate"),
    (
        "FLOWGATE_OAUTH2_JWKS_MIN_REFETCH_SECS",
        "oauth2.jwks_min_refetch_secs",
    ),
];

/// Loads defaults, then the file (when given or when `./flowgate.toml` exists), then the environment.
pub fn load(path: Option<&Path>) -> anyhow::Result<Config> {
    let mut fig = Figment::from(Serialized::defaults(Config::default()));
    match path {
        Some(p) => {
            if !p.exists() {
                bail!("config file {} does not exist", p.display());
            }
            fig = fig.merge(Toml::file(p));
        }
        None => {
            if Path::new("flowgate.toml").exists() {
                fig = fig.merge(Toml::file("flowgate.toml"));
            }
        }
    }
    let names: Vec<&str> = ENV_KEYS.iter().map(|(k, _)| *k).collect();
    fig = fig.merge(
        Env::raw()
            .only(&names)
            .map(|k| {
                ENV_KEYS
                    .iter()
                    .find(|(e, _)| k.as_str().eq_ignore_ascii_case(e))
                    .map(|(_, key)| (*key).into())
                    .unwrap_or_else(|| k.into())
            })
            .split("."),
    );
    let config: Config = fig
        .extract()
        .map_err(|e| anyhow::anyhow!("invalid configuration: {e}"))?;
    config.validate()?;
    Ok(config)
}

impl Config {
    fn validate(&self) -> anyhow::Result<()> {
        self.server
            .listen
            .parse::<std::net::SocketAddr>()
            .with_context(|| {
                format!(
                    "server.listen `{}` is not an address like 127.0.0.1:8080",
                    self.server.listen
                )
            })?;
        let url = &self.database.url;
        if !(url.starts_with("sqlite:")
            || url.starts_with("postgres://")
            || url.starts_with("postgresql://"))
        {
            bail!("database.url `{url}` must start with sqlite://, postgres:// or postgresql://");
        }
        if self.database.pool_size == Some(0) {
            bail!("database.pool_size must be at least 1");
        }
        if self.server.body_timeout_secs == 0 {
            bail!("server.body_timeout_secs must be at least 1");
        }
        if let Some(id) = &self.server.node_id {
            let ok = (1..=64).contains(&id.len())
                && id
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
            if !ok {
                bail!("server.node_id `{id}` must be 1-64 letters, digits, `-`, `_` or `.`");
            }
        }
        if !(100..=60_000).contains(&self.cluster.heartbeat_ms) {
            bail!("cluster.heartbeat_ms must be between 100 and 60000");
        }
        if !(2..=100).contains(&self.cluster.missed_heartbeats) {
            bail!("cluster.missed_heartbeats must be between 2 and 100");
        }
        if !(100..=600_000).contains(&self.cluster.change_check_ms) {
            bail!("cluster.change_check_ms must be between 100 and 600000");
        }
        if self.runs.lease_seconds < 2 {
            bail!("runs.lease_seconds must be at least 2");
        }
        if self.runs.workers == 0 {
            bail!("runs.workers must be at least 1");
        }
        if self.runs.pool_size == Some(0) {
            bail!("runs.pool_size must be at least 1");
        }
        for (key, v) in [
            ("runs.flow_share_percent", self.runs.flow_share_percent),
            ("runs.caller_share_percent", self.runs.caller_share_percent),
        ] {
            if !(1..=100).contains(&v) {
                bail!("{key} must be between 1 and 100");
            }
        }
        if !(1..=1000).contains(&self.runs.max_event_depth) {
            bail!("runs.max_event_depth must be between 1 and 1000");
        }
        if self.runs.inline_budget_us > 100_000 {
            bail!("runs.inline_budget_us must be at most 100000 (0.1 s)");
        }
        match (&self.oauth2.issuer, &self.oauth2.jwks_url) {
            (Some(_), None) | (None, Some(_)) => {
                bail!("oauth2.issuer and oauth2.jwks_url must be set together")
            }
            (Some(_), Some(_)) if self.oauth2.audience.is_none() => {
                bail!(
                    "oauth2.audience must be set when OAuth2 is enabled (FLOWGATE_OAUTH2_AUDIENCE)"
                )
            }
            _ => {}
        }
        if let Some(r) = &self.auth.anonymous_rate {
            flowgate_core::manifest::RateSpec::parse(r)
                .map_err(|e| anyhow::anyhow!("auth.anonymous_rate: {e}"))?;
        }
        if self.auth.key_cache_seconds > 3600 {
            bail!("auth.key_cache_seconds must be at most 3600");
        }
        if let Some(k) = &self.secrets.key {
            decode_key(k).context("secrets.key")?;
        }
        self.trusted_proxies()?;
        let o = &self.oauth2;
        match (&o.admin_issuer, &o.admin_audience) {
            (None, None) => {}
            (Some(_), None) | (None, Some(_)) => bail!(
                "oauth2.admin_issuer and oauth2.admin_audience must be set together \
                 (FLOWGATE_OAUTH2_ADMIN_ISSUER, FLOWGATE_OAUTH2_ADMIN_AUDIENCE)"
            ),
            (Some(iss), Some(aud)) => {
                if o.admin_jwks_url.is_none() && o.jwks_url.is_none() {
                    bail!("oauth2.admin_issuer needs oauth2.admin_jwks_url (or oauth2.jwks_url)");
                }
                if o.issuer.as_deref() == Some(iss.as_str())
                    && o.audience.as_deref() == Some(aud.as_str())
                {
                    bail!(
                        "oauth2.admin_issuer/admin_audience must differ from oauth2.issuer/audience: \
                         the partners' tokens must not open the admin API"
                    );
                }
            }
        }
        Ok(())
    }

    /// `server.trusted_proxies`, parsed.
    pub fn trusted_proxies(&self) -> anyhow::Result<flowgate_auth::TrustedProxies> {
        flowgate_auth::TrustedProxies::parse(&self.server.trusted_proxies)
            .map_err(|e| anyhow::anyhow!("server.trusted_proxies: {e}"))
    }

    /// The folder that holds generated state (the SQLite file's folder, or `./data`).
    pub fn data_dir(&self) -> PathBuf {
        let url = &self.database.url;
        if let Some(path) = url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))
        {
            if !path.contains(":memory:") {
                if let Some(parent) = Path::new(path).parent() {
                    if !parent.as_os_str().is_empty() {
                        return parent.to_path_buf();
                    }
                }
            }
        }
        PathBuf::from("./data")
    }

    /// The 32-byte key that encrypts secrets at rest: configured, or read from
    /// (and on first start generated into) `<data dir>/secrets.key`.
    pub fn secrets_key(&self) -> anyhow::Result<[u8; 32]> {
        if let Some(r) = &self.auth.anonymous_rate {
            flowgate_core::manifest::RateSpec::parse(r)
                .map_err(|e| anyhow::anyhow!("auth.anonymous_rate: {e}"))?;
        }
        if self.auth.key_cache_seconds > 3600 {
            bail!("auth.key_cache_seconds must be at most 3600");
        }
        if let Some(k) = &self.secrets.key {
            return decode_key(k);
        }
        let dir = self.data_dir();
        let file = dir.join("secrets.key");
        if file.exists() {
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("reading {}", file.display()))?;
            return decode_key(text.trim())
                .with_context(|| format!("{} is not a valid key", file.display()));
        }
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let mut key = [0u8; 32];
        rand::RngCore::fill_bytes(&mut rand::rng(), &mut key);
        use base64::Engine as _;
        let text = base64::engine::general_purpose::STANDARD.encode(key);
        write_private(&file, &text).with_context(|| format!("writing {}", file.display()))?;
        Ok(key)
    }
}

fn decode_key(k: &str) -> anyhow::Result<[u8; 32]> {
    use base64::Engine as _;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(k.trim())
        .context("must be base64")?;
    bytes
        .try_into()
        .map_err(|_| anyhow::anyhow!("must decode to exactly 32 bytes"))
}

#[cfg(unix)]
fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(text.as_bytes())
}

#[cfg(not(unix))]
fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    std::fs::write(path, text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_validate_and_name_the_sqlite_data_dir() {
        let c = Config::default();
        c.validate().unwrap();
        assert_eq!(c.data_dir(), PathBuf::from("./data"));
        let mut c = Config::default();
        c.database.url = "sqlite:///var/lib/fg/db.sqlite".into();
        assert_eq!(c.data_dir(), PathBuf::from("/var/lib/fg"));
    }

    #[test]
    fn bad_values_are_refused_naming_the_key() {
        let mut c = Config::default();
        c.server.listen = "nowhere".into();
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("server.listen"));
        let mut c = Config::default();
        c.database.url = "mysql://x".into();
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("database.url"));
        let mut c = Config::default();
        c.oauth2.issuer = Some("https://idp".into());
        assert!(c.validate().unwrap_err().to_string().contains("oauth2"));
        let mut c = Config::default();
        c.auth.anonymous_rate = Some("5/fortnight".into());
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("auth.anonymous_rate"));
        let mut c = Config::default();
        c.server.trusted_proxies = vec!["10.0.0.0/8".into(), "proxy.local".into()];
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("server.trusted_proxies"));
        let mut c = Config::default();
        c.oauth2.issuer = Some("https://idp".into());
        c.oauth2.jwks_url = Some("https://idp/jwks".into());
        c.oauth2.audience = Some("api".into());
        c.oauth2.admin_issuer = Some("https://idp".into());
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("admin_audience"));
        c.oauth2.admin_audience = Some("api".into());
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("must differ"));
        c.oauth2.admin_audience = Some("flowgate-admin".into());
        c.validate().unwrap();
        assert_eq!(
            c.oauth2.admin_settings().map(|a| a.audience),
            Some("flowgate-admin".to_owned())
        );
        let mut c = Config::default();
        c.secrets.key = Some("c2hvcnQ=".into());
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("secrets.key"));
        let mut c = Config::default();
        c.runs.inline_budget_us = 0;
        c.validate().unwrap();
        c.runs.inline_budget_us = 100_001;
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("runs.inline_budget_us"));
    }

    #[test]
    fn node_id_and_cluster_settings_are_checked() {
        let mut c = Config::default();
        c.server.node_id = Some("eu-1.node_2".into());
        c.validate().unwrap();
        c.server.node_id = Some("has space".into());
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("server.node_id"));
        let mut c = Config::default();
        c.cluster.missed_heartbeats = 1;
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("cluster.missed_heartbeats"));
        let mut c = Config::default();
        c.cluster.heartbeat_ms = 10;
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("cluster.heartbeat_ms"));
        let s = Config::default().cluster.to_engine();
        assert_eq!(s.gone_after_ms(), 1_500);
    }

    #[test]
    fn retention_zero_keeps_forever() {
        let r = RetentionConfig {
            runs_days: 0,
            audit_days: 2,
            events_days: 30,
        }
        .to_engine();
        assert!(r.runs.is_none());
        assert_eq!(r.audit, Some(std::time::Duration::from_secs(2 * 86_400)));
    }

    #[test]
    fn file_values_are_read_and_unknown_keys_refused() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("flowgate.toml");
        std::fs::write(
            &f,
            "[server]\nlisten = \"127.0.0.1:9999\"\n[runs]\nlease_seconds = 7\n",
        )
        .unwrap();
        let c = load(Some(&f)).unwrap();
        assert_eq!(c.server.listen, "127.0.0.1:9999");
        assert_eq!(c.runs.lease_seconds, 7);
        std::fs::write(
            &f,
            "[server]\ntrusted_proxies = [\"10.0.0.0/8\", \"::1\"]\n",
        )
        .unwrap();
        let c = load(Some(&f)).unwrap();
        assert_eq!(c.server.trusted_proxies, vec!["10.0.0.0/8", "::1"]);
        std::fs::write(
            &f,
            "[server]\ntrusted_proxies = \"10.0.0.0/8, 127.0.0.1\"\n",
        )
        .unwrap();
        let c = load(Some(&f)).unwrap();
        assert_eq!(c.server.trusted_proxies, vec!["10.0.0.0/8", "127.0.0.1"]);
        assert!(c
            .trusted_proxies()
            .unwrap()
            .trusts("127.0.0.1".parse().unwrap()));
        std::fs::write(&f, "[server]\nlisten = \"127.0.0.1:9999\"\ncolour = 1\n").unwrap();
        assert!(load(Some(&f)).unwrap_err().to_string().contains("colour"));
        assert!(load(Some(&dir.path().join("missing.toml"))).is_err());
    }
}
