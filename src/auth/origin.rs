//! `--allowed-origins`: which web pages may open a WebSocket to the node
//! (cross-site WebSocket hijacking: a browser sends cookies and an `Origin`
//! with any page's upgrade, so the server must check the `Origin`).
//!
//! An entry is an exact origin, `scheme://host[:port]`
//! (`https://app.example.com`, `http://localhost:3000`), or a wildcard,
//! `[scheme://]*.suffix[:port]` (`*.example.com` matches
//! `https://a.example.com` and `http://a.b.example.com`, never
//! `https://example.com` itself). A scheme left out matches any scheme; a
//! port left out matches only an origin without a port (the scheme's
//! default). Hosts compare case-insensitively. `*` alone allows every
//! origin. A request without an `Origin` header is not from a browser and
//! is always allowed.

use thiserror::Error;

/// An `--allowed-origins` entry that is not an origin or a wildcard.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("`{entry}` is not an origin (scheme://host[:port]) or a wildcard ([scheme://]*.domain[:port]): {why}")]
pub struct OriginError {
    /// The entry as given.
    pub entry: String,
    /// What is wrong with it.
    pub why: &'static str,
}

/// One parsed origin or entry: scheme, host (lower case), port.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Parts {
    scheme: Option<String>,
    host: String,
    port: Option<u16>,
}

/// The parsed `--allowed-origins` list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowedOrigins {
    any: bool,
    exact: Vec<Parts>,
    /// `host` holds the suffix with its leading dot (`.example.com`).
    wildcard: Vec<Parts>,
}

fn split(text: &str) -> Result<Parts, &'static str> {
    let (scheme, rest) = match text.split_once("://") {
        Some((s, r)) => {
            if s.is_empty()
                || !s
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b))
            {
                return Err("bad scheme");
            }
            (Some(s.to_ascii_lowercase()), r)
        }
        None => (None, text),
    };
    if rest.contains(['/', '?', '#', '@']) {
        return Err("an origin has no path, query or user");
    }
    let (host, port) = if rest.starts_with('[') {
        // An IPv6 literal: `[addr]` or `[addr]:port`.
        let end = rest.find(']').ok_or("bad host")?;
        match &rest[end + 1..] {
            "" => (&rest[..=end], None),
            p => {
                let p = p.strip_prefix(':').ok_or("bad host")?;
                (
                    &rest[..=end],
                    Some(p.parse::<u16>().map_err(|_| "bad port")?),
                )
            }
        }
    } else {
        match rest.rsplit_once(':') {
            Some((h, p)) => (h, Some(p.parse::<u16>().map_err(|_| "bad port")?)),
            None => (rest, None),
        }
    };
    let host_ok = match host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        Some(v6) => {
            !v6.is_empty()
                && v6
                    .bytes()
                    .all(|b| b.is_ascii_hexdigit() || b":.".contains(&b))
        }
        None => host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-.*_".contains(&b)),
    };
    if host.is_empty() || !host_ok {
        return Err("bad host");
    }
    Ok(Parts {
        scheme,
        host: host.to_ascii_lowercase(),
        port,
    })
}

impl AllowedOrigins {
    /// Parses the entries of `--allowed-origins`.
    pub fn parse<S: AsRef<str>>(entries: &[S]) -> Result<AllowedOrigins, OriginError> {
        let mut out = AllowedOrigins {
            any: false,
            exact: Vec::new(),
            wildcard: Vec::new(),
        };
        for entry in entries {
            let entry = entry.as_ref().trim();
            let err = |why| OriginError {
                entry: entry.to_owned(),
                why,
            };
            if entry == "*" {
                out.any = true;
                continue;
            }
            let parts = split(entry).map_err(err)?;
            if let Some(suffix) = parts.host.strip_prefix('*') {
                if !suffix.starts_with('.') || suffix.len() < 2 || suffix.contains('*') {
                    return Err(err("a wildcard is `*.` followed by a domain"));
                }
                out.wildcard.push(Parts {
                    host: suffix.to_owned(),
                    ..parts
                });
            } else if parts.host.contains('*') {
                return Err(err("`*` only as the first label"));
            } else if parts.scheme.is_none() {
                return Err(err("an exact origin needs its scheme"));
            } else {
                out.exact.push(parts);
            }
        }
        Ok(out)
    }

    /// True when a browser page of `origin` (the `Origin` header's value)
    /// may connect.
    pub fn allows(&self, origin: &str) -> bool {
        if self.any {
            return true;
        }
        let Ok(got) = split(origin.trim()) else {
            return false;
        };
        if got.scheme.is_none() || got.host.contains('*') {
            return false;
        }
        self.exact.contains(&got)
            || self.wildcard.iter().any(|w| {
                w.scheme
                    .as_ref()
                    .map_or(true, |s| Some(s) == got.scheme.as_ref())
                    && w.port == got.port
                    && got.host.len() > w.host.len()
                    && got.host.ends_with(&w.host)
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn list(entries: &[&str]) -> AllowedOrigins {
        AllowedOrigins::parse(entries).unwrap()
    }

    #[test]
    fn exact_origins_match_scheme_host_and_port() {
        let o = list(&["https://app.example.com", "http://localhost:3000"]);
        assert!(o.allows("https://app.example.com"));
        assert!(o.allows("https://APP.example.com"));
        assert!(o.allows("http://localhost:3000"));
        assert!(!o.allows("http://app.example.com"), "scheme");
        assert!(!o.allows("https://app.example.com:8443"), "port");
        assert!(!o.allows("http://localhost:3001"));
        assert!(!o.allows("https://evil.com"));
        assert!(!o.allows("null"));
        assert!(!o.allows(""));
    }

    #[test]
    fn wildcards_match_subdomains_only() {
        let o = list(&["*.example.com", "https://*.corp.io:8443"]);
        assert!(o.allows("https://a.example.com"));
        assert!(o.allows("http://a.b.example.com"));
        assert!(!o.allows("https://example.com"));
        assert!(!o.allows("https://evilexample.com"));
        assert!(!o.allows("https://a.example.com:444"));
        assert!(o.allows("https://x.corp.io:8443"));
        assert!(!o.allows("http://x.corp.io:8443"));
        assert!(!o.allows("https://x.corp.io"));
        assert!(list(&["*"]).allows("https://anything.at.all"));
        let v6 = list(&["http://[::1]:8080"]);
        assert!(v6.allows("http://[::1]:8080"));
        assert!(!v6.allows("http://[::1]"));
    }

    #[test]
    fn bad_entries_are_refused() {
        for bad in [
            "example.com",
            "https://a.example.com/path",
            "*example.com",
            "https://a.*.com",
            "https://a.com:99999",
            "*.",
            "",
        ] {
            assert!(AllowedOrigins::parse(&[bad]).is_err(), "{bad}");
        }
    }

    proptest! {
        #[test]
        fn any_origin_or_entry_is_handled_without_panic(entry in "\\PC{0,40}", origin in "\\PC{0,60}") {
            if let Ok(o) = AllowedOrigins::parse(&[entry.as_str()]) {
                let _ = o.allows(&origin);
            }
            let o = list(&["*.example.com", "https://a.b:1"]);
            let _ = o.allows(&origin);
        }

        #[test]
        fn an_exact_entry_allows_exactly_itself(host in "[a-z][a-z0-9-]{0,10}(\\.[a-z]{2,5}){1,2}", port in proptest::option::of(1u16..)) {
            let origin = match port { Some(p) => format!("https://{host}:{p}"), None => format!("https://{host}") };
            let o = list(&[origin.as_str()]);
            prop_assert!(o.allows(&origin));
            let other = format!("https://x{host}");
            prop_assert!(!o.allows(&other));
        }
    }
}
