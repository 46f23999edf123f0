//! Where loadgen connects to and from: target URLs and source addresses.
//!
//! Safety rule (issue 4, "limits and safety"): traffic goes to loopback
//! unless the user names an address explicitly. A target whose host is an IP
//! literal is explicit and accepted as written; a host *name* must resolve to
//! loopback addresses only, otherwise the run is refused before a single
//! packet is sent. Source addresses are always given explicitly.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, ToSocketAddrs};
use thiserror::Error;

/// A target URL that cannot be used.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum TargetError {
    /// Not of the form `ws://host[:port][/path][?query]`.
    #[error("target {0:?} is not a ws:// URL (wss:// is not supported)")]
    NotWs(String),
    /// A control-plane URL not of the form `http://host[:port][/prefix]`.
    #[error("control plane {0:?} is not an http:// URL (https:// is not supported)")]
    NotHttp(String),
    /// The host part is empty or unparsable.
    #[error("target {0:?} has no usable host")]
    BadHost(String),
    /// The host name did not resolve.
    #[error("cannot resolve {0:?}")]
    Unresolvable(String),
    /// A host name resolved to a non-loopback address.
    #[error("{host:?} resolves to {addr}, which is not loopback; pass the IP address itself to target it explicitly")]
    NotLoopback {
        /// The host name given.
        host: String,
        /// The non-loopback address it resolved to.
        addr: IpAddr,
    },
}

/// A source address list that cannot be used.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum SourceIpError {
    /// A piece is not an IP address or `a-b` IPv4 range.
    #[error("bad source address {0:?} (expected 127.0.0.2-127.0.0.50 or a,b,c)")]
    Bad(String),
    /// A range runs backwards or is absurdly long.
    #[error("bad source range {0:?}")]
    BadRange(String),
}

/// A parsed WebSocket target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// The URL as given, for reports.
    pub url: String,
    /// The address to connect to.
    pub addr: SocketAddr,
    /// The `Host` header value (`host[:port]` as written).
    pub host_header: String,
    /// Path plus any query given in the URL (at least `/`).
    pub path: String,
}

impl Target {
    /// Parses and resolves `url`, enforcing the loopback rule.
    pub fn parse(url: &str) -> Result<Self, TargetError> {
        let rest = url
            .strip_prefix("ws://")
            .ok_or_else(|| TargetError::NotWs(url.to_string()))?;
        Self::parse_rest(url, rest)
    }

    /// Parses a control plane's `http://host[:port][/prefix]` under the same
    /// loopback rule (`path` is then the prefix, `/` when none).
    pub fn parse_http(url: &str) -> Result<Self, TargetError> {
        let rest = url
            .strip_prefix("http://")
            .ok_or_else(|| TargetError::NotHttp(url.to_string()))?;
        Self::parse_rest(url, rest)
    }

    fn parse_rest(url: &str, rest: &str) -> Result<Self, TargetError> {
        let split = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, path) = rest.split_at(split);
        let path = match path {
            "" => "/".to_string(),
            p if p.starts_with('?') => format!("/{p}"),
            p => p.to_string(),
        };
        let bad_host = || TargetError::BadHost(url.to_string());
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (h, after) = v6.split_once(']').ok_or_else(bad_host)?;
            (h, after.strip_prefix(':'))
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (authority, None),
            }
        };
        if host.is_empty() {
            return Err(bad_host());
        }
        let port: u16 = match port {
            Some(p) => p.parse().map_err(|_| bad_host())?,
            None => 80,
        };
        let addr = match host.parse::<IpAddr>() {
            // An IP literal is an explicit choice: accepted as written.
            Ok(ip) => SocketAddr::new(ip, port),
            Err(_) => resolve_loopback(host, port)?,
        };
        Ok(Self {
            url: url.to_string(),
            addr,
            host_header: authority.to_string(),
            path,
        })
    }

    /// The request target for one user: the URL's path and query plus
    /// `userId=U` and, when resuming, `resume=TOKEN`.
    pub fn path_for_user(&self, user: &str, resume: Option<&str>, jwt: Option<&str>) -> String {
        let mut p = self.path.clone();
        p.push(if p.contains('?') { '&' } else { '?' });
        p.push_str("userId=");
        push_encoded(&mut p, user);
        if let Some(t) = resume {
            p.push_str("&resume=");
            push_encoded(&mut p, t);
        }
        if let Some(t) = jwt {
            p.push_str("&token=");
            push_encoded(&mut p, t);
        }
        p
    }
}

fn resolve_loopback(host: &str, port: u16) -> Result<SocketAddr, TargetError> {
    let addrs: Vec<SocketAddr> = (host, port)
        .to_socket_addrs()
        .map_err(|_| TargetError::Unresolvable(host.to_string()))?
        .collect();
    if let Some(bad) = addrs.iter().find(|a| !a.ip().is_loopback()) {
        return Err(TargetError::NotLoopback {
            host: host.to_string(),
            addr: bad.ip(),
        });
    }
    // Prefer IPv4 loopback: that is what `--source-ips 127.0.0.x` can bind.
    addrs
        .iter()
        .find(|a| a.is_ipv4())
        .or(addrs.first())
        .copied()
        .ok_or_else(|| TargetError::Unresolvable(host.to_string()))
}

/// Percent-encodes everything outside RFC 3986's unreserved set.
pub(crate) fn push_encoded(out: &mut String, s: &str) {
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
}

/// Parses `--source-ips`: comma-separated IP addresses and inclusive IPv4
/// ranges `a-b`, e.g. `127.0.0.2-127.0.0.50,127.0.1.1`.
pub fn parse_source_ips(spec: &str) -> Result<Vec<IpAddr>, SourceIpError> {
    /// More than this many addresses in one range is surely a typo.
    const MAX_RANGE: u32 = 1 << 20;
    let mut out = Vec::new();
    for piece in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        if let Some((a, b)) = piece.split_once('-') {
            let parse = |s: &str| {
                s.trim()
                    .parse::<Ipv4Addr>()
                    .map_err(|_| SourceIpError::Bad(piece.to_string()))
            };
            let (a, b) = (u32::from(parse(a)?), u32::from(parse(b)?));
            if b < a || b - a >= MAX_RANGE {
                return Err(SourceIpError::BadRange(piece.to_string()));
            }
            out.extend((a..=b).map(|v| IpAddr::V4(Ipv4Addr::from(v))));
        } else {
            out.push(
                piece
                    .parse()
                    .map_err(|_| SourceIpError::Bad(piece.to_string()))?,
            );
        }
    }
    if out.is_empty() {
        return Err(SourceIpError::Bad(spec.to_string()));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ip_literal_targets_with_paths() {
        let t = Target::parse("ws://127.0.0.1:8080/ws").unwrap();
        assert_eq!(t.addr, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(t.path, "/ws");
        assert_eq!(t.host_header, "127.0.0.1:8080");
        let t = Target::parse("ws://[::1]:9000").unwrap();
        assert_eq!(t.addr, "[::1]:9000".parse().unwrap());
        assert_eq!(t.path, "/");
    }

    #[test]
    fn explicit_non_loopback_ip_is_allowed() {
        assert!(Target::parse("ws://10.1.2.3:8080/ws").is_ok());
    }

    #[test]
    fn localhost_name_resolves_to_loopback() {
        let t = Target::parse("ws://localhost:8080/echo").unwrap();
        assert!(t.addr.ip().is_loopback());
    }

    #[test]
    fn control_plane_urls_are_http_under_the_same_rule() {
        let t = Target::parse_http("http://127.0.0.1:8081").unwrap();
        assert_eq!(t.addr, "127.0.0.1:8081".parse().unwrap());
        assert_eq!(t.path, "/");
        assert!(Target::parse_http("http://localhost:8081/ctl")
            .unwrap()
            .addr
            .ip()
            .is_loopback());
        assert!(matches!(
            Target::parse_http("ws://127.0.0.1:8081"),
            Err(TargetError::NotHttp(_))
        ));
    }

    #[test]
    fn non_ws_urls_are_refused() {
        assert!(matches!(
            Target::parse("wss://127.0.0.1/ws"),
            Err(TargetError::NotWs(_))
        ));
        assert!(matches!(
            Target::parse("ws://:80/ws"),
            Err(TargetError::BadHost(_))
        ));
    }

    #[test]
    fn user_query_is_appended_with_the_right_separator() {
        let t = Target::parse("ws://127.0.0.1:1/ws").unwrap();
        assert_eq!(t.path_for_user("alice", None, None), "/ws?userId=alice");
        assert_eq!(
            t.path_for_user("alice", None, Some("a.b.c")),
            "/ws?userId=alice&token=a.b.c"
        );
        assert_eq!(
            t.path_for_user("a b", Some("tok="), None),
            "/ws?userId=a%20b&resume=tok%3D"
        );
        let t = Target::parse("ws://127.0.0.1:1/ws?token=x").unwrap();
        assert_eq!(t.path_for_user("u", None, None), "/ws?token=x&userId=u");
    }

    #[test]
    fn source_ranges_expand_inclusively() {
        let ips = parse_source_ips("127.0.0.2-127.0.0.4,127.0.1.1").unwrap();
        let want: Vec<IpAddr> = ["127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.1.1"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        assert_eq!(ips, want);
        assert!(parse_source_ips("127.0.0.9-127.0.0.1").is_err());
        assert!(parse_source_ips("nope").is_err());
        assert!(parse_source_ips("").is_err());
    }
}
