//! Who is asking: the client's address as the server should count it. Behind a
//! reverse proxy every connection comes from the proxy, so for the proxies in
//! `[server] trusted_proxies` the client is read from `Forwarded` (RFC 7239) or
//! `X-Forwarded-For`: the right-most address that is not itself a trusted proxy
//! (the left-most entries are whatever the client chose to send). A request that
//! carries those headers through a proxy nobody declared is never local: a
//! loopback proxy must not make every visitor an editor.

use std::net::IpAddr;

use axum::http::HeaderMap;
use ipnet::IpNet;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Client {
    /// The address rate limits count by.
    pub ip: IpAddr,
    /// Forwarding headers came from a peer that is not a trusted proxy.
    pub via_unknown_proxy: bool,
}

impl Client {
    /// On this machine, and not relayed by a proxy: the preview's default rule.
    pub fn is_local(&self) -> bool {
        self.ip.is_loopback() && !self.via_unknown_proxy
    }
}

/// One `for=` or X-Forwarded-For entry: `192.0.2.1`, `"[2001:db8::1]:443"`,
/// `192.0.2.1:80`. `None` for `unknown`, obfuscated names and garbage.
fn parse_node(node: &str) -> Option<IpAddr> {
    let node = node.trim().trim_matches('"');
    if let Ok(ip) = node.parse() {
        return Some(ip);
    }
    if let Some(rest) = node.strip_prefix('[') {
        return rest.split(']').next()?.parse().ok();
    }
    node.rsplit_once(':')?.0.parse().ok()
}

/// The forwarding chain, client first: `Forwarded` if present, else
/// `X-Forwarded-For`. An entry that is not an address is `None`.
fn chain(headers: &HeaderMap) -> Vec<Option<IpAddr>> {
    let values = |name: &str| -> Vec<String> {
        headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok().map(str::to_string))
            .collect()
    };
    let forwarded = values("forwarded");
    if !forwarded.is_empty() {
        return forwarded
            .iter()
            .flat_map(|v| v.split(','))
            .filter_map(|element| {
                element.split(';').find_map(|pair| {
                    let (k, v) = pair.split_once('=')?;
                    k.trim().eq_ignore_ascii_case("for").then(|| parse_node(v))
                })
            })
            .collect();
    }
    values("x-forwarded-for")
        .iter()
        .flat_map(|v| v.split(','))
        .map(parse_node)
        .collect()
}

/// The client behind `peer` (the TCP peer).
pub fn client(peer: IpAddr, headers: &HeaderMap, trusted: &[IpNet]) -> Client {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|n| n.contains(ip));
    let chain = chain(headers);
    if !is_trusted(&peer) {
        return Client {
            ip: peer,
            via_unknown_proxy: !chain.is_empty(),
        };
    }
    let mut ip = peer;
    for entry in chain.iter().rev() {
        match entry {
            Some(hop) if is_trusted(hop) => ip = *hop,
            Some(hop) => {
                return Client {
                    ip: *hop,
                    via_unknown_proxy: false,
                }
            }
            // An entry we cannot read: count the client as the proxy's, and
            // never as local.
            None => {
                return Client {
                    ip,
                    via_unknown_proxy: true,
                }
            }
        }
    }
    Client {
        ip,
        via_unknown_proxy: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn the_client_is_read_through_trusted_proxies_only() {
        let local: IpAddr = "127.0.0.1".parse().unwrap();
        let trusted: Vec<IpNet> = vec![
            "127.0.0.1/32".parse().unwrap(),
            "10.0.0.0/8".parse().unwrap(),
        ];
        // The left-most entry is the client's own claim; the right-most untrusted is real.
        let c = client(
            local,
            &headers(&[("x-forwarded-for", "127.0.0.1, 198.51.100.7, 10.1.2.3")]),
            &trusted,
        );
        assert_eq!(c.ip, "198.51.100.7".parse::<IpAddr>().unwrap());
        assert!(!c.is_local());
        let c = client(
            local,
            &headers(&[("forwarded", "for=\"[2001:db8::7]:443\";proto=https")]),
            &trusted,
        );
        assert_eq!(c.ip, "2001:db8::7".parse::<IpAddr>().unwrap());
        // Without the proxy declared, forwarded requests are never local.
        let c = client(local, &headers(&[("x-forwarded-for", "198.51.100.7")]), &[]);
        assert_eq!(c.ip, local);
        assert!(!c.is_local());
        // A direct local request is local.
        assert!(client(local, &HeaderMap::new(), &[]).is_local());
        // A trusted proxy forwarding for itself (its own health check).
        assert!(client(
            local,
            &headers(&[("x-forwarded-for", "127.0.0.1")]),
            &trusted
        )
        .is_local());
        // An unreadable entry is never local.
        assert!(!client(local, &headers(&[("x-forwarded-for", "_hidden")]), &trusted).is_local());
    }
}
