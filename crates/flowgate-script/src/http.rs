//! Outbound HTTP for `http::`: the [`HttpClient`] trait, the real client
//! ([`ReqwestHttp`]: DNS resolved and checked before connecting, pinned address,
//! size cap, no redirects) and [`MockHttp`] for fixtures and tests.

use parking_lot::Mutex;
use serde::Deserialize;
use serde_json::Value;
use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

/// One outbound request, already checked against the flow's allow list.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboundRequest {
    /// Upper-case method.
    pub method: String,
    /// Absolute `http`/`https` URL including the query.
    pub url: String,
    /// Header name (lower-case) → value.
    pub headers: BTreeMap<String, String>,
    /// Body bytes, if any.
    pub body: Option<Vec<u8>>,
    /// Timeout of this call.
    pub timeout: Duration,
    /// Whether private/loopback targets are allowed (server config).
    pub allow_private: bool,
    /// Largest response body accepted.
    pub max_response_bytes: usize,
}

/// The answer to an outbound request (any status).
#[derive(Debug, Clone, PartialEq)]
pub struct OutboundResponse {
    /// HTTP status.
    pub status: u16,
    /// Header name (lower-case) → value.
    pub headers: BTreeMap<String, String>,
    /// Parsed JSON body, or the text, or `null` when empty.
    pub body: Value,
}

/// Why an outbound call produced no response.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HttpError {
    /// The host is not on the allow list.
    #[error("host \"{0}\" is not in this flow's [http] allow list")]
    NotAllowed(String),
    /// The host resolves to a private, loopback or otherwise internal address.
    #[error("host \"{host}\" resolves to {addr}, a private or loopback address; outbound calls to internal networks are refused")]
    PrivateAddress {
        /// Host name.
        host: String,
        /// The refused address.
        addr: IpAddr,
    },
    /// The URL is not a valid absolute http(s) URL (quoted without its query).
    #[error("invalid URL `{}`", redact_url_query(.0))]
    InvalidUrl(String),
    /// The response body is larger than allowed.
    #[error("the response from \"{host}\" is larger than {limit} bytes")]
    ResponseTooLarge {
        /// Host name.
        host: String,
        /// The cap in bytes.
        limit: usize,
    },
    /// The call did not finish in time.
    #[error("the call to \"{host}\" timed out after {timeout_ms} ms")]
    Timeout {
        /// Host name.
        host: String,
        /// The timeout.
        timeout_ms: u64,
    },
    /// No mock matches (fixtures and tests); quoted without query values.
    #[error("no mock for {method} {}", redact_url_query(.url))]
    NoMock {
        /// Method.
        method: String,
        /// URL.
        url: String,
    },
    /// DNS, connection, TLS or protocol failure.
    #[error("{0}")]
    Network(String),
}

/// The placeholder that replaces query values in recorded URLs; a mock whose query
/// value is this matches any value of that parameter.
pub const REDACTED: &str = "[redacted]";

/// `url` with every query value replaced by `[redacted]`, user info and fragment
/// dropped: the form in which outbound URLs appear in errors and run records.
pub fn redact_url_query(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) => {
            let keys: Vec<String> = u.query_pairs().map(|(k, _)| k.into_owned()).collect();
            let _ = u.set_username("");
            let _ = u.set_password(None);
            u.set_fragment(None);
            u.set_query(None);
            let mut out = u.to_string();
            if !keys.is_empty() {
                let q: Vec<String> = keys
                    .iter()
                    .map(|k| {
                        let k: String =
                            url::form_urlencoded::byte_serialize(k.as_bytes()).collect();
                        format!("{k}={REDACTED}")
                    })
                    .collect();
                out.push('?');
                out.push_str(&q.join("&"));
            }
            out
        }
        Err(_) => {
            let cut = url.find(['?', '#']).unwrap_or(url.len());
            let mut out: String = url[..cut].chars().take(200).collect();
            if url[cut..].starts_with('?') {
                out.push('?');
                out.push_str(REDACTED);
            }
            out
        }
    }
}

/// Whether a mock's URL matches a request's: equal, or equal apart from query
/// values the mock gives as `[redacted]` (which match any value).
pub fn mock_url_matches(mock: &str, actual: &str) -> bool {
    if mock == actual {
        return true;
    }
    if !mock.contains(REDACTED) {
        return false;
    }
    let (Ok(mut m), Ok(mut a)) = (url::Url::parse(mock), url::Url::parse(actual)) else {
        return false;
    };
    let mq: Vec<(String, String)> = m.query_pairs().into_owned().collect();
    let aq: Vec<(String, String)> = a.query_pairs().into_owned().collect();
    m.set_query(None);
    a.set_query(None);
    m.set_fragment(None);
    a.set_fragment(None);
    m == a
        && mq.len() == aq.len()
        && mq
            .iter()
            .zip(&aq)
            .all(|((mk, mv), (ak, av))| mk == ak && (mv == REDACTED || mv == av))
}

/// Sends outbound requests. Blocking: called from the script's thread.
pub trait HttpClient: Send + Sync {
    /// Sends one request and returns any response, whatever its status.
    fn send(&self, req: OutboundRequest) -> Result<OutboundResponse, HttpError>;
}

/// Whether `host` (lower-case, IPv6 without brackets) is on the allow list:
/// exact names, `*.domain` for any sub-domain of `domain`, and IP literals.
pub fn host_allowed(host: &str, allow: &[String]) -> bool {
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_ascii_lowercase();
    let host = host.trim_end_matches('.');
    allow.iter().any(|entry| {
        let entry = entry
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_ascii_lowercase();
        match entry.strip_prefix("*.") {
            Some(domain) => host
                .strip_suffix(domain)
                .is_some_and(|rest| rest.len() > 1 && rest.ends_with('.')),
            None => {
                if let (Ok(a), Ok(b)) = (host.parse::<IpAddr>(), entry.parse::<IpAddr>()) {
                    a == b
                } else {
                    host == entry
                }
            }
        }
    })
}

/// Whether an address is internal: loopback, private (RFC 1918), link-local,
/// unspecified, CGNAT (100.64/10), ULA (fc00::/7), multicast, broadcast,
/// documentation, or an IPv4-mapped IPv6 form of one of those.
pub fn is_forbidden_ip(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || o[0] == 0
                || (o[0] == 100 && (o[1] & 0xc0) == 64)
                || (o[0] == 192 && o[1] == 0 && o[2] == 0)
                || (o[0] == 198 && (o[1] & 0xfe) == 18)
                || o[0] >= 240
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = embedded_ipv4(v6) {
                return v4.iter().any(|a| is_forbidden_ip(IpAddr::V4(*a)));
            }
            let s = v6.segments();
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (s[0] & 0xfe00) == 0xfc00
                || (s[0] & 0xffc0) == 0xfe80
                || (s[0] & 0xffc0) == 0xfec0
                || (s[0] == 0x2001 && s[1] == 0x0db8)
                || (s[0] == 0x0064 && s[1] == 0xff9b)
                || s[0] == 0x0100 && s[1..4] == [0, 0, 0]
        }
    }
}

/// The IPv4 addresses an IPv6 address embeds and would reach: IPv4-mapped
/// (`::ffff:a.b.c.d`), IPv4-translated (`::ffff:0:a.b.c.d`), IPv4-compatible
/// (`::a.b.c.d`), 6to4 (`2002::/16`), Teredo (`2001::/32`: server and client),
/// NAT64 (`64:ff9b::/96` and the local-use `64:ff9b:1::/48`).
fn embedded_ipv4(v6: std::net::Ipv6Addr) -> Option<Vec<std::net::Ipv4Addr>> {
    use std::net::Ipv4Addr;
    let s = v6.segments();
    let o = v6.octets();
    let v4 = |hi: u16, lo: u16| {
        let [a, b] = hi.to_be_bytes();
        let [c, d] = lo.to_be_bytes();
        Ipv4Addr::new(a, b, c, d)
    };
    if let Some(a) = v6.to_ipv4_mapped() {
        return Some(vec![a]);
    }
    // ::ffff:0:a.b.c.d (SIIT)
    if s[..4] == [0, 0, 0, 0] && s[4] == 0xffff && s[5] == 0 {
        return Some(vec![v4(s[6], s[7])]);
    }
    // ::a.b.c.d (deprecated IPv4-compatible; `::` and `::1` are not)
    if s[..6] == [0, 0, 0, 0, 0, 0] && (s[6] != 0 || s[7] > 1) {
        return Some(vec![v4(s[6], s[7])]);
    }
    match (s[0], s[1]) {
        (0x2002, _) => Some(vec![v4(s[1], s[2])]),
        (0x2001, 0x0000) => Some(vec![v4(s[2], s[3]), v4(!s[6], !s[7])]),
        (0x0064, 0xff9b) if s[2..6] == [0, 0, 0, 0] => Some(vec![v4(s[6], s[7])]),
        (0x0064, 0xff9b) if s[2] == 1 => {
            // RFC 6052 /48 layout: IPv4 in bytes 6-7 and 9-10 (byte 8 is zero).
            Some(vec![Ipv4Addr::new(o[6], o[7], o[9], o[10])])
        }
        _ => None,
    }
}

/// The real client: async reqwest driven from the script thread through a tokio handle.
pub struct ReqwestHttp {
    handle: tokio::runtime::Handle,
}

impl ReqwestHttp {
    /// A client that runs its I/O on `handle` (call `send` only from non-async
    /// threads, e.g. `spawn_blocking`, as the runtime does).
    pub fn new(handle: tokio::runtime::Handle) -> Self {
        let _ = rustls::crypto::ring::default_provider().install_default();
        Self { handle }
    }

    async fn send_async(&self, req: OutboundRequest) -> Result<OutboundResponse, HttpError> {
        let url = url::Url::parse(&req.url).map_err(|_| HttpError::InvalidUrl(req.url.clone()))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(HttpError::InvalidUrl(req.url.clone()));
        }
        let host = url
            .host_str()
            .ok_or_else(|| HttpError::InvalidUrl(req.url.clone()))?
            .to_owned();
        let bare = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let port = url.port_or_known_default().unwrap_or(443);
        let timeout_ms = u64::try_from(req.timeout.as_millis()).unwrap_or(u64::MAX);
        let timed_out = || HttpError::Timeout {
            host: host.clone(),
            timeout_ms,
        };
        let deadline = tokio::time::Instant::now() + req.timeout;

        // Resolve ourselves and check every address, then pin the connection to a
        // checked address so a second DNS answer cannot point somewhere else.
        let addrs: Vec<SocketAddr> = match bare.parse::<IpAddr>() {
            Ok(ip) => vec![SocketAddr::new(ip, port)],
            Err(_) => {
                tokio::time::timeout_at(deadline, tokio::net::lookup_host((bare.as_str(), port)))
                    .await
                    .map_err(|_| timed_out())?
                    .map_err(|e| HttpError::Network(format!("cannot resolve \"{host}\": {e}")))?
                    .collect()
            }
        };
        if !req.allow_private {
            if let Some(bad) = addrs.iter().find(|a| is_forbidden_ip(a.ip())) {
                return Err(HttpError::PrivateAddress {
                    host: host.clone(),
                    addr: bad.ip(),
                });
            }
        }
        let pinned = addrs
            .first()
            .copied()
            .ok_or_else(|| HttpError::Network(format!("\"{host}\" has no address")))?;

        let mut builder = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .timeout(req.timeout);
        if bare.parse::<IpAddr>().is_err() {
            builder = builder.resolve(&bare, pinned);
        }
        let client = builder
            .build()
            .map_err(|e| HttpError::Network(format!("cannot build HTTP client: {e}")))?;
        let method = reqwest::Method::from_bytes(req.method.as_bytes())
            .map_err(|_| HttpError::Network(format!("invalid method `{}`", req.method)))?;
        let mut rb = client.request(method, url);
        for (k, v) in &req.headers {
            rb = rb.header(k.as_str(), v.as_str());
        }
        if let Some(body) = req.body {
            rb = rb.body(body);
        }
        let net = |e: reqwest::Error| {
            if e.is_timeout() {
                timed_out()
            } else {
                HttpError::Network(format!("call to \"{host}\" failed: {}", e.without_url()))
            }
        };
        let mut resp = rb.send().await.map_err(net)?;
        let status = resp.status().as_u16();
        let headers = resp
            .headers()
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_ascii_lowercase(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect();
        let mut buf = Vec::new();
        loop {
            let chunk = tokio::time::timeout_at(deadline, resp.chunk())
                .await
                .map_err(|_| timed_out())?
                .map_err(net)?;
            match chunk {
                Some(c) => {
                    if buf.len() + c.len() > req.max_response_bytes {
                        return Err(HttpError::ResponseTooLarge {
                            host,
                            limit: req.max_response_bytes,
                        });
                    }
                    buf.extend_from_slice(&c);
                }
                None => break,
            }
        }
        Ok(OutboundResponse {
            status,
            headers,
            body: parse_body(&buf),
        })
    }
}

impl HttpClient for ReqwestHttp {
    fn send(&self, req: OutboundRequest) -> Result<OutboundResponse, HttpError> {
        self.handle.block_on(self.send_async(req))
    }
}

/// A response body as scripts see it: JSON when it parses, text otherwise, `null` when empty.
pub fn parse_body(bytes: &[u8]) -> Value {
    if bytes.is_empty() {
        return Value::Null;
    }
    serde_json::from_slice(bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(bytes).into_owned()))
}

/// One canned response of [`MockHttp`] (the `http` list of a fixture).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct MockResponse {
    /// Method to match (case-insensitive); default `GET`.
    #[serde(default = "default_method")]
    pub method: String,
    /// URL to match exactly (query included, when the call has one); a query
    /// value `[redacted]` matches any value of that parameter.
    pub url: String,
    /// Status to answer; default 200.
    #[serde(default = "default_status")]
    pub status: u16,
    /// Response headers.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Response body (JSON; a string is sent as text).
    #[serde(default)]
    pub body: Value,
}

fn default_method() -> String {
    "GET".into()
}
fn default_status() -> u16 {
    200
}

/// Canned responses for fixtures and tests. A call with no matching mock is an
/// error and is recorded in [`MockHttp::unmatched`].
#[derive(Debug, Default)]
pub struct MockHttp {
    mocks: Vec<MockResponse>,
    calls: Mutex<Vec<OutboundRequest>>,
    unmatched: Mutex<Vec<String>>,
}

impl MockHttp {
    /// A mock answering with `mocks` (the first match wins; mocks can be reused).
    pub fn new(mocks: Vec<MockResponse>) -> Self {
        Self {
            mocks,
            ..Self::default()
        }
    }
    /// Every request sent, in order.
    pub fn calls(&self) -> Vec<OutboundRequest> {
        self.calls.lock().clone()
    }
    /// `METHOD url` of every call that had no mock.
    pub fn unmatched(&self) -> Vec<String> {
        self.unmatched.lock().clone()
    }
}

impl HttpClient for MockHttp {
    fn send(&self, req: OutboundRequest) -> Result<OutboundResponse, HttpError> {
        self.calls.lock().push(req.clone());
        let found = self.mocks.iter().find(|m| {
            m.method.eq_ignore_ascii_case(&req.method) && mock_url_matches(&m.url, &req.url)
        });
        match found {
            Some(m) => Ok(OutboundResponse {
                status: m.status,
                headers: m
                    .headers
                    .iter()
                    .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
                    .collect(),
                body: m.body.clone(),
            }),
            None => {
                self.unmatched
                    .lock()
                    .push(format!("{} {}", req.method, req.url));
                Err(HttpError::NoMock {
                    method: req.method,
                    url: req.url,
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allow_list() {
        let allow = vec![
            "api.partner.example".to_string(),
            "*.crm.example".to_string(),
            "10.1.2.3".to_string(),
            "[::1]".to_string(),
        ];
        assert!(host_allowed("api.partner.example", &allow));
        assert!(host_allowed("API.partner.example", &allow));
        assert!(host_allowed("eu.crm.example", &allow));
        assert!(host_allowed("a.b.crm.example", &allow));
        assert!(!host_allowed("crm.example", &allow));
        assert!(!host_allowed("evilcrm.example", &allow));
        assert!(!host_allowed("partner.example", &allow));
        assert!(host_allowed("10.1.2.3", &allow));
        assert!(host_allowed("[::1]", &allow));
        assert!(!host_allowed("api.partner.example.evil.com", &allow));
    }

    #[test]
    fn forbidden_ips() {
        for ip in [
            "127.0.0.1",
            "10.0.0.1",
            "172.16.5.4",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "::1",
            "::",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
        ] {
            assert!(is_forbidden_ip(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["93.184.216.34", "8.8.8.8", "2606:4700::1111", "100.128.0.1"] {
            assert!(!is_forbidden_ip(ip.parse().unwrap()), "{ip}");
        }
    }

    /// Every IPv6 form that embeds an IPv4 address is judged by what it embeds.
    #[test]
    fn ipv6_forms_embedding_ipv4_are_judged_by_the_ipv4() {
        for ip in [
            "::127.0.0.1",
            "::10.0.0.1",
            "::ffff:169.254.169.254",
            "::ffff:0:10.1.2.3",
            "2002:7f00:1::",
            "2002:a9fe:a9fe::1",
            "2002:c0a8:0101::",
            // Teredo: server 8.8.8.8, client 127.0.0.1 (obfuscated: !0x7f00, !0x0001)
            "2001:0:808:808:0:0:80ff:fffe",
            // Teredo with a private server
            "2001:0:a00:1::1",
            "64:ff9b::127.0.0.1",
            "64:ff9b::a9fe:a9fe",
            "64:ff9b::192.168.0.1",
            "64:ff9b:1:7f00:0:100::",
            "64:ff9b:1:a00:0:100::",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1%0".split('%').next().unwrap(),
            "fec0::1",
            "::1",
            "::",
            "ff02::1",
        ] {
            assert!(is_forbidden_ip(ip.parse().unwrap()), "{ip}");
        }
        for ip in [
            "::ffff:8.8.8.8",
            "2002:808:808::1",
            "64:ff9b::8.8.8.8",
            "64:ff9b:1:808:8:800::",
            // Teredo: server 8.8.8.8, client 8.8.4.4
            "2001:0:808:808:0:0:f7f7:fbfb",
        ] {
            assert!(!is_forbidden_ip(ip.parse().unwrap()), "{ip}");
        }
    }

    #[test]
    fn body_parsing() {
        assert_eq!(parse_body(b""), Value::Null);
        assert_eq!(parse_body(b"{\"a\":1}"), serde_json::json!({"a": 1}));
        assert_eq!(parse_body(b"hello"), Value::String("hello".into()));
    }
}
