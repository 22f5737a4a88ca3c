//! Backend URLs: `http(s)://host[:port][/path]`, split into parts and resolved once at load time.

use std::net::{IpAddr, SocketAddr, ToSocketAddrs};

/// The parts of a backend URL that the gateway needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BackendUrl {
    /// `https` was asked for.
    pub(crate) tls: bool,
    /// Host name or address (IPv6 without brackets).
    pub(crate) host: String,
    /// The explicit port, or 80/443.
    pub(crate) port: u16,
    /// `Host` header value: host (bracketed for IPv6), plus `:port` when not the scheme's default.
    pub(crate) authority: String,
    /// Path prefix without a trailing slash (`""` for none).
    pub(crate) base_path: String,
}

/// Split `url` into its parts.
///
/// # Errors
/// A human message for anything but `http(s)://host[:port][/path]`.
pub(crate) fn parse_url(url: &str) -> Result<BackendUrl, String> {
    let bad = |why: &str| format!("invalid url \"{url}\": {why}");
    let (tls, rest) = if let Some(r) = strip_prefix_ci(url, "http://") {
        (false, r)
    } else if let Some(r) = strip_prefix_ci(url, "https://") {
        (true, r)
    } else {
        return Err(bad("expected http:// or https://"));
    };
    if rest.contains(['?', '#']) {
        return Err(bad("query strings and fragments are not supported"));
    }
    if rest.contains(|c: char| c.is_whitespace() || c.is_control()) {
        return Err(bad("contains whitespace"));
    }
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    if authority.contains('@') {
        return Err(bad("user:password@ is not supported (use api_key)"));
    }
    let default_port = if tls { 443 } else { 80 };
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (host, after) = v6.split_once(']').ok_or_else(|| bad("unclosed '['"))?;
        if host.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(bad("invalid IPv6 address"));
        }
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':').ok_or_else(|| bad("junk after ']'"))?),
        };
        (host, port)
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    if host.is_empty() {
        return Err(bad("missing host"));
    }
    let port = match port {
        None => default_port,
        Some(p) => match p.parse::<u16>() {
            Ok(n) if n != 0 => n,
            _ => return Err(bad("invalid port")),
        },
    };
    let host_in_header = if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_owned()
    };
    let authority = if port == default_port {
        host_in_header
    } else {
        format!("{host_in_header}:{port}")
    };
    Ok(BackendUrl {
        tls,
        host: host.to_owned(),
        port,
        authority,
        base_path: path.trim_end_matches('/').to_owned(),
    })
}

/// Resolve `host:port` now, so no worker ever blocks on DNS.
///
/// # Errors
/// The name does not resolve (or resolves to nothing).
pub(crate) fn resolve(host: &str, port: u16) -> Result<Vec<SocketAddr>, String> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, port)]);
    }
    let mut addrs: Vec<SocketAddr> = (host, port)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve host \"{host}\": {e}"))?
        .collect();
    addrs.dedup();
    if addrs.is_empty() {
        return Err(format!("host \"{host}\" resolves to no address"));
    }
    Ok(addrs)
}

fn strip_prefix_ci<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &s[prefix.len()..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts() {
        let u = parse_url("http://127.0.0.1:18001").unwrap();
        assert_eq!(
            (u.tls, u.host.as_str(), u.port),
            (false, "127.0.0.1", 18001)
        );
        assert_eq!(
            (u.authority.as_str(), u.base_path.as_str()),
            ("127.0.0.1:18001", "")
        );

        let u = parse_url("https://example.openai.azure.com/").unwrap();
        assert_eq!(
            (u.tls, u.port, u.authority.as_str()),
            (true, 443, "example.openai.azure.com")
        );
        assert_eq!(u.base_path, "");

        let u = parse_url("HTTP://h:80/prefix/v2/").unwrap();
        assert_eq!(
            (u.authority.as_str(), u.base_path.as_str()),
            ("h", "/prefix/v2")
        );

        let u = parse_url("http://[::1]:8080/x").unwrap();
        assert_eq!(
            (u.host.as_str(), u.authority.as_str()),
            ("::1", "[::1]:8080")
        );
        let u = parse_url("https://[::1]").unwrap();
        assert_eq!((u.port, u.authority.as_str()), (443, "[::1]"));
    }

    #[test]
    fn rejects() {
        for u in [
            "ftp://h",
            "h:80",
            "http://",
            "http://:80",
            "http://h:0",
            "http://h:99999",
            "http://h:x",
            "http://u:p@h",
            "http://h/?q=1",
            "http://h/#f",
            "http://[::1",
            "http://[zz]:1",
            "http://[::1]x",
            "http://h h",
        ] {
            assert!(parse_url(u).is_err(), "{u} should fail");
        }
    }

    #[test]
    fn resolves_literals_and_localhost() {
        assert_eq!(
            resolve("127.0.0.1", 9).unwrap(),
            vec!["127.0.0.1:9".parse().unwrap()]
        );
        assert_eq!(resolve("::1", 9).unwrap(), vec!["[::1]:9".parse().unwrap()]);
        assert!(resolve("localhost", 9)
            .unwrap()
            .iter()
            .all(|a| a.ip().is_loopback()));
    }
}
