//! Who is asking: the client's address as the server should count it. Behind a
//! reverse proxy every connection comes from the proxy, so for the proxies in
//! `[server] trusted_proxies` the client is read from the one header they set
//! (`[server] forwarded_header`: `X-Forwarded-For`, the default, or RFC 7239's
//! `Forwarded`; the other is ignored, since a client can send it itself): the
//! right-most address that is not itself a trusted proxy (the proxy appends the
//! address it saw; entries to the left are whatever the client sent). A request
//! from a trusted proxy without the header, or with forwarding headers from a
//! peer nobody declared, is never local: a proxy on loopback must not make every
//! visitor an editor.

use std::net::IpAddr;

use axum::http::HeaderMap;
use ipnet::IpNet;
use serde::Deserialize;

/// The header trusted proxies name the client in.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ForwardedHeader {
    #[default]
    XForwardedFor,
    Forwarded,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Client {
    /// The address rate limits count by.
    pub ip: IpAddr,
    /// Relayed by a proxy that did not (or could not be trusted to) say who.
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
    let ip: Option<IpAddr> = if let Ok(ip) = node.parse() {
        Some(ip)
    } else if let Some(rest) = node.strip_prefix('[') {
        rest.split(']').next()?.parse().ok()
    } else {
        node.rsplit_once(':')?.0.parse().ok()
    };
    ip.map(|ip| ip.to_canonical())
}

fn values<'a>(headers: &'a HeaderMap, name: &str) -> impl Iterator<Item = &'a str> {
    headers
        .get_all(name)
        .into_iter()
        .filter_map(|v| v.to_str().ok())
}

/// The forwarding chain of `header`, client first. An entry that is not an
/// address is `None`.
fn chain(headers: &HeaderMap, header: ForwardedHeader) -> Vec<Option<IpAddr>> {
    match header {
        ForwardedHeader::Forwarded => values(headers, "forwarded")
            .flat_map(|v| v.split(','))
            .filter_map(|element| {
                element.split(';').find_map(|pair| {
                    let (k, v) = pair.split_once('=')?;
                    k.trim().eq_ignore_ascii_case("for").then(|| parse_node(v))
                })
            })
            .collect(),
        ForwardedHeader::XForwardedFor => values(headers, "x-forwarded-for")
            .flat_map(|v| v.split(','))
            .map(parse_node)
            .collect(),
    }
}

/// The client behind `peer` (the TCP peer).
pub fn client(
    peer: IpAddr,
    headers: &HeaderMap,
    trusted: &[IpNet],
    header: ForwardedHeader,
) -> Client {
    let peer = peer.to_canonical();
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|n| n.contains(ip));
    if !is_trusted(&peer) {
        let forwarded = ["forwarded", "x-forwarded-for"]
            .iter()
            .any(|h| headers.contains_key(*h));
        return Client {
            ip: peer,
            via_unknown_proxy: forwarded,
        };
    }
    let chain = chain(headers, header);
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
        // A trusted proxy that names no client (or only itself) said nothing
        // about who is asking.
        via_unknown_proxy: chain.is_empty(),
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

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn the_client_is_read_through_trusted_proxies_only() {
        let local = ip("127.0.0.1");
        let trusted: Vec<IpNet> = vec![
            "127.0.0.1/32".parse().unwrap(),
            "10.0.0.0/8".parse().unwrap(),
        ];
        let xff = |pairs: &[(&'static str, &str)]| {
            client(
                local,
                &headers(pairs),
                &trusted,
                ForwardedHeader::XForwardedFor,
            )
        };
        // The left-most entry is the client's own claim; the right-most untrusted is real.
        let c = xff(&[("x-forwarded-for", "127.0.0.1, 198.51.100.7, 10.1.2.3")]);
        assert_eq!(c.ip, ip("198.51.100.7"));
        assert!(!c.is_local());
        // A Forwarded header the proxy does not set is the client's own: ignored.
        let c = xff(&[
            ("forwarded", "for=127.0.0.1"),
            ("x-forwarded-for", "198.51.100.7"),
        ]);
        assert_eq!(c.ip, ip("198.51.100.7"));
        assert!(!xff(&[("forwarded", "for=127.0.0.1")]).is_local());
        // A trusted proxy naming no client is never local (nginx without the header).
        assert!(!xff(&[]).is_local());
        // A local client through the proxy (its own health check) is local.
        assert!(xff(&[("x-forwarded-for", "127.0.0.1")]).is_local());
        // An unreadable entry is never local.
        assert!(!xff(&[("x-forwarded-for", "_hidden")]).is_local());
        // RFC 7239 when configured.
        let c = client(
            local,
            &headers(&[("forwarded", "for=\"[2001:db8::7]:443\";proto=https")]),
            &trusted,
            ForwardedHeader::Forwarded,
        );
        assert_eq!(c.ip, ip("2001:db8::7"));
        // Without the proxy declared, forwarded requests are never local.
        let none = |pairs: &[(&'static str, &str)]| {
            client(local, &headers(pairs), &[], ForwardedHeader::XForwardedFor)
        };
        let c = none(&[("x-forwarded-for", "198.51.100.7")]);
        assert_eq!(c.ip, local);
        assert!(!c.is_local());
        assert!(!none(&[("forwarded", "for=127.0.0.1")]).is_local());
        // A direct local request is local, IPv4-mapped or not.
        assert!(none(&[]).is_local());
        let mapped = client(
            ip("::ffff:127.0.0.1"),
            &HeaderMap::new(),
            &trusted,
            ForwardedHeader::XForwardedFor,
        );
        assert_eq!(mapped.ip, local);
    }
}
