//! `flow.toml`: the manifest of a flow package, parsed once into typed values.
//! Every error names the file, line, column and key.

use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt;
use toml::Spanned;

use crate::FlowName;

/// The manifest's file name inside a package.
pub const MANIFEST_FILE: &str = "flow.toml";

/// A position in a source file (1-based line and column).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Pos {
    /// Line, 1-based.
    pub line: usize,
    /// Column, 1-based.
    pub column: usize,
}

impl Pos {
    /// Position of a byte offset in `src`.
    pub fn of_offset(src: &str, offset: usize) -> Self {
        let offset = offset.min(src.len());
        let before = &src[..offset];
        let line = before.matches('\n').count() + 1;
        let column = before.rfind('\n').map_or(offset, |nl| offset - nl - 1) + 1;
        Self { line, column }
    }
}

/// A manifest (or other package file) error with its location.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}:{column}: {}{message}", key.as_ref().map(|k| format!("`{k}`: ")).unwrap_or_default())]
pub struct ManifestError {
    /// File inside the package.
    pub file: String,
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
    /// The offending key, when one is to blame.
    pub key: Option<String>,
    /// What is wrong.
    pub message: String,
}

/// How an HTTP or webhook trigger answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunMode {
    /// Run now and return the flow's response.
    Sync,
    /// Queue durably and answer 202.
    Async,
}

/// Webhook signature scheme.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignatureScheme {
    /// Standard Webhooks (`webhook-id`, `webhook-timestamp`, `webhook-signature`).
    StandardWebhooks,
    /// Stripe (`Stripe-Signature: t=…,v1=…`).
    Stripe,
    /// GitHub (`X-Hub-Signature-256: sha256=…`).
    Github,
    /// Generic HMAC-SHA256 over the body.
    HmacSha256,
}

impl SignatureScheme {
    /// The manifest spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::StandardWebhooks => "standard-webhooks",
            Self::Stripe => "stripe",
            Self::Github => "github",
            Self::HmacSha256 => "hmac-sha256",
        }
    }
}

/// Encoding of a generic HMAC signature header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignatureEncoding {
    /// Lower-case hex.
    Hex,
    /// Standard base64.
    Base64,
}

/// `signature = { scheme, secret, header?, encoding?, prefix? }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignatureConfig {
    /// Scheme.
    pub scheme: SignatureScheme,
    /// Name of the secret-store entry holding the signing secret.
    pub secret: String,
    /// Header carrying the signature (generic scheme; default `x-signature`).
    pub header: String,
    /// Encoding (generic scheme; default hex).
    pub encoding: SignatureEncoding,
    /// Prefix before the encoded signature, e.g. `sha256=` (generic scheme).
    pub prefix: String,
}

/// A path suffix with `{param}` segments, e.g. `/invoices/{invoice_id}`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PathTemplate {
    raw: String,
    segments: Vec<Segment>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    Param(String),
}

impl PathTemplate {
    /// Parses `""` or `/a/{b}/c`.
    pub fn parse(raw: &str) -> Result<Self, String> {
        if raw.is_empty() || raw == "/" {
            return Ok(Self::default());
        }
        if !raw.starts_with('/') {
            return Err("must start with `/`".into());
        }
        if raw.len() > 512 {
            return Err("must be at most 512 characters".into());
        }
        let mut segments = Vec::new();
        let mut seen = Vec::new();
        for seg in raw[1..].trim_end_matches('/').split('/') {
            if seg.is_empty() {
                return Err("has an empty segment".into());
            }
            if let Some(name) = seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                let ok = !name.is_empty()
                    && name
                        .chars()
                        .next()
                        .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
                    && name
                        .chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
                if !ok {
                    return Err(format!("parameter `{name}` must match [a-z_][a-z0-9_]*"));
                }
                if seen.contains(&name) {
                    return Err(format!("parameter `{name}` appears twice"));
                }
                seen.push(name);
                segments.push(Segment::Param(name.to_owned()));
            } else if seg.contains(['{', '}', '?', '#', '%', ' ']) {
                return Err(format!("segment `{seg}` has a reserved character"));
            } else {
                segments.push(Segment::Literal(seg.to_owned()));
            }
        }
        Ok(Self {
            raw: raw.trim_end_matches('/').to_owned(),
            segments,
        })
    }

    /// The template as written (`""` for none).
    pub fn as_str(&self) -> &str {
        &self.raw
    }

    /// Names of the path parameters in order.
    pub fn params(&self) -> Vec<&str> {
        self.segments
            .iter()
            .filter_map(|s| match s {
                Segment::Param(p) => Some(p.as_str()),
                Segment::Literal(_) => None,
            })
            .collect()
    }

    /// Matches a concrete path suffix, returning the parameter values.
    pub fn matches(&self, path: &str) -> Option<BTreeMap<String, String>> {
        let trimmed = path.trim_end_matches('/');
        let parts: Vec<&str> = if trimmed.is_empty() {
            Vec::new()
        } else {
            trimmed.strip_prefix('/')?.split('/').collect()
        };
        if parts.len() != self.segments.len() {
            return None;
        }
        let mut params = BTreeMap::new();
        for (seg, part) in self.segments.iter().zip(parts) {
            match seg {
                Segment::Literal(l) if l == part => {}
                Segment::Literal(_) => return None,
                Segment::Param(_) if part.is_empty() => return None,
                Segment::Param(name) => {
                    params.insert(name.clone(), part.to_owned());
                }
            }
        }
        Some(params)
    }
}

/// `kind = "http"` or `kind = "webhook"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointTrigger {
    /// Upper-case method.
    pub method: String,
    /// Path suffix after `/flows/{flow}[/v{n}]`.
    pub path: PathTemplate,
    /// Sync or async.
    pub mode: RunMode,
    /// Signature check (webhooks).
    pub signature: Option<SignatureConfig>,
}

/// What to do with a due time while the previous run still runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Overlap {
    /// Record the tick as skipped.
    Skip,
    /// Queue it behind the running one.
    Queue,
}

/// What to do with due times missed while no node ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Misfire {
    /// Record them as skipped.
    Skip,
    /// Run once for all of them.
    RunOnce,
}

/// `kind = "schedule"`. The cron text is checked by the scheduler; its
/// position is kept so errors can point at it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduleTrigger {
    /// Cron expression, 5 or 6 fields.
    pub cron: String,
    /// Where `cron` is written.
    pub cron_pos: Pos,
    /// IANA zone name, default `UTC`.
    pub timezone: String,
    /// Where `timezone` is written (or the trigger, when defaulted).
    pub timezone_pos: Pos,
    /// Overlap policy (default skip).
    pub overlap: Overlap,
    /// Misfire policy (default skip).
    pub misfire: Misfire,
}

/// One `[[trigger]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trigger {
    /// API endpoint.
    Http(EndpointTrigger),
    /// Signed third-party call.
    Webhook(EndpointTrigger),
    /// Subscription to event types.
    Event {
        /// Event types (exact names).
        events: Vec<String>,
    },
    /// Cron schedule.
    Schedule(ScheduleTrigger),
}

/// `[auth] mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMode {
    /// API key only.
    ApiKey,
    /// OAuth2 bearer JWT only.
    OAuth2,
    /// Either.
    Any,
    /// Anonymous callers allowed.
    None,
}

impl AuthMode {
    /// The manifest spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ApiKey => "api_key",
            Self::OAuth2 => "oauth2",
            Self::Any => "any",
            Self::None => "none",
        }
    }
}

/// `[auth]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthConfig {
    /// Mode (default api_key).
    pub mode: AuthMode,
    /// Scopes all required.
    pub scopes: Vec<String>,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            mode: AuthMode::ApiKey,
            scopes: Vec::new(),
        }
    }
}

/// A sustained rate such as `600/minute`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateSpec {
    /// As written in the manifest.
    pub raw: String,
    /// Calls per window.
    pub count: u32,
    /// Window length in seconds.
    pub window_secs: u32,
}

impl RateSpec {
    /// Parses `N/second|minute|hour|day`.
    pub fn parse(s: &str) -> Result<Self, String> {
        let (n, unit) = s
            .split_once('/')
            .ok_or_else(|| format!("`{s}` must look like `600/minute`"))?;
        let count: u32 = n
            .trim()
            .parse()
            .map_err(|_| format!("`{n}` in `{s}` is not a positive whole number"))?;
        if count == 0 {
            return Err(format!(
                "`{s}` allows no calls; the count must be at least 1"
            ));
        }
        let window_secs = match unit.trim() {
            "second" | "s" | "sec" => 1,
            "minute" | "m" | "min" => 60,
            "hour" | "h" => 3600,
            "day" | "d" => 86_400,
            other => {
                return Err(format!(
                    "unit `{other}` in `{s}` must be second, minute, hour or day"
                ))
            }
        };
        Ok(Self {
            raw: s.to_owned(),
            count,
            window_secs,
        })
    }
}

/// Where a flow's `limits.rate` budget is kept.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum RateScope {
    /// Each node counts on its own: N nodes admit up to N × the rate.
    #[default]
    Node,
    /// The nodes share one budget through the database.
    Cluster,
}

/// `[limits]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Per-caller sustained rate.
    pub rate: Option<RateSpec>,
    /// Whether `rate` is counted per node (default) or across the cluster.
    pub scope: RateScope,
    /// Calls allowed at once (default: the rate's count).
    pub burst: Option<u32>,
    /// Wall clock for one run.
    pub timeout_ms: u64,
    /// Largest accepted request body.
    pub max_body_bytes: usize,
    /// Runs of this flow executing at once on one node (`None`: the server's
    /// per-flow share of the run pool, which also caps a larger value).
    pub concurrency: Option<u32>,
}

/// Default run timeout.
pub const DEFAULT_TIMEOUT_MS: u64 = 5_000;
/// Default body limit (1 MiB).
pub const DEFAULT_MAX_BODY_BYTES: usize = 1_048_576;

impl Default for Limits {
    fn default() -> Self {
        Self {
            rate: None,
            scope: RateScope::Node,
            burst: None,
            timeout_ms: DEFAULT_TIMEOUT_MS,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            concurrency: None,
        }
    }
}

/// `[retry]` for async runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryConfig {
    /// Attempts in all, counting the first.
    pub max_attempts: u32,
    /// Backoff kind.
    pub backoff: Backoff,
}

/// Backoff between attempts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backoff {
    /// Base 1 s, factor 2, jitter, capped at 10 min.
    Exponential,
    /// Always the base (1 s), with jitter.
    Fixed,
}

impl Default for RetryConfig {
    fn default() -> Self {
        Self {
            max_attempts: 5,
            backoff: Backoff::Exponential,
        }
    }
}

impl RetryConfig {
    /// Delay before attempt `next_attempt` (2 = first retry), without jitter, in ms.
    pub fn base_delay_ms(&self, next_attempt: u32) -> u64 {
        const BASE: u64 = 1_000;
        const CAP: u64 = 600_000;
        match self.backoff {
            Backoff::Fixed => BASE,
            Backoff::Exponential => {
                let exp = next_attempt.saturating_sub(2).min(20);
                (BASE << exp).min(CAP)
            }
        }
    }
}

/// A parsed, validated `flow.toml`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    /// Flow name; must equal the flow it is uploaded to.
    pub name: FlowName,
    /// Short title for docs.
    pub title: Option<String>,
    /// Longer description for docs.
    pub description: Option<String>,
    /// Script file name (default `main.rhai`).
    pub script: String,
    /// Triggers, in order.
    pub triggers: Vec<Trigger>,
    /// Inbound auth for http triggers.
    pub auth: AuthConfig,
    /// Limits.
    pub limits: Limits,
    /// Outbound host allow-list.
    pub http_allow: Vec<String>,
    /// Retries for async runs.
    pub retry: RetryConfig,
    /// Whether a breaking change against the live version needs `force` to publish.
    pub breaking_requires_force: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawManifest {
    name: Spanned<String>,
    title: Option<String>,
    description: Option<String>,
    script: Option<Spanned<String>>,
    #[serde(default)]
    trigger: Vec<Spanned<RawTrigger>>,
    auth: Option<RawAuth>,
    limits: Option<RawLimits>,
    http: Option<RawHttp>,
    retry: Option<RawRetry>,
    compat: Option<RawCompat>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTrigger {
    kind: Spanned<String>,
    method: Option<Spanned<String>>,
    path: Option<Spanned<String>>,
    mode: Option<Spanned<String>>,
    signature: Option<Spanned<RawSignature>>,
    events: Option<Spanned<Vec<String>>>,
    cron: Option<Spanned<String>>,
    timezone: Option<Spanned<String>>,
    overlap: Option<Spanned<String>>,
    misfire: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSignature {
    scheme: Spanned<String>,
    secret: Spanned<String>,
    header: Option<String>,
    encoding: Option<Spanned<String>>,
    prefix: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAuth {
    mode: Option<Spanned<String>>,
    #[serde(default)]
    scopes: Vec<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    rate: Option<Spanned<String>>,
    scope: Option<Spanned<String>>,
    burst: Option<Spanned<i64>>,
    timeout_ms: Option<Spanned<i64>>,
    max_body_bytes: Option<Spanned<i64>>,
    concurrency: Option<Spanned<i64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHttp {
    #[serde(default)]
    allow: Vec<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRetry {
    max_attempts: Option<Spanned<i64>>,
    backoff: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCompat {
    breaking_requires_force: Option<bool>,
}

struct Ctx<'a> {
    src: &'a str,
}

impl Ctx<'_> {
    fn err<T>(
        &self,
        span: std::ops::Range<usize>,
        key: &str,
        msg: impl fmt::Display,
    ) -> Result<T, ManifestError> {
        let pos = Pos::of_offset(self.src, span.start);
        Err(ManifestError {
            file: MANIFEST_FILE.into(),
            line: pos.line,
            column: pos.column,
            key: Some(key.into()),
            message: msg.to_string(),
        })
    }
    fn pos(&self, span: std::ops::Range<usize>) -> Pos {
        Pos::of_offset(self.src, span.start)
    }
}

/// Checks a scope name: `[a-z0-9][a-z0-9:_.-]*`, at most 64 characters.
pub fn is_valid_scope(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.chars()
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        && s.chars().all(|c| {
            c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, ':' | '_' | '.' | '-')
        })
}

/// Checks an event type: dotted lower-case words, e.g. `user.created`, at most 128 characters.
pub fn is_valid_event_type(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && s.split('.').all(|w| {
            !w.is_empty()
                && w.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
        })
}

impl Manifest {
    /// Parses and validates `flow.toml` source.
    pub fn parse(src: &str) -> Result<Self, ManifestError> {
        let raw: RawManifest = toml::from_str(src).map_err(|e| {
            let pos = e
                .span()
                .map(|s| Pos::of_offset(src, s.start))
                .unwrap_or(Pos { line: 1, column: 1 });
            let message = e.message().to_owned();
            let key = message
                .strip_prefix("unknown field `")
                .and_then(|r| r.split('`').next())
                .map(str::to_owned);
            ManifestError {
                file: MANIFEST_FILE.into(),
                line: pos.line,
                column: pos.column,
                key,
                message,
            }
        })?;
        let cx = Ctx { src };

        let name = match FlowName::parse(raw.name.get_ref()) {
            Ok(n) => n,
            Err(e) => return cx.err(raw.name.span(), "name", e),
        };
        let script = match raw.script {
            None => "main.rhai".to_owned(),
            Some(s) => {
                let v = s.get_ref();
                if !is_plain_file_name(v) || !v.ends_with(".rhai") {
                    return cx.err(
                        s.span(),
                        "script",
                        "must be a file name ending in .rhai, without folders",
                    );
                }
                v.clone()
            }
        };
        if raw.trigger.is_empty() {
            return Err(ManifestError {
                file: MANIFEST_FILE.into(),
                line: 1,
                column: 1,
                key: Some("trigger".into()),
                message: "a flow needs at least one [[trigger]]".into(),
            });
        }
        let mut triggers = Vec::new();
        for t in raw.trigger {
            let t_span = t.span();
            triggers.push(parse_trigger(&cx, t.into_inner(), t_span)?);
        }
        // Two endpoint triggers may not claim the same method and path.
        let mut seen: Vec<(String, String)> = Vec::new();
        for t in &triggers {
            if let Trigger::Http(e) | Trigger::Webhook(e) = t {
                let k = (e.method.clone(), e.path.as_str().to_owned());
                if seen.contains(&k) {
                    return Err(ManifestError {
                        file: MANIFEST_FILE.into(),
                        line: 1,
                        column: 1,
                        key: Some("trigger".into()),
                        message: format!("two triggers answer {} `{}`", k.0, k.1),
                    });
                }
                seen.push(k);
            }
        }

        let mut auth = AuthConfig::default();
        if let Some(a) = raw.auth {
            if let Some(m) = a.mode {
                auth.mode = match m.get_ref().as_str() {
                    "api_key" => AuthMode::ApiKey,
                    "oauth2" => AuthMode::OAuth2,
                    "any" => AuthMode::Any,
                    "none" => AuthMode::None,
                    other => {
                        return cx.err(
                            m.span(),
                            "auth.mode",
                            format!("`{other}` must be one of api_key, oauth2, any, none"),
                        )
                    }
                };
            }
            for s in a.scopes {
                if !is_valid_scope(s.get_ref()) {
                    return cx.err(
                        s.span(),
                        "auth.scopes",
                        format!("`{}` is not a valid scope name", s.get_ref()),
                    );
                }
                auth.scopes.push(s.into_inner());
            }
        }

        let mut limits = Limits::default();
        if let Some(l) = raw.limits {
            if let Some(r) = l.rate {
                match RateSpec::parse(r.get_ref()) {
                    Ok(spec) => limits.rate = Some(spec),
                    Err(e) => return cx.err(r.span(), "limits.rate", e),
                }
            }
            if let Some(sc) = l.scope {
                limits.scope = match sc.get_ref().as_str() {
                    "node" => RateScope::Node,
                    "cluster" => RateScope::Cluster,
                    _ => return cx.err(sc.span(), "limits.scope", "must be `node` or `cluster`"),
                };
                if limits.rate.is_none() {
                    return cx.err(sc.span(), "limits.scope", "needs `limits.rate`");
                }
            }
            if let Some(b) = l.burst {
                match u32::try_from(*b.get_ref()) {
                    Ok(v) if v >= 1 => limits.burst = Some(v),
                    _ => {
                        return cx.err(
                            b.span(),
                            "limits.burst",
                            "must be a whole number of at least 1",
                        )
                    }
                }
                if limits.rate.is_none() {
                    return cx.err(b.span(), "limits.burst", "needs `limits.rate`");
                }
            }
            if let Some(t) = l.timeout_ms {
                match u64::try_from(*t.get_ref()) {
                    Ok(v) if (1..=300_000).contains(&v) => limits.timeout_ms = v,
                    _ => {
                        return cx.err(
                            t.span(),
                            "limits.timeout_ms",
                            "must be between 1 and 300000",
                        )
                    }
                }
            }
            if let Some(m) = l.max_body_bytes {
                match usize::try_from(*m.get_ref()) {
                    Ok(v) if (1..=64 * 1024 * 1024).contains(&v) => limits.max_body_bytes = v,
                    _ => {
                        return cx.err(
                            m.span(),
                            "limits.max_body_bytes",
                            "must be between 1 and 67108864",
                        )
                    }
                }
            }
            if let Some(n) = l.concurrency {
                match u32::try_from(*n.get_ref()) {
                    Ok(v) if (1..=10_000).contains(&v) => limits.concurrency = Some(v),
                    _ => {
                        return cx.err(
                            n.span(),
                            "limits.concurrency",
                            "must be a whole number between 1 and 10000",
                        )
                    }
                }
            }
        }

        let mut http_allow = Vec::new();
        if let Some(h) = raw.http {
            for a in h.allow {
                let host = a.get_ref().trim().to_ascii_lowercase();
                let bare = host.strip_prefix("*.").unwrap_or(&host);
                let ok = !bare.is_empty()
                    && bare.len() <= 253
                    && bare.chars().all(|c| {
                        c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']')
                    });
                if !ok {
                    return cx.err(
                        a.span(),
                        "http.allow",
                        format!(
                            "`{}` is not a host name, `*.domain` or IP literal",
                            a.get_ref()
                        ),
                    );
                }
                http_allow.push(host);
            }
        }

        let mut retry = RetryConfig::default();
        if let Some(r) = raw.retry {
            if let Some(m) = r.max_attempts {
                match u32::try_from(*m.get_ref()) {
                    Ok(v) if (1..=100).contains(&v) => retry.max_attempts = v,
                    _ => {
                        return cx.err(m.span(), "retry.max_attempts", "must be between 1 and 100")
                    }
                }
            }
            if let Some(b) = r.backoff {
                retry.backoff = match b.get_ref().as_str() {
                    "exponential" => Backoff::Exponential,
                    "fixed" => Backoff::Fixed,
                    other => {
                        return cx.err(
                            b.span(),
                            "retry.backoff",
                            format!("`{other}` must be exponential or fixed"),
                        )
                    }
                };
            }
        }

        Ok(Self {
            name,
            title: raw.title,
            description: raw.description,
            script,
            triggers,
            auth,
            limits,
            http_allow,
            retry,
            breaking_requires_force: raw
                .compat
                .and_then(|c| c.breaking_requires_force)
                .unwrap_or(false),
        })
    }

    /// The endpoint triggers (http and webhook).
    pub fn endpoints(&self) -> impl Iterator<Item = (&Trigger, &EndpointTrigger)> {
        self.triggers.iter().filter_map(|t| match t {
            Trigger::Http(e) | Trigger::Webhook(e) => Some((t, e)),
            _ => None,
        })
    }

    /// Event types this flow subscribes to.
    pub fn subscribed_events(&self) -> Vec<&str> {
        self.triggers
            .iter()
            .filter_map(|t| match t {
                Trigger::Event { events } => Some(events.iter().map(String::as_str)),
                _ => None,
            })
            .flatten()
            .collect()
    }

    /// The schedule trigger, when there is one.
    pub fn schedule(&self) -> Option<&ScheduleTrigger> {
        self.triggers.iter().find_map(|t| match t {
            Trigger::Schedule(s) => Some(s),
            _ => None,
        })
    }
}

/// A file name with no folder part, not hidden.
pub fn is_plain_file_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && !s.starts_with('.')
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

fn parse_trigger(
    cx: &Ctx<'_>,
    t: RawTrigger,
    span: std::ops::Range<usize>,
) -> Result<Trigger, ManifestError> {
    let kind = t.kind.get_ref().as_str();
    let not_for = |present: bool,
                   key: &str,
                   sp: Option<std::ops::Range<usize>>|
     -> Result<(), ManifestError> {
        if present {
            cx.err(
                sp.unwrap_or(span.clone()),
                &format!("trigger.{key}"),
                format!("is not allowed for kind = \"{kind}\""),
            )
        } else {
            Ok(())
        }
    };
    match kind {
        "http" | "webhook" => {
            not_for(
                t.events.is_some(),
                "events",
                t.events.as_ref().map(Spanned::span),
            )?;
            not_for(t.cron.is_some(), "cron", t.cron.as_ref().map(Spanned::span))?;
            not_for(
                t.timezone.is_some(),
                "timezone",
                t.timezone.as_ref().map(Spanned::span),
            )?;
            not_for(
                t.overlap.is_some(),
                "overlap",
                t.overlap.as_ref().map(Spanned::span),
            )?;
            not_for(
                t.misfire.is_some(),
                "misfire",
                t.misfire.as_ref().map(Spanned::span),
            )?;
            let method = match &t.method {
                None => "POST".to_owned(),
                Some(m) => {
                    let up = m.get_ref().to_ascii_uppercase();
                    if !matches!(up.as_str(), "GET" | "POST" | "PUT" | "PATCH" | "DELETE") {
                        return cx.err(
                            m.span(),
                            "trigger.method",
                            format!("`{}` must be GET, POST, PUT, PATCH or DELETE", m.get_ref()),
                        );
                    }
                    up
                }
            };
            let path = match &t.path {
                None => PathTemplate::default(),
                Some(p) => match PathTemplate::parse(p.get_ref()) {
                    Ok(p) => p,
                    Err(e) => return cx.err(p.span(), "trigger.path", e),
                },
            };
            let mode = match &t.mode {
                None if kind == "http" => RunMode::Sync,
                None => RunMode::Async,
                Some(m) => match m.get_ref().as_str() {
                    "sync" => RunMode::Sync,
                    "async" => RunMode::Async,
                    other => {
                        return cx.err(
                            m.span(),
                            "trigger.mode",
                            format!("`{other}` must be sync or async"),
                        )
                    }
                },
            };
            let signature = match t.signature {
                None => None,
                Some(s) => {
                    if kind == "http" {
                        return cx.err(
                            s.span(),
                            "trigger.signature",
                            "is only for kind = \"webhook\"",
                        );
                    }
                    let s = s.into_inner();
                    let scheme = match s.scheme.get_ref().as_str() {
                        "standard-webhooks" => SignatureScheme::StandardWebhooks,
                        "stripe" => SignatureScheme::Stripe,
                        "github" => SignatureScheme::Github,
                        "hmac-sha256" => SignatureScheme::HmacSha256,
                        other => return cx.err(s.scheme.span(), "trigger.signature.scheme", format!("`{other}` must be standard-webhooks, stripe, github or hmac-sha256")),
                    };
                    if s.secret.get_ref().trim().is_empty() {
                        return cx.err(
                            s.secret.span(),
                            "trigger.signature.secret",
                            "must name a secret",
                        );
                    }
                    let encoding = match &s.encoding {
                        None => SignatureEncoding::Hex,
                        Some(e) => match e.get_ref().as_str() {
                            "hex" => SignatureEncoding::Hex,
                            "base64" => SignatureEncoding::Base64,
                            other => {
                                return cx.err(
                                    e.span(),
                                    "trigger.signature.encoding",
                                    format!("`{other}` must be hex or base64"),
                                )
                            }
                        },
                    };
                    Some(SignatureConfig {
                        scheme,
                        secret: s.secret.into_inner(),
                        header: s
                            .header
                            .unwrap_or_else(|| "x-signature".into())
                            .to_ascii_lowercase(),
                        encoding,
                        prefix: s.prefix.unwrap_or_default(),
                    })
                }
            };
            let e = EndpointTrigger {
                method,
                path,
                mode,
                signature,
            };
            Ok(if kind == "http" {
                Trigger::Http(e)
            } else {
                Trigger::Webhook(e)
            })
        }
        "event" => {
            not_for(
                t.method.is_some(),
                "method",
                t.method.as_ref().map(Spanned::span),
            )?;
            not_for(t.path.is_some(), "path", t.path.as_ref().map(Spanned::span))?;
            not_for(t.mode.is_some(), "mode", t.mode.as_ref().map(Spanned::span))?;
            not_for(
                t.signature.is_some(),
                "signature",
                t.signature.as_ref().map(Spanned::span),
            )?;
            not_for(t.cron.is_some(), "cron", t.cron.as_ref().map(Spanned::span))?;
            not_for(
                t.timezone.is_some(),
                "timezone",
                t.timezone.as_ref().map(Spanned::span),
            )?;
            not_for(
                t.overlap.is_some(),
                "overlap",
                t.overlap.as_ref().map(Spanned::span),
            )?;
            not_for(
                t.misfire.is_some(),
                "misfire",
                t.misfire.as_ref().map(Spanned::span),
            )?;
            let Some(ev) = t.events else {
                return cx.err(
                    span,
                    "trigger.events",
                    "kind = \"event\" needs `events = [\"type\", …]`",
                );
            };
            let ev_span = ev.span();
            let events = ev.into_inner();
            if events.is_empty() {
                return cx.err(
                    ev_span,
                    "trigger.events",
                    "must list at least one event type",
                );
            }
            if let Some(bad) = events.iter().find(|e| !is_valid_event_type(e)) {
                return cx.err(
                    ev_span,
                    "trigger.events",
                    format!("`{bad}` is not a valid event type (dotted lower-case words)"),
                );
            }
            Ok(Trigger::Event { events })
        }
        "schedule" => {
            not_for(
                t.method.is_some(),
                "method",
                t.method.as_ref().map(Spanned::span),
            )?;
            not_for(t.path.is_some(), "path", t.path.as_ref().map(Spanned::span))?;
            not_for(t.mode.is_some(), "mode", t.mode.as_ref().map(Spanned::span))?;
            not_for(
                t.signature.is_some(),
                "signature",
                t.signature.as_ref().map(Spanned::span),
            )?;
            not_for(
                t.events.is_some(),
                "events",
                t.events.as_ref().map(Spanned::span),
            )?;
            let Some(cron) = t.cron else {
                return cx.err(span, "trigger.cron", "kind = \"schedule\" needs `cron`");
            };
            let overlap = match &t.overlap {
                None => Overlap::Skip,
                Some(o) => match o.get_ref().as_str() {
                    "skip" => Overlap::Skip,
                    "queue" => Overlap::Queue,
                    other => {
                        return cx.err(
                            o.span(),
                            "trigger.overlap",
                            format!("`{other}` must be skip or queue"),
                        )
                    }
                },
            };
            let misfire = match &t.misfire {
                None => Misfire::Skip,
                Some(o) => match o.get_ref().as_str() {
                    "skip" => Misfire::Skip,
                    "run_once" => Misfire::RunOnce,
                    other => {
                        return cx.err(
                            o.span(),
                            "trigger.misfire",
                            format!("`{other}` must be skip or run_once"),
                        )
                    }
                },
            };
            let (timezone, timezone_pos) = match t.timezone {
                None => ("UTC".to_owned(), cx.pos(cron.span())),
                Some(z) => (z.get_ref().clone(), cx.pos(z.span())),
            };
            Ok(Trigger::Schedule(ScheduleTrigger {
                cron_pos: cx.pos(cron.span()),
                cron: cron.into_inner(),
                timezone,
                timezone_pos,
                overlap,
                misfire,
            }))
        }
        other => cx.err(
            t.kind.span(),
            "trigger.kind",
            format!("`{other}` must be http, webhook, event or schedule"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FULL: &str = r#"
name = "payment-webhook"
title = "Payment provider notifications"
description = "Marks the plan as paid."

[[trigger]]
kind = "webhook"
path = "/invoices/{invoice_id}"
signature = { scheme = "standard-webhooks", secret = "PAYMENTS_WEBHOOK_SECRET" }

[[trigger]]
kind = "schedule"
cron = "0 */15 * * * *"
timezone = "Europe/Amsterdam"
overlap = "queue"

[auth]
mode = "api_key"
scopes = ["billing:write"]

[limits]
rate = "600/minute"
burst = 50
timeout_ms = 5000

[http]
allow = ["api.partner.example", "*.crm.example"]

[retry]
max_attempts = 3
"#;

    #[test]
    fn parses_full_manifest() {
        let m = Manifest::parse(FULL).unwrap();
        assert_eq!(m.name.as_str(), "payment-webhook");
        assert_eq!(m.script, "main.rhai");
        let Trigger::Webhook(w) = &m.triggers[0] else {
            panic!("webhook expected")
        };
        assert_eq!(w.method, "POST");
        assert_eq!(w.mode, RunMode::Async);
        assert_eq!(w.path.params(), vec!["invoice_id"]);
        assert_eq!(
            w.signature.as_ref().unwrap().scheme,
            SignatureScheme::StandardWebhooks
        );
        let s = m.schedule().unwrap();
        assert_eq!(s.cron_pos.line, 13);
        assert_eq!(s.overlap, Overlap::Queue);
        assert_eq!(m.limits.rate.as_ref().unwrap().count, 600);
        assert_eq!(m.limits.rate.as_ref().unwrap().window_secs, 60);
        assert_eq!(m.retry.max_attempts, 3);
    }

    #[test]
    fn limits_scope_is_node_unless_cluster_is_asked() {
        let base = "name = \"a\"\n[[trigger]]\nkind = \"http\"\n[limits]\n";
        let node = Manifest::parse(&format!("{base}rate = \"5/second\"\n")).unwrap();
        assert_eq!(node.limits.scope, RateScope::Node);
        let cluster =
            Manifest::parse(&format!("{base}rate = \"5/second\"\nscope = \"cluster\"\n")).unwrap();
        assert_eq!(cluster.limits.scope, RateScope::Cluster);
        for (toml, why) in [
            (
                "rate = \"5/second\"\nscope = \"galaxy\"\n",
                "`node` or `cluster`",
            ),
            ("scope = \"cluster\"\n", "needs `limits.rate`"),
        ] {
            let e = Manifest::parse(&format!("{base}{toml}")).unwrap_err();
            assert_eq!(e.key.as_deref(), Some("limits.scope"), "{e}");
            assert!(e.to_string().contains(why), "{e}");
        }
    }

    #[test]
    fn limits_concurrency_is_parsed_and_checked() {
        let ok = Manifest::parse(
            "name = \"a\"\n[[trigger]]\nkind = \"http\"\n[limits]\nconcurrency = 3\n",
        )
        .unwrap();
        assert_eq!(ok.limits.concurrency, Some(3));
        for bad in ["0", "-1", "10001"] {
            let e = Manifest::parse(&format!(
                "name = \"a\"\n[[trigger]]\nkind = \"http\"\n[limits]\nconcurrency = {bad}\n"
            ))
            .unwrap_err();
            assert_eq!(e.key.as_deref(), Some("limits.concurrency"), "{bad}: {e}");
            assert_eq!(e.line, 5, "{bad}: {e}");
        }
    }

    #[test]
    fn bad_name_names_file_and_line() {
        let e =
            Manifest::parse("title = \"x\"\nname = \"Not A Slug\"\n[[trigger]]\nkind = \"http\"\n")
                .unwrap_err();
        assert_eq!((e.file.as_str(), e.line), ("flow.toml", 2));
        assert!(e.to_string().starts_with("flow.toml:2:8: `name`:"), "{e}");
    }

    #[test]
    fn unknown_key_names_line_and_key() {
        let e = Manifest::parse("name = \"a\"\ncolour = 3\n[[trigger]]\nkind = \"http\"\n")
            .unwrap_err();
        assert_eq!(e.line, 2);
        assert_eq!(e.key.as_deref(), Some("colour"));
        assert!(e.to_string().starts_with("flow.toml:2:1:"), "{e}");
    }

    #[test]
    fn bad_values_name_key() {
        let cases = [
            (
                "name = \"a\"\n[[trigger]]\nkind = \"carrier-pigeon\"\n",
                "trigger.kind",
                3,
            ),
            (
                "name = \"a\"\n[[trigger]]\nkind = \"http\"\n[limits]\nrate = \"5/fortnight\"\n",
                "limits.rate",
                5,
            ),
            (
                "name = \"a\"\n[[trigger]]\nkind = \"http\"\ncron = \"* * * * *\"\n",
                "trigger.cron",
                4,
            ),
            ("name = \"A b\"\n[[trigger]]\nkind = \"http\"\n", "name", 1),
            (
                "name = \"a\"\n[[trigger]]\nkind = \"http\"\npath = \"nope\"\n",
                "trigger.path",
                4,
            ),
            (
                "name = \"a\"\n[[trigger]]\nkind = \"event\"\n",
                "trigger.events",
                2,
            ),
            (
                "name = \"a\"\n[[trigger]]\nkind = \"http\"\n[auth]\nmode = \"magic\"\n",
                "auth.mode",
                5,
            ),
        ];
        for (src, key, line) in cases {
            let e = Manifest::parse(src).unwrap_err();
            assert_eq!(e.key.as_deref(), Some(key), "{src}: {e}");
            assert_eq!(e.line, line, "{src}: {e}");
        }
    }

    #[test]
    fn rates() {
        assert_eq!(RateSpec::parse("10/second").unwrap().window_secs, 1);
        assert_eq!(RateSpec::parse("5000/hour").unwrap().count, 5000);
        assert!(RateSpec::parse("0/second").is_err());
        assert!(RateSpec::parse("ten/second").is_err());
        assert!(RateSpec::parse("10").is_err());
    }

    #[test]
    fn path_templates() {
        let t = PathTemplate::parse("/invoices/{id}/lines").unwrap();
        let p = t.matches("/invoices/42/lines").unwrap();
        assert_eq!(p["id"], "42");
        assert!(t.matches("/invoices/42").is_none());
        assert!(t.matches("/invoices//lines").is_none());
        let empty = PathTemplate::parse("").unwrap();
        assert!(empty.matches("").is_some());
        assert!(empty.matches("/").is_some());
        assert!(empty.matches("/x").is_none());
        assert!(PathTemplate::parse("/{a}/{a}").is_err());
    }

    #[test]
    fn backoff_grows_and_caps() {
        let r = RetryConfig::default();
        assert_eq!(r.base_delay_ms(2), 1_000);
        assert_eq!(r.base_delay_ms(3), 2_000);
        assert_eq!(r.base_delay_ms(4), 4_000);
        assert_eq!(r.base_delay_ms(40), 600_000);
    }
}
