//! Which browser origins may open a WebSocket and read GraphQL responses
//! (CORS). A browser attaches its page's `Origin` to every WebSocket
//! upgrade and cross-origin request, and a WebSocket is not protected by
//! CORS: without this check any page a user visits could talk to the API
//! in the user's name. Clients that are not browsers send no `Origin`, and
//! are not refused for it.

use axum::http::HeaderValue;

/// The allowed origins: the server's own always, then those listed in
/// `ALLOWED_ORIGINS`, or, when none are listed, any origin in open mode
/// (no authentication to protect).
#[derive(Debug, Clone)]
pub(crate) struct Origins {
    listed: Vec<String>,
    any: bool,
}

impl Origins {
    /// `listed` holds origins as [`parse_origin`] returns them.
    pub(crate) fn new(listed: Vec<String>, open_mode: bool) -> Self {
        let any = listed.is_empty() && open_mode;
        Origins { listed, any }
    }

    /// Whether a request carrying `origin` to the server named by `host`
    /// (its `Host` header) may go on. No `Origin` is not a browser's
    /// request: allowed.
    pub(crate) fn allow(&self, origin: Option<&HeaderValue>, host: Option<&HeaderValue>) -> bool {
        let Some(origin) = origin else { return true };
        let Ok(origin) = origin.to_str() else { return false };
        let host = host.and_then(|h| h.to_str().ok());
        self.any
            || host.is_some_and(|host| same_origin(origin, host))
            || self.listed.iter().any(|listed| listed.eq_ignore_ascii_case(origin))
    }
}

/// An origin (`http` or `https`, a host, an optional port, nothing else),
/// lower-cased and without a trailing slash; `None` if `value` is not one.
pub fn parse_origin(value: &str) -> Option<String> {
    let value = value.trim();
    let value = value.strip_suffix('/').unwrap_or(value).to_ascii_lowercase();
    let (scheme, authority) = value.split_once("://")?;
    let valid = matches!(scheme, "http" | "https")
        && !authority.is_empty()
        && !authority.contains(['/', '?', '#', '@', ' ']);
    valid.then_some(value)
}

/// Whether `origin` names the server the `Host` header names, over http
/// or https (a TLS-terminating proxy in front changes the scheme, not the
/// host). Ports are compared with each scheme's default filled in.
fn same_origin(origin: &str, host: &str) -> bool {
    let Some((scheme, authority)) = origin.split_once("://") else { return false };
    let default_port = match scheme.to_ascii_lowercase().as_str() {
        "http" => "80",
        "https" => "443",
        _ => return false,
    };
    let (origin_host, origin_port) = split_port(authority, default_port);
    let (host, port) = split_port(host, default_port);
    origin_host.eq_ignore_ascii_case(host) && origin_port == port
}

/// `host[:port]` as (host, port), the port defaulted; IPv6 literals keep
/// their brackets (`[::1]:8000`).
fn split_port<'a>(authority: &'a str, default_port: &'a str) -> (&'a str, &'a str) {
    match authority.rsplit_once(':') {
        Some((host, port))
            if !port.is_empty()
                && port.bytes().all(|b| b.is_ascii_digit())
                && (!host.starts_with('[') || host.ends_with(']')) =>
        {
            (host, port)
        }
        _ => (authority, default_port),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allows(origins: &Origins, origin: &str, host: &str) -> bool {
        let (origin, host) = (HeaderValue::from_str(origin).ok(), HeaderValue::from_str(host).ok());
        origins.allow(origin.as_ref(), host.as_ref())
    }

    #[test]
    fn the_servers_own_origin_is_allowed_over_http_or_https() {
        let secured = Origins::new(vec![], false);
        assert!(allows(&secured, "http://127.0.0.1:8000", "127.0.0.1:8000"));
        assert!(allows(&secured, "https://API.example", "api.example"));
        assert!(allows(&secured, "http://api.example", "api.example:80"));
        assert!(allows(&secured, "http://[::1]:8000", "[::1]:8000"));
        assert!(!allows(&secured, "http://127.0.0.1:3000", "127.0.0.1:8000"));
        assert!(!allows(&secured, "https://api.example", "api.example:80"));
        assert!(!allows(&secured, "http://evil.example", "api.example"));
        assert!(!allows(&secured, "null", "api.example"));
    }

    #[test]
    fn listed_origins_are_allowed_and_open_mode_without_a_list_allows_any() {
        let listed = Origins::new(vec!["https://shop.example".into()], false);
        assert!(allows(&listed, "https://shop.example", "api.example"));
        assert!(!allows(&listed, "http://shop.example", "api.example"));
        assert!(allows(&Origins::new(vec![], true), "http://evil.example", "api.example"));
        let open_but_listed = Origins::new(vec!["https://shop.example".into()], true);
        assert!(!allows(&open_but_listed, "http://evil.example", "api.example"));
    }

    #[test]
    fn a_request_without_origin_is_not_a_browsers_and_is_allowed() {
        assert!(Origins::new(vec![], false).allow(None, None));
    }

    #[test]
    fn only_bare_http_origins_parse() {
        assert_eq!(
            parse_origin(" https://Shop.example/ ").as_deref(),
            Some("https://shop.example")
        );
        assert_eq!(parse_origin("http://localhost:3000").as_deref(), Some("http://localhost:3000"));
        for bad in ["shop.example", "https://", "https://a/b", "ftp://a", "https://u@a", "*"] {
            assert_eq!(parse_origin(bad), None, "{bad}");
        }
    }
}
