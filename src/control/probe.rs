//! Is a node's WebSocket port still open? The question a client's
//! `unreachable=NODE` report makes the control plane ask at once, instead
//! of waiting out the heartbeat grace period.
//!
//! Only a definite answer counts: a refused (or reset) TCP connect means no
//! process listens there any more (a node that was killed; its host is up).
//! A timeout or a name that does not resolve proves nothing (a slow or
//! partitioned network, a proxy in front): the node is then left to the
//! heartbeat grace. So a client can never talk a live node out of the ring,
//! and a report costs one TCP handshake at most.

use std::{
    io::ErrorKind,
    net::{SocketAddr, TcpStream, ToSocketAddrs},
    time::Duration,
};

/// What a probe found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Probe {
    /// The port accepted a connection.
    Alive,
    /// Nothing listens: the connection was refused or reset.
    Dead,
    /// No definite answer (timeout, unresolvable, not a `ws://` URL).
    Unknown,
}

impl Probe {
    /// As counted in `rtc_lb_unreachable_reports_total{outcome}`.
    pub fn as_str(self) -> &'static str {
        match self {
            Probe::Alive => "alive",
            Probe::Dead => "dead",
            Probe::Unknown => "unknown",
        }
    }
}

/// The `host:port` of a `ws://` or `wss://` URL (default ports 80, 443).
pub fn authority(ws_url: &str) -> Option<(String, u16)> {
    let (rest, default_port) = if let Some(r) = ws_url.strip_prefix("ws://") {
        (r, 80)
    } else if let Some(r) = ws_url.strip_prefix("wss://") {
        (r, 443)
    } else {
        return None;
    };
    let host_port = rest.split(['/', '?', '#']).next().unwrap_or("");
    if host_port.is_empty() {
        return None;
    }
    // `[v6]:port`, `[v6]`, `host:port`, `host`.
    if let Some(v6) = host_port.strip_prefix('[') {
        let (host, tail) = v6.split_once(']')?;
        let port = match tail.strip_prefix(':') {
            Some(p) => p.parse().ok()?,
            None if tail.is_empty() => default_port,
            None => return None,
        };
        return Some((host.to_owned(), port));
    }
    match host_port.rsplit_once(':') {
        Some((host, port)) => Some((host.to_owned(), port.parse().ok()?)),
        None => Some((host_port.to_owned(), default_port)),
    }
}

/// Probes the port of `ws_url`, giving up after `timeout` per address.
pub fn probe(ws_url: &str, timeout: Duration) -> Probe {
    let Some((host, port)) = authority(ws_url) else {
        return Probe::Unknown;
    };
    let addrs: Vec<SocketAddr> = match (host.as_str(), port).to_socket_addrs() {
        Ok(a) => a.collect(),
        Err(_) => return Probe::Unknown,
    };
    let mut outcome = Probe::Unknown;
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, timeout) {
            Ok(_) => return Probe::Alive,
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::ConnectionRefused | ErrorKind::ConnectionReset
                ) =>
            {
                outcome = Probe::Dead;
            }
            // One address that did not answer leaves the verdict open.
            Err(_) => return Probe::Unknown,
        }
    }
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    #[test]
    fn authorities_of_websocket_urls() {
        let a = |u| authority(u);
        assert_eq!(a("ws://10.0.0.1:8080/ws"), Some(("10.0.0.1".into(), 8080)));
        assert_eq!(a("ws://node-1/ws?x=1"), Some(("node-1".into(), 80)));
        assert_eq!(a("wss://edge.example"), Some(("edge.example".into(), 443)));
        assert_eq!(a("ws://[::1]:9000/ws"), Some(("::1".into(), 9000)));
        assert_eq!(a("ws://[::1]/ws"), Some(("::1".into(), 80)));
        assert_eq!(a("http://x:1/"), None);
        assert_eq!(a("ws:///ws"), None);
        assert_eq!(a("ws://x:notaport/"), None);
        assert_eq!(a("ws://[::1]x/"), None);
    }

    #[test]
    fn an_open_port_is_alive_and_a_closed_one_dead() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("ws://{}/ws", listener.local_addr().unwrap());
        assert_eq!(probe(&url, Duration::from_millis(500)), Probe::Alive);
        drop(listener);
        assert_eq!(probe(&url, Duration::from_millis(500)), Probe::Dead);
    }

    #[test]
    fn no_verdict_without_an_address() {
        let t = Duration::from_millis(100);
        assert_eq!(probe("ftp://x/", t), Probe::Unknown);
        assert_eq!(probe("ws://no-such-host.invalid:1/", t), Probe::Unknown);
    }
}
