//! The client address behind a load balancer or reverse proxy.
//!
//! The source address of a request — the key of the abuse limits, the
//! address a service account's `cidrs` are checked against, the audit
//! record's `source` — is the TCP peer, unless that peer is one of
//! `listener.trusted_proxies`. Then its `X-Forwarded-For` is read from the
//! right (each proxy appends the address it received the request from): the
//! right-most address that is not itself a trusted proxy is the client;
//! anything to its left was written by the client and is ignored. A peer
//! that is not trusted cannot set the source: its header is ignored.
//!
//! The layer rewrites the request's `ConnectInfo` before anything else sees
//! it, so every reader of the source (extractors, the audit layer) gets the
//! same answer.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::HeaderMap;
use axum::middleware::Next;
use axum::response::Response;
use ipnet::IpNet;

/// The networks whose `X-Forwarded-For` is believed.
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies(Arc<[IpNet]>);

impl TrustedProxies {
    /// Trust these networks (empty: trust no header).
    pub fn new(nets: &[IpNet]) -> TrustedProxies {
        TrustedProxies(nets.into())
    }

    fn trusts(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.0.iter().any(|n| n.contains(&ip))
    }

    /// The client behind `peer`, or None when `peer` is not a trusted
    /// proxy or sent no usable header (the peer is the client).
    fn client(&self, peer: IpAddr, headers: &HeaderMap) -> Option<IpAddr> {
        if !self.trusts(peer) {
            return None;
        }
        // Several header lines are one list, in order (RFC 9110 §5.3).
        let hops: Vec<&str> = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .collect();
        let mut client = None;
        for hop in hops.iter().rev() {
            // A hop we cannot read ends the walk: the last address read (a
            // trusted proxy, which reported it) stands for the client.
            let Some(ip) = hop_address(hop) else { break };
            client = Some(ip);
            if !self.trusts(ip) {
                break;
            }
        }
        client
    }
}

/// One `X-Forwarded-For` element: `1.2.3.4`, `2001:db8::1`, or with a port
/// (`1.2.3.4:80`, `[2001:db8::1]:80`), as some proxies write it.
fn hop_address(hop: &str) -> Option<IpAddr> {
    let hop = hop.trim();
    let ip = hop
        .parse::<IpAddr>()
        .or_else(|_| hop.parse::<SocketAddr>().map(|s| s.ip()))
        .ok()?;
    Some(canonical(ip))
}

/// IPv4-mapped IPv6 (`::ffff:10.0.0.1`, a dual-stack socket's view) as IPv4.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// The layer (outermost): replace the peer address by the client's.
pub(crate) async fn layer(State(trusted): State<TrustedProxies>, mut req: Request, next: Next) -> Response {
    if !trusted.0.is_empty()
        && let Some(ConnectInfo(peer)) = req.extensions().get::<ConnectInfo<SocketAddr>>().copied()
        && let Some(client) = trusted.client(peer.ip(), req.headers())
    {
        // The client's port is not known; 0 says so.
        req.extensions_mut().insert(ConnectInfo(SocketAddr::new(client, 0)));
    }
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append("x-forwarded-for", v.parse().expect("header value"));
        }
        h
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    fn net(s: &str) -> IpNet {
        s.parse().expect("network")
    }

    #[test]
    fn the_right_most_untrusted_hop_is_the_client() {
        let t = TrustedProxies::new(&[net("10.0.0.0/8"), net("2001:db8::/32")]);
        let lb = ip("10.0.0.2");
        // The client wrote the first element; the balancer appended the real peer.
        assert_eq!(
            t.client(lb, &headers(&["6.6.6.6, 203.0.113.9"])),
            Some(ip("203.0.113.9"))
        );
        // Two proxies in a row, over two header lines.
        assert_eq!(
            t.client(lb, &headers(&["6.6.6.6, 203.0.113.9", "10.1.1.1"])),
            Some(ip("203.0.113.9"))
        );
        assert_eq!(
            t.client(lb, &headers(&["[2001:db9::1]:443", "10.0.0.3:8080"])),
            Some(ip("2001:db9::1"))
        );
        // Unreadable: the last readable (trusted) hop stands for the client.
        assert_eq!(t.client(lb, &headers(&["unknown, 10.0.0.7"])), Some(ip("10.0.0.7")));
        assert_eq!(t.client(lb, &headers(&["203.0.113.9, junk"])), None);
        assert_eq!(t.client(lb, &headers(&[])), None, "no header: the peer is the client");
        // An IPv4-mapped peer is the IPv4 address.
        assert_eq!(
            t.client(ip("::ffff:10.0.0.2"), &headers(&["203.0.113.9"])),
            Some(ip("203.0.113.9"))
        );
    }

    #[test]
    fn an_untrusted_peer_cannot_set_the_source() {
        let t = TrustedProxies::new(&[net("10.0.0.0/8")]);
        assert_eq!(t.client(ip("192.0.2.1"), &headers(&["203.0.113.9"])), None);
        assert_eq!(
            TrustedProxies::default().client(ip("10.0.0.2"), &headers(&["203.0.113.9"])),
            None
        );
    }
}
