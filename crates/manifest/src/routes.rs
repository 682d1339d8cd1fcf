//! Spin's HTTP routing: which component handles a request path, and the `spin-*` headers the
//! component receives.
//!
//! Verified against spinframework/spin `crates/http/src/routes.rs` (route building and the
//! trailing-wildcard rules), `crates/trigger-http/src/headers.rs` (header names and values) and
//! the `routefinder` crate Spin uses for matching (jbr/routefinder, `route_spec.rs` /
//! `segment.rs` ordering):
//!
//! - a route is made absolute and combined with the base; one trailing `/` is dropped from
//!   both (`/` with base `/` becomes the empty based route, as in Spin);
//! - `/...` (or `/*`) at the end is a trailing wildcard that also matches the bare prefix;
//!   `:name` segments match one non-empty path segment;
//! - leading and trailing slashes of the request path are ignored when matching, as
//!   routefinder does, so `/foo/` matches the route `/foo`;
//! - precedence is routefinder's: routes are compared segment by segment from the left, a
//!   literal segment beats a `:param`, which beats the wildcard, and a route that ends at the
//!   path's end beats a wildcard matching nothing. So exact routes win over wildcards and the
//!   longest wildcard prefix wins, whatever the manifest order;
//! - private routes (`route = { private = true }`) are never matched, but their components can
//!   still be reached by id through service chaining.
//!
//! One deliberate difference: Spin logs duplicate routes and keeps the last one; dol refuses
//! them (two routes matching exactly the same requests, param names aside), naming both.

use std::collections::BTreeSet;

use crate::manifest::{HttpTrigger, RouteSpec};

/// Paths under this prefix are served by the runtime itself (`health`, `info`) and never
/// reach a component.
pub const WELL_KNOWN_PREFIX: &str = "/.well-known/spin/";

/// Why the HTTP routes could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    /// A route pattern that Spin (routefinder) would not accept, or that dol does not support.
    #[error("route {route:?} of component {component:?}: {reason}")]
    Invalid {
        /// Position of the trigger among the HTTP triggers given to [`Router::build`].
        index: usize,
        /// The route as written.
        route: String,
        /// The component the route belongs to.
        component: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Two routes match exactly the same requests.
    #[error(
        "route {route:?} of component {component:?} duplicates route {first_route:?} of component {first_component:?} (Spin would silently use only the last one)"
    )]
    Duplicate {
        /// Position of the later trigger among the HTTP triggers given to [`Router::build`].
        index: usize,
        /// The later route, as written.
        route: String,
        /// The component of the later route.
        component: String,
        /// The earlier route, as written.
        first_route: String,
        /// The component of the earlier route.
        first_component: String,
    },
}

/// The result of routing a request path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteMatch {
    /// The id of the component that handles the request.
    pub component: String,
    /// The route as written in the manifest, e.g. `/api/...`.
    pub raw_route: String,
    /// The route combined with the application base, e.g. `/api/...` (empty for `/`).
    pub based_route: String,
    /// The part of the path matched by a trailing wildcard (`spin-path-info`), e.g. `/a/b`;
    /// empty for exact routes.
    pub path_info: String,
    /// Values of the `:name` segments, in route order.
    pub params: Vec<(String, String)>,
}

impl RouteMatch {
    /// The raw route without its trailing `/...` (`spin-component-route`), e.g. `/api`.
    /// Like Spin, only `/...` is stripped, not `/*`.
    pub fn component_route(&self) -> &str {
        self.raw_route
            .strip_suffix("/...")
            .unwrap_or(&self.raw_route)
    }
}

/// Routes request paths to components, as Spin's HTTP trigger does.
#[derive(Debug, Clone)]
pub struct Router {
    entries: Vec<RouteEntry>,
    components: BTreeSet<String>,
}

#[derive(Debug, Clone)]
struct RouteEntry {
    component: String,
    raw_route: String,
    based_route: String,
    pattern: Pattern,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    Param(String),
}

#[derive(Debug, Clone)]
struct Pattern {
    segments: Vec<Segment>,
    trailing_wildcard: bool,
}

// Specificity ranks: a higher sequence wins (see the module documentation).
const RANK_LITERAL: u8 = 3;
const RANK_PARAM: u8 = 2;
const RANK_END: u8 = 1;
const RANK_WILDCARD: u8 = 0;

impl Pattern {
    fn parse(based_route: &str) -> Result<Pattern, String> {
        let (prefix, trailing_wildcard) = match based_route
            .strip_suffix("/...")
            .or_else(|| based_route.strip_suffix("/*"))
        {
            Some(prefix) => (prefix, true),
            None => (based_route, false),
        };
        let mut segments = Vec::new();
        for section in prefix.split('/').filter(|section| !section.is_empty()) {
            if section == "*" {
                return Err("a wildcard must be the last segment of a route".to_owned());
            }
            if section.starts_with('*') {
                return Err(format!(
                    "since there can only be one wildcard, it doesn't need a name: replace `{section}` with `*` or `...`"
                ));
            }
            if let Some(name) = section.strip_prefix(':') {
                if name.is_empty() {
                    return Err("params must be named".to_owned());
                }
                if name.contains(['.', ':', '*']) {
                    return Err(format!(
                        "param segment `{section}` must be a plain `:name` (dol does not support partial-segment params)"
                    ));
                }
                segments.push(Segment::Param(name.to_owned()));
            } else {
                segments.push(Segment::Literal(section.to_owned()));
            }
        }
        Ok(Pattern {
            segments,
            trailing_wildcard,
        })
    }

    /// Two patterns are the same when they match the same paths (param names do not matter).
    fn same_shape(&self, other: &Pattern) -> bool {
        self.trailing_wildcard == other.trailing_wildcard
            && self.segments.len() == other.segments.len()
            && self
                .segments
                .iter()
                .zip(&other.segments)
                .all(|pair| match pair {
                    (Segment::Literal(a), Segment::Literal(b)) => a == b,
                    (Segment::Param(_), Segment::Param(_)) => true,
                    _ => false,
                })
    }

    fn specificity(&self) -> Vec<u8> {
        let mut ranks: Vec<u8> = self
            .segments
            .iter()
            .map(|segment| match segment {
                Segment::Literal(_) => RANK_LITERAL,
                Segment::Param(_) => RANK_PARAM,
            })
            .collect();
        ranks.push(if self.trailing_wildcard {
            RANK_WILDCARD
        } else {
            RANK_END
        });
        ranks
    }

    /// Matches the path's segments; returns the params and, for a wildcard route, the
    /// captured remainder (without surrounding slashes).
    fn matches(&self, path: &str) -> Option<(Vec<(String, String)>, String)> {
        let trimmed = path.trim_start_matches('/').trim_end_matches('/');
        let parts: Vec<&str> = if trimmed.is_empty() {
            Vec::new()
        } else {
            trimmed.split('/').collect()
        };
        let fits = if self.trailing_wildcard {
            parts.len() >= self.segments.len()
        } else {
            parts.len() == self.segments.len()
        };
        if !fits {
            return None;
        }
        let mut params = Vec::new();
        for (segment, part) in self.segments.iter().zip(&parts) {
            match segment {
                Segment::Literal(literal) if literal == part => {}
                Segment::Param(name) if !part.is_empty() => {
                    params.push((name.clone(), (*part).to_owned()));
                }
                _ => return None,
            }
        }
        let remainder = parts
            .get(self.segments.len()..)
            .map(|rest| rest.join("/"))
            .unwrap_or_default();
        Some((params, remainder))
    }
}

impl Router {
    /// Builds the router from the application base (Spin 3 always uses `/`) and the HTTP
    /// triggers, in manifest order.
    pub fn build<'a>(
        base: &str,
        triggers: impl IntoIterator<Item = &'a HttpTrigger>,
    ) -> Result<Router, RouteError> {
        let mut entries: Vec<RouteEntry> = Vec::new();
        let mut components = BTreeSet::new();
        for (index, trigger) in triggers.into_iter().enumerate() {
            components.insert(trigger.component.clone());
            let RouteSpec::Path(raw_route) = &trigger.route else {
                continue;
            };
            let based_route = with_base(base, raw_route);
            let pattern = Pattern::parse(&based_route).map_err(|reason| RouteError::Invalid {
                index,
                route: raw_route.clone(),
                component: trigger.component.clone(),
                reason,
            })?;
            if let Some(first) = entries
                .iter()
                .find(|entry| entry.pattern.same_shape(&pattern))
            {
                return Err(RouteError::Duplicate {
                    index,
                    route: raw_route.clone(),
                    component: trigger.component.clone(),
                    first_route: first.raw_route.clone(),
                    first_component: first.component.clone(),
                });
            }
            entries.push(RouteEntry {
                component: trigger.component.clone(),
                raw_route: raw_route.clone(),
                based_route,
                pattern,
            });
        }
        Ok(Router {
            entries,
            components,
        })
    }

    /// Routes a request path (the URI path; anything from `?` on is ignored). `None` means
    /// Spin would answer 404.
    pub fn route(&self, path: &str) -> Option<RouteMatch> {
        let path = path.split('?').next().unwrap_or_default();
        let (entry, params, remainder) = self
            .entries
            .iter()
            .filter_map(|entry| {
                let (params, remainder) = entry.pattern.matches(path)?;
                Some((entry, params, remainder))
            })
            // `max_by_key` keeps the last of equal keys, like Spin's "last one wins".
            .max_by_key(|(entry, _, _)| entry.pattern.specificity())?;
        let path_info = if entry.pattern.trailing_wildcard {
            wildcard_path_info(&remainder, path.ends_with('/'))
        } else {
            String::new()
        };
        Some(RouteMatch {
            component: entry.component.clone(),
            raw_route: entry.raw_route.clone(),
            based_route: entry.based_route.clone(),
            path_info,
            params,
        })
    }

    /// The match Spin synthesises for a service-chaining request to `component`
    /// (`http://<component>.spin.internal/<path>`): route `/...` with the whole path as
    /// path info. `None` if no trigger (public or private) names the component.
    pub fn chained(&self, component: &str, path: &str) -> Option<RouteMatch> {
        if !self.component_exists(component) {
            return None;
        }
        let path = path.split('?').next().unwrap_or_default();
        Some(RouteMatch {
            component: component.to_owned(),
            raw_route: "/...".to_owned(),
            based_route: "/...".to_owned(),
            path_info: path.to_owned(),
            params: Vec::new(),
        })
    }

    /// Whether an HTTP trigger (public or private) names this component, i.e. whether it can
    /// be reached by service chaining.
    pub fn component_exists(&self, component: &str) -> bool {
        self.components.contains(component)
    }

    /// The public routes as `(based route, component)`, in manifest order.
    pub fn routes(&self) -> impl Iterator<Item = (&str, &str)> {
        self.entries
            .iter()
            .map(|entry| (entry.based_route.as_str(), entry.component.as_str()))
    }

    /// True if a route lies under [`WELL_KNOWN_PREFIX`]; Spin warns that it is unreachable.
    pub fn contains_reserved_route(&self) -> bool {
        self.entries
            .iter()
            .any(|entry| entry.based_route.starts_with(WELL_KNOWN_PREFIX))
    }
}

/// Spin's `sanitize_with_base`: absolutise the route, strip one trailing slash from base and
/// route, concatenate.
fn with_base(base: &str, raw_route: &str) -> String {
    let absolute = if raw_route.starts_with('/') {
        raw_route.to_owned()
    } else {
        format!("/{raw_route}")
    };
    let base = base.strip_suffix('/').unwrap_or(base);
    let route = absolute.strip_suffix('/').unwrap_or(&absolute);
    format!("{base}{route}")
}

/// Spin keeps trailing slashes in the path info although routefinder drops them.
fn wildcard_path_info(remainder: &str, path_ends_with_slash: bool) -> String {
    match (remainder.is_empty(), path_ends_with_slash) {
        (true, false) => String::new(),
        (true, true) => "/".to_owned(),
        (false, false) => format!("/{remainder}"),
        (false, true) => format!("/{remainder}/"),
    }
}

/// The `spin-full-url` value Spin builds: `{scheme}://{Host header or "localhost"}{path and query}`.
pub fn full_url(scheme: &str, host_header: Option<&str>, path_and_query: &str) -> String {
    let host = host_header.unwrap_or("localhost");
    format!("{scheme}://{host}{path_and_query}")
}

/// The headers Spin adds to a request before handing it to a component, in Spin's order:
/// `spin-path-info`, `spin-full-url`, `spin-matched-route`, `spin-base-path`,
/// `spin-raw-component-route`, `spin-component-route`, `spin-client-addr`, then one
/// `spin-path-match-<name>` per `:name` segment (the name lower-cased with `_` turned into `-`,
/// as Spin derives it from `SPIN_PATH_MATCH_<NAME>`). `client_addr` is `ip:port`;
/// `base` is the application base, which Spin 3 always sets to `/`.
pub fn spin_headers(
    route_match: &RouteMatch,
    full_url: &str,
    client_addr: &str,
    base: &str,
) -> Vec<(String, String)> {
    let mut headers = vec![
        ("spin-path-info".to_owned(), route_match.path_info.clone()),
        ("spin-full-url".to_owned(), full_url.to_owned()),
        (
            "spin-matched-route".to_owned(),
            route_match.based_route.clone(),
        ),
        ("spin-base-path".to_owned(), base.to_owned()),
        (
            "spin-raw-component-route".to_owned(),
            route_match.raw_route.clone(),
        ),
        (
            "spin-component-route".to_owned(),
            route_match.component_route().to_owned(),
        ),
        ("spin-client-addr".to_owned(), client_addr.to_owned()),
    ];
    for (name, value) in &route_match.params {
        let header_suffix = name.to_ascii_lowercase().replace('_', "-");
        headers.push((format!("spin-path-match-{header_suffix}"), value.clone()));
    }
    headers
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trigger(component: &str, route: &str) -> HttpTrigger {
        HttpTrigger {
            route: RouteSpec::Path(route.to_owned()),
            component: component.to_owned(),
        }
    }

    fn router(routes: &[(&str, &str)]) -> Router {
        let triggers: Vec<HttpTrigger> = routes.iter().map(|(c, r)| trigger(c, r)).collect();
        Router::build("/", &triggers).unwrap()
    }

    fn component_for(router: &Router, path: &str) -> Option<String> {
        router.route(path).map(|m| m.component)
    }

    #[test]
    fn exact_routes() {
        let r = router(&[("foo", "/foo"), ("foobar", "/foo/bar"), ("root", "/")]);
        assert_eq!(component_for(&r, "/foo").as_deref(), Some("foo"));
        assert_eq!(component_for(&r, "/foo/").as_deref(), Some("foo"));
        assert_eq!(component_for(&r, "/foo/bar").as_deref(), Some("foobar"));
        assert_eq!(component_for(&r, "/").as_deref(), Some("root"));
        assert_eq!(component_for(&r, "").as_deref(), Some("root"));
        assert_eq!(component_for(&r, "/foo/baz"), None);
        assert_eq!(component_for(&r, "/Foo"), None);
        assert_eq!(r.route("/foo").unwrap().path_info, "");
    }

    #[test]
    fn base_is_prefixed() {
        let triggers = [trigger("foo", "/foo"), trigger("foobar", "foo/bar")];
        let r = Router::build("/base", &triggers).unwrap();
        assert_eq!(component_for(&r, "/base/foo").as_deref(), Some("foo"));
        assert_eq!(
            component_for(&r, "/base/foo/bar").as_deref(),
            Some("foobar")
        );
        assert_eq!(component_for(&r, "/foo"), None);
        let m = r.route("/base/foo").unwrap();
        assert_eq!(m.based_route, "/base/foo");
        assert_eq!(m.raw_route, "/foo");
    }

    #[test]
    fn root_route_has_empty_based_route_like_spin() {
        let r = router(&[("root", "/")]);
        let m = r.route("/").unwrap();
        assert_eq!(m.based_route, "");
        assert_eq!(m.raw_route, "/");
        assert_eq!(m.component_route(), "/");
    }

    #[test]
    fn wildcard_matches_everything_below_and_the_prefix() {
        let r = router(&[("all", "/...")]);
        for path in ["/foo/bar", "/abc/", "/", "/this/should/be/captured"] {
            assert_eq!(component_for(&r, path).as_deref(), Some("all"), "{path}");
        }
        assert_eq!(r.route("/1/2/3").unwrap().path_info, "/1/2/3");
        let r = router(&[("one", "/1/...")]);
        assert_eq!(r.route("/1/2/3").unwrap().path_info, "/2/3");
        assert_eq!(component_for(&r, "/12"), None);
    }

    #[test]
    fn star_suffix_is_a_wildcard_too() {
        let r = router(&[("star", "/static/*")]);
        let m = r.route("/static/css/site.css").unwrap();
        assert_eq!(m.path_info, "/css/site.css");
        assert_eq!(m.component_route(), "/static/*");
    }

    #[test]
    fn path_info_keeps_trailing_slashes_like_spin() {
        let r = router(&[("test", "/test/...")]);
        assert_eq!(r.route("/test").unwrap().path_info, "");
        assert_eq!(r.route("/test/").unwrap().path_info, "/");
        assert_eq!(r.route("/test/hello").unwrap().path_info, "/hello");
        assert_eq!(r.route("/test/hello/").unwrap().path_info, "/hello/");
    }

    #[test]
    fn longest_wildcard_wins_regardless_of_order() {
        let forward = router(&[
            ("one", "/one/..."),
            ("onetwo", "/one/two/..."),
            ("onetwothree", "/one/two/three/..."),
        ]);
        let backward = router(&[
            ("onetwothree", "/one/two/three/..."),
            ("onetwo", "/one/two/..."),
            ("one", "/one/..."),
        ]);
        for r in [forward, backward] {
            assert_eq!(
                component_for(&r, "/one/two/three/four").as_deref(),
                Some("onetwothree")
            );
            assert_eq!(component_for(&r, "/one/two/x").as_deref(), Some("onetwo"));
            assert_eq!(component_for(&r, "/one").as_deref(), Some("one"));
        }
    }

    #[test]
    fn exact_beats_wildcard() {
        let r = router(&[
            ("wildcard", "/..."),
            ("one", "/one"),
            ("one-wild", "/one/..."),
        ]);
        assert_eq!(component_for(&r, "/one").as_deref(), Some("one"));
        assert_eq!(component_for(&r, "/one/x").as_deref(), Some("one-wild"));
        assert_eq!(component_for(&r, "/two").as_deref(), Some("wildcard"));
    }

    #[test]
    fn literal_beats_param_beats_wildcard_from_the_left() {
        let r = router(&[
            ("wild", "/users/..."),
            ("by-id", "/users/:id"),
            ("me", "/users/me"),
            ("me-wild", "/users/me/..."),
            ("posts", "/:user/posts"),
        ]);
        assert_eq!(component_for(&r, "/users/me").as_deref(), Some("me"));
        assert_eq!(component_for(&r, "/users/42").as_deref(), Some("by-id"));
        assert_eq!(component_for(&r, "/users/42/x").as_deref(), Some("wild"));
        assert_eq!(component_for(&r, "/users/me/x").as_deref(), Some("me-wild"));
        // `/users/...` has a literal first segment, `/:user/posts` a param: the literal wins.
        assert_eq!(component_for(&r, "/users/posts").as_deref(), Some("by-id"));
        assert_eq!(component_for(&r, "/bob/posts").as_deref(), Some("posts"));
    }

    #[test]
    fn params_are_captured() {
        let r = router(&[("comp", "/1/:two/3")]);
        let m = r.route("/1/2/3").unwrap();
        assert_eq!(m.params, vec![("two".to_owned(), "2".to_owned())]);
        let r = router(&[("comp", "/1/:two/...")]);
        let m = r.route("/1/2/3").unwrap();
        assert_eq!(m.params, vec![("two".to_owned(), "2".to_owned())]);
        assert_eq!(m.path_info, "/3");
        assert_eq!(component_for(&r, "/1"), None, "a param needs a segment");
    }

    #[test]
    fn private_routes_never_match_but_stay_reachable_by_id() {
        let triggers = [
            trigger("public", "/..."),
            HttpTrigger {
                route: RouteSpec::Private,
                component: "internal".to_owned(),
            },
        ];
        let r = Router::build("/", &triggers).unwrap();
        assert_eq!(component_for(&r, "/internal").as_deref(), Some("public"));
        assert!(r.component_exists("internal"));
        assert!(r.component_exists("public"));
        assert!(!r.component_exists("missing"));
        assert_eq!(r.routes().count(), 1);

        let chained = r.chained("internal", "/do/it?x=1").unwrap();
        assert_eq!(chained.raw_route, "/...");
        assert_eq!(chained.based_route, "/...");
        assert_eq!(chained.path_info, "/do/it");
        assert!(r.chained("missing", "/").is_none());
    }

    #[test]
    fn duplicate_routes_name_both() {
        let triggers = [trigger("first", "/foo"), trigger("second", "/foo/")];
        let error = Router::build("/", &triggers).unwrap_err();
        let message = error.to_string();
        assert!(
            message.contains("first") && message.contains("second"),
            "{message}"
        );
        assert!(matches!(error, RouteError::Duplicate { index: 1, .. }));

        let triggers = [trigger("a", "/x/:id"), trigger("b", "/x/:name")];
        assert!(Router::build("/", &triggers).is_err());
        let triggers = [trigger("a", "/x/..."), trigger("b", "/x/*")];
        assert!(Router::build("/", &triggers).is_err());
        let triggers = [trigger("a", "/x/..."), trigger("b", "/x")];
        assert!(Router::build("/", &triggers).is_ok());
    }

    #[test]
    fn invalid_routes_are_refused() {
        for (route, reason) in [
            ("/a/*/b", "last segment"),
            ("/a/*name", "doesn't need a name"),
            ("/a/:", "params must be named"),
            ("/a/:file.json", "plain `:name`"),
        ] {
            let error = Router::build("/", &[trigger("c", route)]).unwrap_err();
            let message = error.to_string();
            assert!(
                message.contains(route) && message.contains(reason),
                "{message}"
            );
        }
    }

    #[test]
    fn reserved_routes_are_detected() {
        assert!(router(&[("c", "/.well-known/spin/...")]).contains_reserved_route());
        assert!(router(&[("c", "/.well-known/spin/fie")]).contains_reserved_route());
        assert!(!router(&[("c", "/.well-known/spindle/...")]).contains_reserved_route());
        assert!(!router(&[("c", "/.well-known/spin")]).contains_reserved_route());
    }

    fn header<'a>(headers: &'a [(String, String)], name: &str) -> &'a str {
        headers
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
            .unwrap_or_else(|| panic!("missing header {name}"))
    }

    #[test]
    fn spin_headers_for_a_wildcard_route() {
        let r = router(&[("api", "/api/...")]);
        let m = r.route("/api/a/b?x=1").unwrap();
        let url = full_url("http", Some("localhost:3000"), "/api/a/b?x=1");
        let headers = spin_headers(&m, &url, "127.0.0.1:50000", "/");
        let names: Vec<&str> = headers.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            names,
            [
                "spin-path-info",
                "spin-full-url",
                "spin-matched-route",
                "spin-base-path",
                "spin-raw-component-route",
                "spin-component-route",
                "spin-client-addr"
            ]
        );
        assert_eq!(header(&headers, "spin-path-info"), "/a/b");
        assert_eq!(
            header(&headers, "spin-full-url"),
            "http://localhost:3000/api/a/b?x=1"
        );
        assert_eq!(header(&headers, "spin-matched-route"), "/api/...");
        assert_eq!(header(&headers, "spin-base-path"), "/");
        assert_eq!(header(&headers, "spin-raw-component-route"), "/api/...");
        assert_eq!(header(&headers, "spin-component-route"), "/api");
        assert_eq!(header(&headers, "spin-client-addr"), "127.0.0.1:50000");
    }

    #[test]
    fn spin_headers_match_spins_own_test_values() {
        // The values of Spin's `test_default_headers_with_named_wildcards`.
        let r = router(&[("dummy", "/foo/:userid/...")]);
        let m = r.route("/foo/42/bar").unwrap();
        let url = full_url(
            "https",
            Some("fermyon.dev"),
            "/foo/42/bar?key1=value1&key2=value2",
        );
        let headers = spin_headers(&m, &url, "127.0.0.1:8777", "/");
        assert_eq!(
            header(&headers, "spin-full-url"),
            "https://fermyon.dev/foo/42/bar?key1=value1&key2=value2"
        );
        assert_eq!(header(&headers, "spin-path-info"), "/bar");
        assert_eq!(header(&headers, "spin-matched-route"), "/foo/:userid/...");
        assert_eq!(
            header(&headers, "spin-raw-component-route"),
            "/foo/:userid/..."
        );
        assert_eq!(header(&headers, "spin-component-route"), "/foo/:userid");
        assert_eq!(header(&headers, "spin-path-match-userid"), "42");
    }

    #[test]
    fn param_header_names_use_dashes() {
        let r = router(&[("c", "/orgs/:org_id")]);
        let m = r.route("/orgs/7").unwrap();
        let headers = spin_headers(&m, "http://localhost/orgs/7", "[::1]:1", "/");
        assert_eq!(header(&headers, "spin-path-match-org-id"), "7");
        assert_eq!(full_url("http", None, "/"), "http://localhost/");
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        fn segment() -> impl Strategy<Value = (bool, String)> {
            // (is_param, text): literal text or a param name.
            (any::<bool>(), "[a-z0-9_-]{1,8}")
        }

        proptest! {
            #[test]
            fn routing_never_panics(route in ".{0,30}", path in ".{0,40}") {
                if let Ok(r) = Router::build("/", &[trigger("c", &route)]) {
                    let _ = r.route(&path);
                }
            }

            #[test]
            fn a_route_matches_a_path_built_from_it(
                segments in proptest::collection::vec(segment(), 0..6),
                values in proptest::collection::vec("[a-zA-Z0-9._~-]{1,8}", 6),
                tail in proptest::collection::vec("[a-z0-9]{1,6}", 0..3),
                wildcard in any::<bool>(),
            ) {
                let mut route = String::new();
                let mut path = String::new();
                for (index, ((is_param, text), value)) in segments.iter().zip(&values).enumerate() {
                    if *is_param {
                        route.push_str(&format!("/:p{index}{text}"));
                        path.push('/');
                        path.push_str(value);
                    } else {
                        route.push('/');
                        route.push_str(text);
                        path.push('/');
                        path.push_str(text);
                    }
                }
                if wildcard {
                    route.push_str("/...");
                    for part in &tail {
                        path.push('/');
                        path.push_str(part);
                    }
                }
                let route = if route.is_empty() { "/".to_owned() } else { route };
                let r = Router::build("/", &[trigger("c", &route)]).unwrap();
                let m = r.route(&path);
                prop_assert!(m.is_some(), "{route} should match {path}");
                let m = m.unwrap();
                prop_assert_eq!(m.raw_route, route);
                let param_count = segments.iter().filter(|(is_param, _)| *is_param).count();
                prop_assert_eq!(m.params.len(), param_count);
                if wildcard {
                    let expected: String = tail.iter().map(|part| format!("/{part}")).collect();
                    prop_assert_eq!(m.path_info, expected);
                }
            }
        }
    }
}
