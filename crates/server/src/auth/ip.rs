//! Client IP resolution: the socket address, or `X-Forwarded-For` when the socket is a trusted
//! proxy.

use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

use axum::extract::ConnectInfo;
use axum::http::request::Parts;

/// An address range in CIDR notation (`10.0.0.0/8`, `::1/128`) or a single address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpRange {
    net: IpAddr,
    prefix: u8,
}

impl FromStr for IpRange {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let net: IpAddr = addr
            .trim()
            .parse()
            .map_err(|_| format!("{s:?} is not an IP address or CIDR range"))?;
        let max = if net.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p
                .trim()
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("{s:?} has a bad prefix length"))?,
            None => max,
        };
        Ok(IpRange { net, prefix })
    }
}

impl IpRange {
    /// Whether `ip` is inside the range.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.net, ip) {
            (IpAddr::V4(n), IpAddr::V4(i)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(n) & mask == u32::from(i) & mask
            }
            (IpAddr::V6(n), IpAddr::V6(i)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(n) & mask == u128::from(i) & mask
            }
            _ => false,
        }
    }
}

/// The client's address: the socket peer, unless it is a trusted proxy, in which case the
/// right-most `X-Forwarded-For` entry that is not itself a trusted proxy.
pub fn client_ip(parts: &Parts, trusted: &[IpRange]) -> Option<IpAddr> {
    let peer = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip())?;
    if !trusted.iter().any(|r| r.contains(peer)) {
        return Some(peer);
    }
    let forwarded: Vec<IpAddr> = parts
        .headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    Some(
        forwarded
            .into_iter()
            .rev()
            .find(|ip| !trusted.iter().any(|r| r.contains(*ip)))
            .unwrap_or(peer),
    )
}

/// True when a trusted proxy says the client reached it over HTTPS (`X-Forwarded-Proto: https`
/// or `Forwarded: proto=https`); the header of anyone else is ignored.
pub fn forwarded_https(parts: &Parts, trusted: &[IpRange]) -> bool {
    let Some(peer) = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip())
    else {
        return false;
    };
    if !trusted.iter().any(|r| r.contains(peer)) {
        return false;
    }
    let proto = parts
        .headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(',')
                .next()
                .unwrap_or("")
                .trim()
                .eq_ignore_ascii_case("https")
        });
    let forwarded = parts
        .headers
        .get("forwarded")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(',').next().unwrap_or("").split(';').any(|kv| {
                kv.trim().split_once('=').is_some_and(|(k, val)| {
                    k.eq_ignore_ascii_case("proto")
                        && val.trim_matches('"').eq_ignore_ascii_case("https")
                })
            })
        });
    proto.unwrap_or(false) || forwarded
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_match_their_addresses_only() {
        let r: IpRange = "10.1.0.0/16".parse().unwrap();
        assert!(r.contains("10.1.200.3".parse().unwrap()));
        assert!(!r.contains("10.2.0.1".parse().unwrap()));
        assert!(
            "::1"
                .parse::<IpRange>()
                .unwrap()
                .contains("::1".parse().unwrap())
        );
        assert!(
            "0.0.0.0/0"
                .parse::<IpRange>()
                .unwrap()
                .contains("8.8.8.8".parse().unwrap())
        );
        assert!("10.0.0.0/33".parse::<IpRange>().is_err() && "nope".parse::<IpRange>().is_err());
    }

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let mut req = axum::http::Request::get("/")
            .header("x-forwarded-for", "203.0.113.9, 10.0.0.2")
            .body(())
            .unwrap();
        req.extensions_mut()
            .insert(ConnectInfo(SocketAddr::from(([10, 0, 0, 1], 5000))));
        let (parts, ()) = req.into_parts();
        let trusted = vec!["10.0.0.0/8".parse().unwrap()];
        assert_eq!(
            client_ip(&parts, &trusted),
            Some("203.0.113.9".parse().unwrap())
        );
        assert_eq!(client_ip(&parts, &[]), Some("10.0.0.1".parse().unwrap()));
    }

    #[test]
    fn https_is_believed_only_from_trusted_proxies() {
        let parts = |header: (&str, &str)| {
            let mut req = axum::http::Request::get("/")
                .header(header.0, header.1)
                .body(())
                .unwrap();
            req.extensions_mut()
                .insert(ConnectInfo(SocketAddr::from(([10, 0, 0, 1], 5000))));
            req.into_parts().0
        };
        let trusted: Vec<IpRange> = vec!["10.0.0.0/8".parse().unwrap()];
        assert!(forwarded_https(
            &parts(("x-forwarded-proto", "https")),
            &trusted
        ));
        assert!(forwarded_https(
            &parts(("forwarded", "for=1.2.3.4;proto=https")),
            &trusted
        ));
        assert!(!forwarded_https(
            &parts(("x-forwarded-proto", "http")),
            &trusted
        ));
        assert!(!forwarded_https(
            &parts(("x-forwarded-proto", "https")),
            &[]
        ));
    }
}
