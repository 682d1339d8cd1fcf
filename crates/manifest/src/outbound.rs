//! Outbound network allow-lists (`allowed_outbound_hosts`).
//!
//! The syntax and matching rules follow Spin 3.x, verified against
//! `crates/outbound-networking-config/src/allowed_hosts.rs` in spinframework/spin:
//!
//! - an entry is `scheme://host[:port]`; a missing scheme is an error, as is a path;
//!   a single trailing `/` is allowed;
//! - the scheme is `*` or letters only;
//! - the host is `*`, `*.domain` (any subdomain, not the domain itself), `self` / `self.alt`
//!   (relative requests to the app itself), an IP network in CIDR form (`10.0.0.0/8`), or an
//!   exact name compared as written;
//! - the port is `*`, a number, or an exclusive range `start..end`; without a port the
//!   scheme's well-known port is used (http 80, https 443, postgres 5432, mysql 3306,
//!   redis 6379, mqtt 1883), and a scheme without one needs an explicit port;
//! - `{ ... }` lists and `insecure:allow-all` are refused, as Spin does;
//! - service chaining (`http://<component>.spin.internal`, `http://*.spin.internal`) needs no
//!   special syntax: it is an ordinary host entry matched against the request's host.
//!
//! `{{ variable }}` templates are accepted by Spin but not by dol: they are refused by name.

use std::net::IpAddr;

/// The domain under which components are reachable by id for service chaining.
pub const SERVICE_CHAINING_DOMAIN: &str = "spin.internal";

/// An `allowed_outbound_hosts` entry that could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OutboundError {
    /// The entry is not in a syntax Spin accepts.
    #[error("{entry:?}: {reason}")]
    Invalid {
        /// The entry as written in the manifest.
        entry: String,
        /// Why it was refused.
        reason: String,
    },
    /// The entry uses a `{{ variable }}` template, which dol does not resolve in allow-lists.
    #[error(
        "{entry:?}: {{{{ }}}} templates in allowed_outbound_hosts are not supported by dol; write the host out"
    )]
    Template {
        /// The entry as written in the manifest.
        entry: String,
    },
}

/// A parsed `allowed_outbound_hosts` list: a request is allowed when any entry allows it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllowedHosts {
    entries: Vec<AllowedHost>,
}

/// One parsed allow-list entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowedHost {
    original: String,
    scheme: SchemeRule,
    host: HostRule,
    port: PortRule,
}

/// Which schemes an entry allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SchemeRule {
    /// `*`: every scheme.
    Any,
    /// One scheme, e.g. `https`.
    Exact(String),
}

/// Which hosts an entry allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostRule {
    /// `*`: every host (and relative requests to the app itself).
    Any,
    /// `*.example.com`: any host ending in the stored suffix (`.example.com`).
    AnySubdomain(String),
    /// `self` or `self.alt`: relative requests to the app itself only.
    ToSelf,
    /// One host name or IP address, compared as written.
    Exact(String),
    /// An IP network such as `10.0.0.0/8`; host bits are truncated as Spin does.
    Network {
        /// The network address (host bits cleared).
        address: IpAddr,
        /// The prefix length in bits.
        prefix_len: u8,
    },
}

/// Which ports an entry allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PortRule {
    /// `*`: every port.
    Any,
    /// One port.
    Port(u16),
    /// `start..end`: ports from `start` up to but excluding `end`, as Spin's `Range` does.
    Range(u16, u16),
}

impl AllowedHosts {
    /// Parses a component's `allowed_outbound_hosts` entries.
    pub fn parse(entries: &[String]) -> Result<AllowedHosts, OutboundError> {
        if entries.iter().any(|entry| entry == "insecure:allow-all") {
            return Err(OutboundError::Invalid {
                entry: "insecure:allow-all".to_owned(),
                reason: "'insecure:allow-all' is not allowed - use '*://*:*' instead if you really want to allow all outbound traffic".to_owned(),
            });
        }
        let entries = entries
            .iter()
            .map(|entry| AllowedHost::parse(entry))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(AllowedHosts { entries })
    }

    /// The parsed entries, in manifest order.
    pub fn entries(&self) -> &[AllowedHost] {
        &self.entries
    }

    /// True when nothing is allowed (the default for a component without the key).
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Whether a request to `scheme://host[:port]` is allowed. `port` is the explicit port of
    /// the request URL, if any; otherwise the scheme's well-known port is used for matching.
    /// `host` is compared case-insensitively (URL parsers lower-case host names) and IPv6
    /// brackets are ignored for network entries.
    pub fn allows(&self, scheme: &str, host: &str, port: Option<u16>) -> bool {
        self.entries
            .iter()
            .any(|entry| entry.allows(scheme, host, port))
    }

    /// Whether relative URLs (requests to the app itself) are allowed for any of `schemes`.
    /// Spin allows them when an entry's scheme matches and its host is `self`, `self.alt` or `*`.
    pub fn allows_relative(&self, schemes: &[&str]) -> bool {
        self.entries.iter().any(|entry| {
            schemes.iter().any(|scheme| entry.scheme.allows(scheme))
                && matches!(entry.host, HostRule::Any | HostRule::ToSelf)
        })
    }

    /// Whether the component may make relative HTTP requests to its own app
    /// (`self` / `http://self` / `https://self` or a `*` host); Spin checks the schemes
    /// `http` and `https` for outbound HTTP.
    pub fn allows_self(&self) -> bool {
        self.allows_relative(&["http", "https"])
    }
}

impl AllowedHost {
    /// Parses one entry with Spin's algorithm (see the module documentation).
    pub fn parse(entry: &str) -> Result<AllowedHost, OutboundError> {
        let invalid = |reason: String| OutboundError::Invalid {
            entry: entry.to_owned(),
            reason,
        };
        if crate::template::is_template(entry) {
            return Err(OutboundError::Template {
                entry: entry.to_owned(),
            });
        }
        let url = entry.trim();
        let Some((scheme, rest)) = url.split_once("://") else {
            return Err(invalid(match url {
                "*" | ":" | "" | "?" => "is not an allowed outbound host format: hosts must be in the form <scheme>://<host>[:<port>], with '*' wildcards allowed for each ('*://*:*' allows everything)".to_owned(),
                _ => "does not contain a scheme (e.g. 'http://' or '*://')".to_owned(),
            }));
        };
        // Spin splits the port off at the last ':' before looking at the host; that is why
        // an IPv6 address needs both brackets and an explicit port.
        let (host, port_and_path) = rest.rsplit_once(':').unwrap_or((rest, ""));
        let port = match port_and_path.split_once('/') {
            Some((port, path)) => {
                if !path.is_empty() {
                    return Err(invalid("has a path but is not allowed to".to_owned()));
                }
                port
            }
            None => port_and_path,
        };
        Ok(AllowedHost {
            scheme: SchemeRule::parse(scheme).map_err(invalid)?,
            host: HostRule::parse(host).map_err(invalid)?,
            port: PortRule::parse(port, scheme).map_err(invalid)?,
            original: entry.to_owned(),
        })
    }

    /// The entry as written in the manifest.
    pub fn original(&self) -> &str {
        &self.original
    }

    /// The scheme part.
    pub fn scheme(&self) -> &SchemeRule {
        &self.scheme
    }

    /// The host part.
    pub fn host(&self) -> &HostRule {
        &self.host
    }

    /// The port part.
    pub fn port(&self) -> &PortRule {
        &self.port
    }

    fn allows(&self, scheme: &str, host: &str, port: Option<u16>) -> bool {
        self.scheme.allows(scheme) && self.host.allows(host) && self.port.allows(port, scheme)
    }
}

impl SchemeRule {
    fn parse(scheme: &str) -> Result<SchemeRule, String> {
        if scheme == "*" {
            return Ok(SchemeRule::Any);
        }
        if scheme.starts_with('{') {
            return Err(
                "scheme lists are not supported (Spin does not support them yet)".to_owned(),
            );
        }
        if scheme.chars().any(|c| !c.is_alphabetic()) {
            return Err(format!(
                "scheme {scheme:?} contains a non-alphabetic character"
            ));
        }
        Ok(SchemeRule::Exact(scheme.to_owned()))
    }

    fn allows(&self, scheme: &str) -> bool {
        match self {
            SchemeRule::Any => true,
            SchemeRule::Exact(allowed) => allowed.eq_ignore_ascii_case(scheme),
        }
    }
}

impl HostRule {
    fn parse(host: &str) -> Result<HostRule, String> {
        let host = host.trim();
        if host == "*" {
            return Ok(HostRule::Any);
        }
        if host == "self" || host == "self.alt" {
            return Ok(HostRule::ToSelf);
        }
        if host.starts_with('{') {
            return Err("host lists are not supported (Spin does not support them yet)".to_owned());
        }
        if let Some(network) = parse_network(host) {
            return Ok(network);
        }
        if matches!(host.split('/').nth(1), Some(path) if !path.is_empty()) {
            return Err("hosts must not contain paths".to_owned());
        }
        if let Some(domain) = host.strip_prefix("*.") {
            if domain.contains('*') {
                return Err(format!(
                    "invalid allowed host {host}: wildcards are allowed only as prefixes"
                ));
            }
            return Ok(HostRule::AnySubdomain(format!(".{domain}")));
        }
        if host.contains('*') {
            return Err(format!(
                "invalid allowed host {host}: wildcards are allowed only as subdomains"
            ));
        }
        Ok(HostRule::Exact(host.trim_end_matches('/').to_owned()))
    }

    fn allows(&self, host: &str) -> bool {
        match self {
            HostRule::Any => true,
            HostRule::AnySubdomain(suffix) => {
                let host = host.to_ascii_lowercase();
                host.ends_with(&suffix.to_ascii_lowercase())
            }
            HostRule::ToSelf => false,
            HostRule::Exact(allowed) => allowed.eq_ignore_ascii_case(host),
            HostRule::Network {
                address,
                prefix_len,
            } => {
                let unbracketed = host.trim_start_matches('[').trim_end_matches(']');
                unbracketed
                    .parse::<IpAddr>()
                    .is_ok_and(|ip| network_contains(*address, *prefix_len, ip))
            }
        }
    }
}

/// Parses `address/prefix` into a network with host bits cleared (Spin uses
/// `IpNetwork::from_str_truncate`, which needs the `/prefix`).
fn parse_network(host: &str) -> Option<HostRule> {
    let (address, prefix) = host.split_once('/')?;
    let address: IpAddr = address.parse().ok()?;
    let prefix_len: u8 = prefix.parse().ok()?;
    let max_len = if address.is_ipv4() { 32 } else { 128 };
    if prefix_len > max_len {
        return None;
    }
    Some(HostRule::Network {
        address: truncate(address, prefix_len),
        prefix_len,
    })
}

fn truncate(address: IpAddr, prefix_len: u8) -> IpAddr {
    match address {
        IpAddr::V4(v4) => {
            let mask = u32::MAX
                .checked_shl(32 - u32::from(prefix_len))
                .unwrap_or(0);
            IpAddr::V4((u32::from(v4) & mask).into())
        }
        IpAddr::V6(v6) => {
            let mask = u128::MAX
                .checked_shl(128 - u32::from(prefix_len))
                .unwrap_or(0);
            IpAddr::V6((u128::from(v6) & mask).into())
        }
    }
}

fn network_contains(network: IpAddr, prefix_len: u8, ip: IpAddr) -> bool {
    match (network, ip) {
        (IpAddr::V4(_), IpAddr::V4(_)) | (IpAddr::V6(_), IpAddr::V6(_)) => {
            truncate(ip, prefix_len) == network
        }
        _ => false,
    }
}

impl PortRule {
    fn parse(port: &str, scheme: &str) -> Result<PortRule, String> {
        if port.is_empty() {
            return well_known_port(scheme).map(PortRule::Port).ok_or_else(|| {
                format!(
                    "no port was provided and the scheme {scheme:?} does not have a known default port number"
                )
            });
        }
        if port == "*" {
            return Ok(PortRule::Any);
        }
        if port.starts_with('{') {
            return Err("port lists are not supported (Spin does not support them yet)".to_owned());
        }
        if let Some((start, end)) = port.split_once("..") {
            let parse_bound = |bound: &str| {
                bound
                    .parse::<u16>()
                    .map_err(|_| format!("port range {port:?} contains non-number"))
            };
            return Ok(PortRule::Range(parse_bound(start)?, parse_bound(end)?));
        }
        port.parse()
            .map(PortRule::Port)
            .map_err(|_| format!("port {port:?} is not a number"))
    }

    fn allows(&self, port: Option<u16>, scheme: &str) -> bool {
        let Some(port) = port.or_else(|| well_known_port(scheme)) else {
            return matches!(self, PortRule::Any);
        };
        match self {
            PortRule::Any => true,
            PortRule::Port(allowed) => *allowed == port,
            PortRule::Range(start, end) => (*start..*end).contains(&port),
        }
    }
}

/// The default port Spin assumes for a scheme when an entry or request gives none.
pub fn well_known_port(scheme: &str) -> Option<u16> {
    match scheme {
        "postgres" => Some(5432),
        "mysql" => Some(3306),
        "redis" => Some(6379),
        "mqtt" => Some(1883),
        "http" => Some(80),
        "https" => Some(443),
        _ => None,
    }
}

/// If `host` (optionally with `:port`) is a service-chaining host `<id>.spin.internal`,
/// returns `<id>` (which may be `*` for the wildcard entry). Mirrors Spin's
/// `parse_service_chaining_host`: exactly one label before `.spin.internal`.
pub fn service_chaining_target(host: &str) -> Option<&str> {
    let host = host.trim();
    let (host, _port) = host.rsplit_once(':').unwrap_or((host, ""));
    let (first, rest) = host.split_once('.')?;
    (rest == SERVICE_CHAINING_DOMAIN).then_some(first)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hosts(entries: &[&str]) -> AllowedHosts {
        let entries: Vec<String> = entries.iter().map(|e| (*e).to_owned()).collect();
        AllowedHosts::parse(&entries).unwrap()
    }

    fn parse_error(entry: &str) -> String {
        AllowedHost::parse(entry).unwrap_err().to_string()
    }

    #[test]
    fn default_ports_come_from_the_scheme() {
        let allowed = hosts(&["http://example.com", "https://api.example.com"]);
        assert!(allowed.allows("http", "example.com", None));
        assert!(allowed.allows("http", "example.com", Some(80)));
        assert!(!allowed.allows("http", "example.com", Some(8080)));
        assert!(!allowed.allows("https", "example.com", None));
        assert!(allowed.allows("https", "api.example.com", Some(443)));
        assert_eq!(
            AllowedHost::parse("redis://cache").unwrap().port(),
            &PortRule::Port(6379)
        );
        assert_eq!(
            AllowedHost::parse("postgres://db").unwrap().port(),
            &PortRule::Port(5432)
        );
    }

    #[test]
    fn scheme_without_default_port_needs_one() {
        let error = parse_error("tcp://example.com");
        assert!(
            error.contains("tcp://example.com") && error.contains("default port"),
            "{error}"
        );
        assert!(AllowedHost::parse("tcp://example.com:9000").is_ok());
    }

    #[test]
    fn wildcards_for_scheme_host_and_port() {
        let allowed = hosts(&["*://*:*"]);
        assert!(allowed.allows("ftp", "anything", Some(21)));
        assert!(allowed.allows_self());

        let allowed = hosts(&["*://localhost:*"]);
        assert!(allowed.allows("http", "localhost", Some(3000)));
        assert!(!allowed.allows("http", "example.com", Some(3000)));

        let allowed = hosts(&["https://*"]);
        assert!(allowed.allows("https", "anything.test", None));
        assert!(!allowed.allows("https", "anything.test", Some(8443)));
        assert!(!allowed.allows("http", "anything.test", None));
    }

    #[test]
    fn subdomain_wildcards_exclude_the_domain_itself() {
        let allowed = hosts(&["http://*.example.com", "http://*.example2.com:8383"]);
        assert!(allowed.allows("http", "a.example.com", None));
        assert!(allowed.allows("http", "a.b.example.com", None));
        assert!(allowed.allows("http", "a.b.example2.com", Some(8383)));
        assert!(!allowed.allows("http", "a.b.example2.com", None));
        assert!(!allowed.allows("http", "example.com", None));
        assert!(!allowed.allows("http", "myexample.com", None));
    }

    #[test]
    fn port_ranges_exclude_the_end() {
        let allowed = hosts(&["http://spin.fermyon.dev:4444..5555"]);
        assert!(allowed.allows("http", "spin.fermyon.dev", Some(4444)));
        assert!(allowed.allows("http", "spin.fermyon.dev", Some(5554)));
        assert!(!allowed.allows("http", "spin.fermyon.dev", Some(5555)));
        let error = parse_error("http://h:1..x");
        assert!(error.contains("non-number"), "{error}");
    }

    #[test]
    fn self_allows_relative_requests_only() {
        for entry in [
            "http://self",
            "https://self",
            "http://self.alt",
            "*://self:*",
        ] {
            let allowed = hosts(&[entry]);
            assert!(allowed.allows_self(), "{entry}");
            assert!(!allowed.allows("http", "self", None), "{entry}");
        }
        assert!(!hosts(&["http://example.com"]).allows_self());
        assert!(!hosts(&["redis://self"]).allows_self());
        assert!(hosts(&["redis://self"]).allows_relative(&["redis"]));
        // As in Spin, `self` needs a scheme like every other entry.
        let error = parse_error("self");
        assert!(error.contains("does not contain a scheme"), "{error}");
    }

    #[test]
    fn service_chaining_entries_are_plain_hosts() {
        let allowed = hosts(&["http://health.spin.internal"]);
        assert!(allowed.allows("http", "health.spin.internal", None));
        assert!(!allowed.allows("http", "scans.spin.internal", None));
        let allowed = hosts(&["http://*.spin.internal"]);
        assert!(allowed.allows("http", "scans.spin.internal", None));
        assert!(!allowed.allows("https", "scans.spin.internal", None));
    }

    #[test]
    fn recognises_service_chaining_hosts() {
        assert_eq!(
            service_chaining_target("health.spin.internal"),
            Some("health")
        );
        assert_eq!(
            service_chaining_target("health.spin.internal:80"),
            Some("health")
        );
        assert_eq!(service_chaining_target("*.spin.internal"), Some("*"));
        assert_eq!(service_chaining_target("a.b.spin.internal"), None);
        assert_eq!(service_chaining_target("spin.internal"), None);
        assert_eq!(service_chaining_target("example.com"), None);
    }

    #[test]
    fn ip_addresses_and_networks() {
        let allowed = hosts(&[
            "http://192.168.1.1",
            "*://127.0.0.1/24:63551",
            "*://ff00::/8:80",
        ]);
        assert!(allowed.allows("http", "192.168.1.1", None));
        assert!(allowed.allows("tcp", "127.0.0.1", Some(63551)));
        assert!(allowed.allows("tcp", "127.0.0.200", Some(63551)));
        assert!(!allowed.allows("tcp", "127.0.1.1", Some(63551)));
        assert!(allowed.allows("http", "[ff00::1]", Some(80)));
        assert_eq!(
            AllowedHost::parse("*://127.0.0.1/24:80").unwrap().host(),
            &HostRule::Network {
                address: "127.0.0.0".parse().unwrap(),
                prefix_len: 24
            }
        );
        // As in Spin: a network or an IPv6 address needs an explicit port.
        assert!(AllowedHost::parse("*://127.0.0.0/24").is_err());
        assert!(AllowedHost::parse("http://[::1]").is_err());
        assert!(AllowedHost::parse("http://[::1]:8001").is_ok());
    }

    #[test]
    fn trailing_slash_is_allowed_but_paths_are_not() {
        assert!(hosts(&["https://my.api.com/"]).allows("https", "my.api.com", None));
        assert!(AllowedHost::parse("http://spin.fermyon.dev:4444/").is_ok());
        for entry in [
            "http://spin.fermyon.dev/a",
            "http://spin.fermyon.dev:6666/a/b",
            "http://*.fermyon.dev/a",
        ] {
            let error = parse_error(entry);
            assert!(error.contains(entry) && error.contains("path"), "{error}");
        }
    }

    #[test]
    fn invalid_entries_name_the_entry() {
        for (entry, reason) in [
            ("example.com", "does not contain a scheme"),
            ("localhost:3001", "does not contain a scheme"),
            ("*", "not an allowed outbound host format"),
            ("ht1p://example.com", "non-alphabetic"),
            ("http://ex*ample.com", "only as subdomains"),
            ("http://*.ex*ample.com", "only as prefixes"),
            ("http://example.com:port", "is not a number"),
            ("http://example.com:99999", "is not a number"),
            ("{http,https}://example.com", "scheme lists"),
            ("http://{a,b}", "host lists"),
            ("http://example.com:{80,81}", "port lists"),
        ] {
            let error = parse_error(entry);
            assert!(error.contains(&format!("{entry:?}")), "{error}");
            assert!(error.contains(reason), "{entry}: {error}");
        }
    }

    #[test]
    fn templates_and_allow_all_are_refused() {
        let error = parse_error("https://{{ api_host }}");
        assert!(
            error.contains("templates") && error.contains("api_host"),
            "{error}"
        );
        let error = AllowedHosts::parse(&["insecure:allow-all".to_owned()])
            .unwrap_err()
            .to_string();
        assert!(error.contains("*://*:*"), "{error}");
    }

    #[test]
    fn empty_list_allows_nothing() {
        let allowed = AllowedHosts::default();
        assert!(allowed.is_empty());
        assert!(!allowed.allows("http", "example.com", None));
        assert!(!allowed.allows_self());
    }

    mod properties {
        use super::super::*;
        use proptest::prelude::*;

        proptest! {
            #[test]
            fn parsing_never_panics(entries in proptest::collection::vec(".{0,40}", 0..4)) {
                let _ = AllowedHosts::parse(&entries);
            }

            #[test]
            fn parsing_structured_noise_never_panics(
                scheme in "[a-z*{]{0,6}",
                host in "[a-z0-9.*:/\\[\\]{}-]{0,20}",
                port in "[0-9.*{}:/]{0,8}",
            ) {
                let _ = AllowedHost::parse(&format!("{scheme}://{host}:{port}"));
                let _ = AllowedHost::parse(&format!("{scheme}://{host}"));
            }

            #[test]
            fn an_exact_entry_allows_its_own_host_and_port(
                scheme in "[a-z]{1,8}",
                host in "[a-z][a-z0-9-]{0,10}(\\.[a-z][a-z0-9-]{0,10}){0,3}",
                port in 1u16..,
            ) {
                // `self` names the app itself, not a host, so it never matches a host.
                prop_assume!(host != "self" && host != "self.alt");
                let allowed = AllowedHosts::parse(&[format!("{scheme}://{host}:{port}")]).unwrap();
                prop_assert!(allowed.allows(&scheme, &host, Some(port)));
                let other_host = format!("x{}", host);
                prop_assert!(!allowed.allows(&scheme, &other_host, Some(port)));
            }
        }
    }
}
