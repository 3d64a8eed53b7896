//! The client behind a trusted reverse proxy (`trusted_proxies`): the address its
//! `X-Forwarded-For` names and whether it came over TLS (`X-Forwarded-Proto`). Anyone else's
//! forwarding headers say nothing, so no client chooses its own `aws:SourceIp`.

use std::net::{IpAddr, SocketAddr};

/// A trusted proxy's address or block ([`crate::policy::condition::parse_cidr`]'s form).
pub(crate) type Block = (IpAddr, u32);

/// Whether `ip` is one of the trusted proxies.
pub(crate) fn trusted(proxies: &[Block], ip: IpAddr) -> bool {
    (proxies.iter()).any(|b| crate::policy::condition::cidr_contains(*b, ip))
}

/// Who a request is from: its peer, or, when the peer is a trusted proxy, the rightmost
/// address of its `X-Forwarded-For` that is not one (a hop that is not an address ends the
/// walk at the proxy after it); and whether the client came over TLS as the proxy says (the
/// last `X-Forwarded-Proto` value is `https`).
pub(crate) fn client(proxies: &[Block], peer: IpAddr, headers: &http::HeaderMap) -> (IpAddr, bool) {
    if !trusted(proxies, peer) {
        return (peer, false);
    }
    let hops: Vec<&str> = (headers.get_all("x-forwarded-for").iter())
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect();
    let mut client = peer;
    for hop in hops.iter().rev() {
        let ip = (hop.parse::<IpAddr>()).or_else(|_| hop.parse::<SocketAddr>().map(|a| a.ip()));
        let Ok(ip) = ip else { break };
        client = ip.to_canonical();
        if !trusted(proxies, client) {
            break;
        }
    }
    let https = (headers.get_all("x-forwarded-proto").iter().next_back())
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.rsplit(',').next())
        .is_some_and(|p| p.trim().eq_ignore_ascii_case("https"));
    (client, https)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_trusted_proxy_names_the_client() {
        let proxies = [crate::policy::condition::parse_cidr("10.0.0.0/24").unwrap()];
        let ask = |peer: &str, xff: &[&str], proto: &[&str]| {
            let mut h = http::HeaderMap::new();
            for v in xff {
                h.append("x-forwarded-for", v.parse().unwrap());
            }
            for v in proto {
                h.append("x-forwarded-proto", v.parse().unwrap());
            }
            let (ip, https) = client(&proxies, peer.parse().unwrap(), &h);
            (ip.to_string(), https)
        };
        let at = |ip: &str, https: bool| (ip.to_string(), https);
        // Not a trusted proxy: its headers say nothing.
        assert_eq!(
            ask("192.0.2.1", &["203.0.113.7"], &["https"]),
            at("192.0.2.1", false)
        );
        // The rightmost address that is not a trusted proxy, across headers and lists.
        assert_eq!(
            ask("10.0.0.1", &["203.0.113.7"], &[]),
            at("203.0.113.7", false)
        );
        assert_eq!(
            ask("10.0.0.1", &["198.51.100.1, 203.0.113.7, 10.0.0.2"], &[]),
            at("203.0.113.7", false)
        );
        assert_eq!(
            ask("10.0.0.1", &["198.51.100.1", "203.0.113.7:4431"], &[]),
            at("203.0.113.7", false)
        );
        assert_eq!(
            ask("10.0.0.1", &["[2001:db8::1]:443"], &[]),
            at("2001:db8::1", false)
        );
        assert_eq!(
            ask("10.0.0.1", &["::ffff:203.0.113.7"], &[]),
            at("203.0.113.7", false)
        );
        // No header, or a hop that is not an address: the last trusted proxy.
        assert_eq!(ask("10.0.0.1", &[], &[]), at("10.0.0.1", false));
        assert_eq!(
            ask("10.0.0.1", &["203.0.113.7, unknown, 10.0.0.9"], &[]),
            at("10.0.0.9", false)
        );
        // The last protocol value is the nearest proxy's.
        assert_eq!(ask("10.0.0.1", &[], &["https"]), at("10.0.0.1", true));
        assert_eq!(ask("10.0.0.1", &[], &["http, https"]), at("10.0.0.1", true));
        assert_eq!(
            ask("10.0.0.1", &[], &["https", "http"]),
            at("10.0.0.1", false)
        );
    }
}
