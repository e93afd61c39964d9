//! Who the client is, by address: `X-Forwarded-For` is believed only when
//! the connection comes from a configured trusted proxy, and per-address
//! state (failure throttles, anonymous rate limits and identities) counts an
//! IPv6 client by its /64, the smallest block one customer is usually given.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

/// An address block such as `10.0.0.0/8`, `2001:db8::/32` or one address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    net: IpAddr,
    prefix: u8,
}

/// A block that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not an address or CIDR block (e.g. 10.0.0.0/8, 2001:db8::/32, 192.0.2.7)")]
pub struct BadCidr(pub String);

fn mask_v4(a: Ipv4Addr, prefix: u8) -> u32 {
    let bits = u32::from(a);
    if prefix == 0 {
        0
    } else {
        bits & (u32::MAX << (32 - u32::from(prefix)))
    }
}

fn mask_v6(a: Ipv6Addr, prefix: u8) -> u128 {
    let bits = u128::from(a);
    if prefix == 0 {
        0
    } else {
        bits & (u128::MAX << (128 - u32::from(prefix)))
    }
}

/// An IPv4-mapped IPv6 address (`::ffff:a.b.c.d`) as the IPv4 address it is.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    }
}

impl Cidr {
    /// Whether `ip` is inside the block.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.net, canonical(ip)) {
            (IpAddr::V4(n), IpAddr::V4(a)) => mask_v4(a, self.prefix) == u32::from(n),
            (IpAddr::V6(n), IpAddr::V6(a)) => mask_v6(a, self.prefix) == u128::from(n),
            _ => false,
        }
    }
}

impl FromStr for Cidr {
    type Err = BadCidr;
    fn from_str(s: &str) -> Result<Self, BadCidr> {
        let bad = || BadCidr(s.to_owned());
        let t = s.trim();
        let (addr, prefix) = match t.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (t, None),
        };
        let ip = canonical(IpAddr::from_str(addr).map_err(|_| bad())?);
        let max = if ip.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => {
                let p: u8 = p.parse().map_err(|_| bad())?;
                if p > max {
                    return Err(bad());
                }
                p
            }
        };
        let net = match ip {
            IpAddr::V4(a) => IpAddr::V4(Ipv4Addr::from(mask_v4(a, prefix))),
            IpAddr::V6(a) => IpAddr::V6(Ipv6Addr::from(mask_v6(a, prefix))),
        };
        Ok(Self { net, prefix })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.net, self.prefix)
    }
}

/// The proxies whose `X-Forwarded-For` is believed (empty: none, the default).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<Cidr>);

impl TrustedProxies {
    /// Parses a list of blocks (config `server.trusted_proxies`).
    pub fn parse<S: AsRef<str>>(items: &[S]) -> Result<Self, BadCidr> {
        items
            .iter()
            .map(|s| s.as_ref().parse())
            .collect::<Result<Vec<_>, _>>()
            .map(Self)
    }

    /// Whether no proxy is trusted.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether `ip` is a trusted proxy.
    pub fn trusts(&self, ip: IpAddr) -> bool {
        self.0.iter().any(|c| c.contains(ip))
    }

    /// The client's address: the TCP peer, unless the peer is a trusted
    /// proxy; then the right-most `X-Forwarded-For` entry that is not itself
    /// a trusted proxy (entries left of it are the client's own claims and
    /// are never believed). An unreadable entry stops the walk at the last
    /// address vouched for. `forwarded_for` holds the header's values in the
    /// order received.
    pub fn client_ip<'a>(
        &self,
        peer: IpAddr,
        forwarded_for: impl IntoIterator<Item = &'a str>,
    ) -> IpAddr {
        let peer = canonical(peer);
        if !self.trusts(peer) {
            return peer;
        }
        let values: Vec<&str> = forwarded_for.into_iter().collect();
        let mut client = peer;
        for entry in values.iter().rev().flat_map(|v| v.rsplit(',')) {
            let Some(ip) = parse_forwarded_entry(entry) else {
                return client;
            };
            client = ip;
            if !self.trusts(ip) {
                return ip;
            }
        }
        client
    }
}

/// One `X-Forwarded-For` entry: `192.0.2.1`, `192.0.2.1:4711`, `2001:db8::1`
/// or `[2001:db8::1]:4711`.
fn parse_forwarded_entry(entry: &str) -> Option<IpAddr> {
    let e = entry.trim();
    if let Ok(ip) = IpAddr::from_str(e) {
        return Some(canonical(ip));
    }
    if let Some(rest) = e.strip_prefix('[') {
        let (addr, _) = rest.split_once(']')?;
        return Ipv6Addr::from_str(addr)
            .ok()
            .map(|a| canonical(IpAddr::V6(a)));
    }
    let (addr, port) = e.rsplit_once(':')?;
    port.parse::<u16>().ok()?;
    Ipv4Addr::from_str(addr).ok().map(IpAddr::V4)
}

/// The unit per-address state is kept for: the address itself for IPv4,
/// its /64 for IPv6 (one host can take any address of its /64).
pub fn bucket(ip: IpAddr) -> IpAddr {
    match canonical(ip) {
        IpAddr::V6(a) => IpAddr::V6(Ipv6Addr::from(mask_v6(a, 64))),
        v4 => v4,
    }
}

/// The text of [`bucket`]: `192.0.2.7` or `2001:db8:1:2::/64`.
pub fn bucket_label(ip: IpAddr) -> String {
    thread_local! {
        // The address this thread labelled last: a connection's calls come
        // from one address, and formatting it costs more than the copy.
        static LAST: std::cell::RefCell<Option<(IpAddr, String)>> =
            const { std::cell::RefCell::new(None) };
    }
    let ip = bucket(ip);
    LAST.with(|last| {
        let Ok(mut last) = last.try_borrow_mut() else {
            return label_of(ip);
        };
        match &*last {
            Some((seen, label)) if *seen == ip => label.clone(),
            _ => {
                let label = label_of(ip);
                *last = Some((ip, label.clone()));
                label
            }
        }
    })
}

fn label_of(bucketed: IpAddr) -> String {
    match bucketed {
        IpAddr::V6(a) => format!("{a}/64"),
        v4 => v4.to_string(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn blocks_parse_and_match() {
        let c: Cidr = "10.1.2.3/8".parse().unwrap();
        assert_eq!(c.to_string(), "10.0.0.0/8");
        assert!(c.contains(ip("10.200.0.1")));
        assert!(c.contains(ip("::ffff:10.0.0.9")));
        assert!(!c.contains(ip("11.0.0.1")));
        let one: Cidr = "192.0.2.7".parse().unwrap();
        assert!(one.contains(ip("192.0.2.7")) && !one.contains(ip("192.0.2.8")));
        let v6: Cidr = "2001:db8::/32".parse().unwrap();
        assert!(v6.contains(ip("2001:db8:ffff::1")));
        assert!(!v6.contains(ip("2001:db9::1")));
        let all: Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains(ip("203.0.113.1")) && !all.contains(ip("::1")));
        for bad in [
            "",
            "10.0.0.0/33",
            "::/129",
            "10.0.0/8",
            "localhost",
            "10.0.0.0/x",
        ] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad}");
        }
    }

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let none = TrustedProxies::default();
        assert_eq!(
            none.client_ip(ip("198.51.100.1"), ["203.0.113.9"]),
            ip("198.51.100.1")
        );
        let t = TrustedProxies::parse(&["10.0.0.0/8", "127.0.0.1"]).unwrap();
        // An untrusted peer's header is ignored.
        assert_eq!(
            t.client_ip(ip("198.51.100.1"), ["203.0.113.9"]),
            ip("198.51.100.1")
        );
        // Behind a trusted proxy: the right-most untrusted entry.
        assert_eq!(
            t.client_ip(ip("127.0.0.1"), ["203.0.113.9"]),
            ip("203.0.113.9")
        );
        // A client's forged left-most claim is not believed.
        assert_eq!(
            t.client_ip(ip("127.0.0.1"), ["6.6.6.6, 203.0.113.9, 10.0.0.2"]),
            ip("203.0.113.9")
        );
        // Several header lines are one list.
        assert_eq!(
            t.client_ip(ip("10.0.0.1"), ["6.6.6.6", "203.0.113.9:4711", "10.0.0.3"]),
            ip("203.0.113.9")
        );
        assert_eq!(
            t.client_ip(ip("10.0.0.1"), ["[2001:db8::5]:443"]),
            ip("2001:db8::5")
        );
        // Garbage stops at the last vouched-for hop; no header: the peer.
        assert_eq!(
            t.client_ip(ip("10.0.0.1"), ["203.0.113.9, junk, 10.0.0.7"]),
            ip("10.0.0.7")
        );
        assert_eq!(t.client_ip(ip("10.0.0.1"), []), ip("10.0.0.1"));
        assert_eq!(
            t.client_ip(ip("::ffff:127.0.0.1"), ["192.0.2.1"]),
            ip("192.0.2.1")
        );
    }

    #[test]
    fn ipv6_buckets_are_64s() {
        assert_eq!(
            bucket_label(ip("2001:db8:1:2:3:4:5:6")),
            "2001:db8:1:2::/64"
        );
        assert_eq!(bucket_label(ip("192.0.2.1")), "192.0.2.1");
        assert_eq!(bucket_label(ip("::ffff:192.0.2.1")), "192.0.2.1");
        // The thread's last label is reused for the same address only.
        for (addr, label) in [
            ("192.0.2.2", "192.0.2.2"),
            ("192.0.2.2", "192.0.2.2"),
            ("2001:db8:1:2::9", "2001:db8:1:2::/64"),
            ("2001:db8:1:3::9", "2001:db8:1:3::/64"),
            ("192.0.2.1", "192.0.2.1"),
        ] {
            assert_eq!(bucket_label(ip(addr)), label);
        }
    }
}
