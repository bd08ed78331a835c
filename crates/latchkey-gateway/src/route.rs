//! The compiled routing table: which route a path belongs to, and what each route
//! requires of a request's method.
//!
//! Policy: a prefix matches on whole path segments, and the longest matching prefix
//! wins. Matching is byte-exact on the raw (still percent-encoded) path, so a request
//! path that an upstream could read differently from the gateway is refused before
//! routing: empty segments (`//`), dot segments (`.`, `..`, also percent-encoded) and
//! encoded slashes or backslashes. Without that, `/public/../admin` would be routed to
//! a public prefix and then normalised by the upstream into a protected one. The table
//! is small (tens of routes), so lookup is a scan of prefixes sorted longest first.

use crate::config::{ConfigError, GatewayConfig, RouteConfig, seconds};
use hyper::Method;
use hyper::http::uri::Authority;
use latchkey_core::Permission;
use latchkey_verify::Scopes;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

/// The methods a `scopes` table may name.
const METHODS: [Method; 7] = [
    Method::GET,
    Method::HEAD,
    Method::POST,
    Method::PUT,
    Method::PATCH,
    Method::DELETE,
    Method::OPTIONS,
];

/// A route, ready to serve.
#[derive(Debug)]
pub(crate) struct Route {
    /// The normalised prefix; also the `route` of usage entries.
    pub(crate) prefix: Arc<str>,
    /// `host:port` of the upstream.
    pub(crate) upstream: Authority,
    pub(crate) access: Access,
    pub(crate) timeout: Duration,
    pub(crate) strip_authorization: bool,
}

/// Who may use a route.
#[derive(Debug)]
pub(crate) enum Access {
    /// Anyone; no token is looked at.
    Public,
    /// A valid token meeting the method's scopes.
    Token(MethodScopes),
}

/// Scope requirements by method.
#[derive(Debug)]
pub(crate) struct MethodScopes {
    methods: Vec<(Method, Scopes)>,
    any: Option<Scopes>,
}

impl MethodScopes {
    /// What `method` needs: its own entry, `GET`'s for `HEAD`, else `"*"`'s. `None`:
    /// the method is not allowed on this route.
    pub(crate) fn for_method(&self, method: &Method) -> Option<&Scopes> {
        let exact = |m: &Method| {
            self.methods
                .iter()
                .find(|(listed, _)| listed == m)
                .map(|(_, s)| s)
        };
        exact(method)
            .or_else(|| {
                (*method == Method::HEAD)
                    .then(|| exact(&Method::GET))
                    .flatten()
            })
            .or(self.any.as_ref())
    }

    /// The `Allow` header for a 405: the methods listed.
    pub(crate) fn allowed(&self) -> String {
        let mut names: Vec<&str> = self.methods.iter().map(|(m, _)| m.as_str()).collect();
        if names.contains(&"GET") && !names.contains(&"HEAD") {
            names.push("HEAD");
        }
        names.join(", ")
    }
}

/// Every route, longest prefix first.
#[derive(Debug)]
pub(crate) struct RouteTable {
    routes: Vec<Arc<Route>>,
}

impl RouteTable {
    /// Checks and compiles the routes of `config`.
    pub(crate) fn compile(config: &GatewayConfig) -> Result<Self, ConfigError> {
        let default_timeout = seconds("upstream_timeout_seconds", config.upstream_timeout_seconds)?;
        let mut seen = HashSet::new();
        let mut routes = Vec::with_capacity(config.routes.len());
        for route in &config.routes {
            let compiled = compile_route(route, default_timeout)?;
            if !seen.insert(compiled.prefix.clone()) {
                return Err(ConfigError::DuplicatePrefix {
                    prefix: compiled.prefix.to_string(),
                });
            }
            routes.push(Arc::new(compiled));
        }
        routes.sort_by_key(|r| std::cmp::Reverse(r.prefix.len()));
        Ok(Self { routes })
    }

    /// The route with the longest prefix matching `path`.
    pub(crate) fn find(&self, path: &str) -> Option<&Arc<Route>> {
        self.routes.iter().find(|r| prefix_matches(&r.prefix, path))
    }

    /// How many routes there are.
    pub(crate) fn len(&self) -> usize {
        self.routes.len()
    }
}

fn compile_route(route: &RouteConfig, default_timeout: Duration) -> Result<Route, ConfigError> {
    let prefix = normalise_prefix(&route.prefix)?;
    let upstream = parse_upstream(&prefix, &route.upstream)?;
    let access = match (&route.scopes, route.public) {
        (Some(_), true) => return Err(ConfigError::PublicWithScopes { prefix }),
        (None, true) => Access::Public,
        (None, false) => Access::Token(MethodScopes {
            methods: Vec::new(),
            any: Some(Scopes::none()),
        }),
        (Some(table), false) => {
            let mut scopes = MethodScopes {
                methods: Vec::new(),
                any: None,
            };
            for (key, names) in table {
                for name in names {
                    Permission::parse(name).map_err(|e| ConfigError::BadScope {
                        prefix: prefix.clone(),
                        scope: name.clone(),
                        reason: e.to_string(),
                    })?;
                }
                let needed = Scopes::all_of(names);
                if key == "*" {
                    scopes.any = Some(needed);
                } else {
                    let method = METHODS.iter().find(|m| m.as_str() == key).ok_or_else(|| {
                        ConfigError::UnknownMethod {
                            prefix: prefix.clone(),
                            method: key.clone(),
                        }
                    })?;
                    scopes.methods.push((method.clone(), needed));
                }
            }
            Access::Token(scopes)
        }
    };
    let timeout = match route.timeout_seconds {
        Some(value) => seconds(&format!("route `{prefix}`: timeout_seconds"), value)?,
        None => default_timeout,
    };
    Ok(Route {
        prefix: prefix.into(),
        upstream,
        access,
        timeout,
        strip_authorization: route.strip_authorization,
    })
}

/// Checks a configured prefix and drops a trailing `/` (except for `/` itself).
fn normalise_prefix(prefix: &str) -> Result<String, ConfigError> {
    let bad = |reason: &str| ConfigError::BadPrefix {
        prefix: prefix.to_owned(),
        reason: reason.to_owned(),
    };
    if !prefix.starts_with('/') {
        return Err(bad("must start with /"));
    }
    let plain = |c: char| c.is_ascii_graphic() && !matches!(c, '?' | '#' | '%' | '\\');
    if !prefix.chars().all(plain) {
        return Err(bad(
            "must be plain path characters (no spaces, ?, #, % or \\)",
        ));
    }
    let trimmed = if prefix.len() > 1 {
        prefix.strip_suffix('/').unwrap_or(prefix)
    } else {
        prefix
    };
    if trimmed.len() > 1 && !path_is_unambiguous(trimmed) {
        return Err(bad("must not contain empty, `.` or `..` segments"));
    }
    Ok(trimmed.to_owned())
}

/// Checks an upstream URL: `http://host[:port]`, nothing else.
fn parse_upstream(prefix: &str, url: &str) -> Result<Authority, ConfigError> {
    let bad = |reason: &str| ConfigError::BadUpstream {
        prefix: prefix.to_owned(),
        url: url.to_owned(),
        reason: reason.to_owned(),
    };
    let uri: hyper::Uri = url.parse().map_err(|_| bad("is not a URL"))?;
    match uri.scheme_str() {
        Some("http") => {}
        Some("https") => return Err(bad("https upstreams are not supported yet; use http://")),
        _ => return Err(bad("must start with http://")),
    }
    let authority = uri.authority().ok_or_else(|| bad("must name a host"))?;
    if authority.host().is_empty() || authority.as_str().contains('@') {
        return Err(bad("must name a host, without user information"));
    }
    if !matches!(uri.path(), "" | "/") || uri.query().is_some() || url.contains('#') {
        return Err(bad(
            "must be http://host[:port] without a path: the request path is forwarded unchanged",
        ));
    }
    Ok(authority.clone())
}

/// True when `prefix` is `path` or a whole-segment prefix of it.
fn prefix_matches(prefix: &str, path: &str) -> bool {
    if prefix == "/" {
        return path.starts_with('/');
    }
    path.strip_prefix(prefix)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// True when every reader of `path` sees the same segments: it is absolute and has no
/// empty segment (but a trailing `/`), no dot segment and no encoded `/` or `\`.
pub(crate) fn path_is_unambiguous(path: &str) -> bool {
    let Some(rest) = path.strip_prefix('/') else {
        return false;
    };
    if path.contains('\\') {
        return false;
    }
    let segments: Vec<&str> = rest.split('/').collect();
    let last = segments.len().saturating_sub(1);
    segments.iter().enumerate().all(|(i, segment)| {
        if segment.is_empty() {
            return i == last;
        }
        let lower = segment.to_ascii_lowercase();
        let dots = lower.replace("%2e", ".");
        dots != "." && dots != ".." && !lower.contains("%2f") && !lower.contains("%5c")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(routes: &str) -> GatewayConfig {
        GatewayConfig::from_toml(&format!(
            "listen = \"127.0.0.1:0\"\nserver = \"http://127.0.0.1:1\"\ncredential = \"c\"\n{routes}"
        ))
        .unwrap()
    }

    fn table(routes: &str) -> Result<RouteTable, ConfigError> {
        RouteTable::compile(&config(routes))
    }

    fn route(prefix: &str) -> String {
        format!("[[route]]\nprefix = \"{prefix}\"\nupstream = \"http://127.0.0.1:9\"\n")
    }

    #[test]
    fn the_longest_whole_segment_prefix_wins() {
        let t = table(&[route("/"), route("/api"), route("/api/admin/")].concat()).unwrap();
        let found = |path: &str| t.find(path).map(|r| r.prefix.to_string());
        assert_eq!(found("/api/admin/users").as_deref(), Some("/api/admin"));
        assert_eq!(found("/api/admin").as_deref(), Some("/api/admin"));
        assert_eq!(found("/api/administrator").as_deref(), Some("/api"));
        assert_eq!(found("/api").as_deref(), Some("/api"));
        assert_eq!(found("/apix").as_deref(), Some("/"));
        let without_root = table(&route("/api")).unwrap();
        assert!(without_root.find("/other").is_none());
        assert!(without_root.find("/apix").is_none());
    }

    #[test]
    fn a_prefix_with_and_without_a_trailing_slash_is_a_duplicate() {
        let error = table(&[route("/api"), route("/api/")].concat()).unwrap_err();
        assert!(
            matches!(&error, ConfigError::DuplicatePrefix { prefix } if prefix == "/api"),
            "{error}"
        );
    }

    #[test]
    fn bad_prefixes_are_refused() {
        for prefix in ["api", "/a b", "/a?b", "/a/../b", "/a//b", "/a%2fb"] {
            let error = table(&route(prefix)).unwrap_err();
            assert!(
                matches!(error, ConfigError::BadPrefix { .. }),
                "{prefix}: {error}"
            );
        }
    }

    #[test]
    fn upstreams_must_be_plain_http_authorities() {
        for url in [
            "https://127.0.0.1:9",
            "127.0.0.1:9",
            "http://127.0.0.1:9/base",
            "http://127.0.0.1:9?x=1",
            "http://user@127.0.0.1:9",
            "not a url",
        ] {
            let text = format!("[[route]]\nprefix = \"/a\"\nupstream = \"{url}\"\n");
            let error = table(&text).unwrap_err();
            assert!(
                matches!(error, ConfigError::BadUpstream { .. }),
                "{url}: {error}"
            );
        }
        assert!(table(&route("/a").replace(":9\"", ":9/\"")).is_ok());
    }

    #[test]
    fn method_keys_must_be_upper_case_methods_or_a_star() {
        let text = |key: &str| format!("{}scopes = {{ {key} = [\"a:r\"] }}\n", route("/a"));
        for key in ["get", "FETCH", "\"**\""] {
            let error = table(&text(key)).unwrap_err();
            assert!(
                matches!(error, ConfigError::UnknownMethod { .. }),
                "{key}: {error}"
            );
        }
        assert!(table(&text("\"*\"")).is_ok());
        assert!(table(&text("DELETE")).is_ok());
    }

    #[test]
    fn scopes_must_be_permission_names_and_public_routes_have_none() {
        let bad = format!("{}scopes = {{ GET = [\"Reports Read\"] }}\n", route("/a"));
        assert!(matches!(
            table(&bad).unwrap_err(),
            ConfigError::BadScope { .. }
        ));
        let public = format!("{}public = true\nscopes = {{ GET = [] }}\n", route("/a"));
        assert!(matches!(
            table(&public).unwrap_err(),
            ConfigError::PublicWithScopes { .. }
        ));
    }

    #[test]
    fn head_falls_back_to_get_then_star_and_unlisted_methods_have_no_entry() {
        let text = format!(
            "{}scopes = {{ GET = [\"a:r\"], POST = [\"a:w\"] }}\n",
            route("/a")
        );
        let t = table(&text).unwrap();
        let Access::Token(scopes) = &t.find("/a").unwrap().access else {
            panic!("not a token route");
        };
        assert_eq!(scopes.for_method(&Method::HEAD).unwrap().to_string(), "a:r");
        assert_eq!(scopes.for_method(&Method::POST).unwrap().to_string(), "a:w");
        assert!(scopes.for_method(&Method::DELETE).is_none());
        assert_eq!(scopes.allowed(), "GET, POST, HEAD");
    }

    #[test]
    fn ambiguous_request_paths_are_refused() {
        for path in [
            "/public/../admin",
            "/public/%2e%2e/admin",
            "/public/.%2E/admin",
            "/public/./x",
            "//admin",
            "/a//b",
            "/a%2Fb",
            "/a%5cb",
            "/a\\b",
            "relative",
            "",
        ] {
            assert!(!path_is_unambiguous(path), "{path}");
        }
        for path in ["/", "/a", "/a/", "/a/b.c", "/a/..b", "/a/%41"] {
            assert!(path_is_unambiguous(path), "{path}");
        }
    }
}
