//! The compiled routing table: which route a path belongs to, and what each route
//! requires of a request's method.
//!
//! Policy: a prefix matches on whole path segments, and the longest matching prefix
//! wins. Matching is on the [`NormalisedPath`] percent-decoded once, which is how the
//! upstream frameworks read it, so `/api/%61dmin` belongs to `/api/admin`; paths that
//! cannot be decoded one way only never get here (`path.rs`). A path that some
//! upstream could still read as a *protected* route other than the one chosen here is
//! refused: read ignoring case (IIS, ASP.NET), with `;` parameters cut (servlet
//! containers), with trailing dots dropped (Windows), with full-width forms as ASCII,
//! cut at a decoded `?` or `#`, or decoded twice (`path.rs`, `loosely`). `;` and `%25`
//! are accepted on public routes only (README.md, "The gateway"). The table is small
//! (tens of routes), so lookup is a scan of prefixes sorted longest first. Each route
//! carries the client it forwards through (`upstream.rs`): routes naming the same
//! `tls_ca_file` share one, the others share the system-roots client.

use crate::config::{ConfigError, GatewayConfig, RouteConfig, seconds};
use crate::path::{NormalisedPath, PathError};
use crate::upstream::Upstream;
use hyper::Method;
use hyper::http::uri::{Authority, Scheme};
use latchkey_core::Permission;
use latchkey_verify::Scopes;
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
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
    /// `http` or `https`: how the upstream is spoken to.
    pub(crate) scheme: Scheme,
    /// `host:port` of the upstream.
    pub(crate) upstream: Authority,
    /// The client (and so the connection pool and trusted CAs) requests go through.
    pub(crate) client: Upstream,
    pub(crate) access: Access,
    pub(crate) timeout: Duration,
    pub(crate) strip_authorization: bool,
}

impl Route {
    /// Whether a token is needed.
    pub(crate) fn is_protected(&self) -> bool {
        matches!(self.access, Access::Token(_))
    }
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
    /// Checks and compiles the routes of `config`, reading every route's `tls_ca_file`;
    /// routes without one go through `system`.
    pub(crate) fn compile(config: &GatewayConfig, system: &Upstream) -> Result<Self, ConfigError> {
        let default_timeout = seconds("upstream_timeout_seconds", config.upstream_timeout_seconds)?;
        let mut clients = Clients {
            system,
            by_ca_file: HashMap::new(),
        };
        let mut seen = HashSet::new();
        let mut routes: Vec<Arc<Route>> = Vec::with_capacity(config.routes.len());
        for route in &config.routes {
            let compiled = compile_route(route, default_timeout, &mut clients)?;
            if !seen.insert(compiled.prefix.clone()) {
                return Err(ConfigError::DuplicatePrefix {
                    prefix: compiled.prefix.to_string(),
                });
            }
            // Two prefixes equal but for case would make every path under them readable
            // as either route, so all of them would be refused.
            if let Some(other) = routes
                .iter()
                .find(|r| r.prefix.eq_ignore_ascii_case(&compiled.prefix))
            {
                return Err(ConfigError::BadPrefix {
                    prefix: compiled.prefix.to_string(),
                    reason: format!("differs from route `{}` only in case", other.prefix),
                });
            }
            routes.push(Arc::new(compiled));
        }
        routes.sort_by_key(|r| std::cmp::Reverse(r.prefix.len()));
        Ok(Self { routes })
    }

    /// The route of `path` (`None`: no route), or why it cannot be routed safely.
    pub(crate) fn route(&self, path: &NormalisedPath) -> Result<Option<&Arc<Route>>, PathError> {
        let chosen = self.find(path.decoded());
        if path.has_parameters_or_escaped_percent() && chosen.is_some_and(|r| r.is_protected()) {
            return Err(PathError::PublicOnly);
        }
        for (i, reading) in path.readings().enumerate() {
            // A loose reading that is the path itself, as a plain path's is, would
            // only be judged a second time the same way.
            if i > 0 && reading == path.decoded() {
                continue;
            }
            let others = [self.find(&reading), self.find_ignoring_case(&reading)];
            for other in others.into_iter().flatten() {
                let same = chosen.is_some_and(|c| Arc::ptr_eq(c, other));
                if other.is_protected() && !same {
                    return Err(PathError::ReadsAsAnotherRoute);
                }
            }
        }
        Ok(chosen)
    }

    /// The route with the longest prefix matching `path`, a decoded [`NormalisedPath`];
    /// requests go through [`RouteTable::route`], which also judges other readings.
    pub(crate) fn find(&self, path: &str) -> Option<&Arc<Route>> {
        self.routes.iter().find(|r| prefix_matches(&r.prefix, path))
    }

    /// The route with the longest prefix matching `path` when case is ignored.
    fn find_ignoring_case(&self, path: &str) -> Option<&Arc<Route>> {
        self.routes
            .iter()
            .find(|r| prefix_matches_ignoring_case(&r.prefix, path))
    }

    /// How many routes there are.
    pub(crate) fn len(&self) -> usize {
        self.routes.len()
    }
}

/// The clients of one table being compiled.
struct Clients<'a> {
    /// For routes without `tls_ca_file`.
    system: &'a Upstream,
    /// One per CA file named, shared by the routes naming it.
    by_ca_file: HashMap<PathBuf, Upstream>,
}

impl Clients<'_> {
    /// The client of the route at `prefix`, whose upstream is spoken to with `scheme`.
    fn for_route(
        &mut self,
        prefix: &str,
        scheme: &Scheme,
        ca_file: Option<&Path>,
    ) -> Result<Upstream, ConfigError> {
        let Some(ca_file) = ca_file else {
            return Ok(self.system.clone());
        };
        let bad = |reason: String| ConfigError::BadRouteCaFile {
            prefix: prefix.to_owned(),
            file: ca_file.display().to_string(),
            reason,
        };
        if *scheme != Scheme::HTTPS {
            return Err(bad(
                "applies only to an https:// upstream, and this one is http://".to_owned(),
            ));
        }
        if let Some(client) = self.by_ca_file.get(ca_file) {
            return Ok(client.clone());
        }
        let client = Upstream::new(Some(ca_file)).map_err(bad)?;
        self.by_ca_file.insert(ca_file.to_owned(), client.clone());
        Ok(client)
    }
}

fn compile_route(
    route: &RouteConfig,
    default_timeout: Duration,
    clients: &mut Clients<'_>,
) -> Result<Route, ConfigError> {
    let prefix = normalise_prefix(&route.prefix)?;
    let (scheme, upstream) = parse_upstream(&prefix, &route.upstream)?;
    let client = clients.for_route(&prefix, &scheme, route.tls_ca_file.as_deref())?;
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
        scheme,
        upstream,
        client,
        access,
        timeout,
        strip_authorization: route.strip_authorization,
    })
}

impl GatewayConfig {
    /// Checks every value: the server URL, the credential, the timeouts, the TLS
    /// settings and every route, reading each route's `tls_ca_file`.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.validate_settings()?;
        RouteTable::compile(self, &default_upstream(self)?).map(drop)
    }
}

/// The client of routes without `tls_ca_file`: the system's trusted roots plus the
/// top-level `tls_ca_file` (docs/DEPLOYMENT.md, "Upstreams over https").
pub(crate) fn default_upstream(config: &GatewayConfig) -> Result<Upstream, ConfigError> {
    Upstream::new(config.tls_ca_file.as_deref()).map_err(|reason| ConfigError::BadValue {
        field: "tls_ca_file".to_owned(),
        reason: format!("cannot be used for https upstreams: {reason}"),
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
    let plain = |c: char| c.is_ascii_graphic() && !matches!(c, '?' | '#' | '%' | '\\' | ';');
    if !prefix.chars().all(plain) {
        return Err(bad(
            "must be plain path characters (no spaces, ?, #, %, ; or \\)",
        ));
    }
    let trimmed = if prefix.len() > 1 {
        prefix.strip_suffix('/').unwrap_or(prefix)
    } else {
        prefix
    };
    if NormalisedPath::parse(trimmed.as_bytes()).is_err() {
        return Err(bad("must not contain empty, `.` or `..` segments"));
    }
    Ok(trimmed.to_owned())
}

/// Checks an upstream URL: `http://host[:port]` or `https://host[:port]`, nothing else.
fn parse_upstream(prefix: &str, url: &str) -> Result<(Scheme, Authority), ConfigError> {
    let bad = |reason: &str| ConfigError::BadUpstream {
        prefix: prefix.to_owned(),
        url: url.to_owned(),
        reason: reason.to_owned(),
    };
    let uri: hyper::Uri = url.parse().map_err(|_| bad("is not a URL"))?;
    let scheme = match uri.scheme_str() {
        Some("http") => Scheme::HTTP,
        Some("https") => Scheme::HTTPS,
        _ => return Err(bad("must start with http:// or https://")),
    };
    let authority = uri.authority().ok_or_else(|| bad("must name a host"))?;
    if authority.host().is_empty() || authority.as_str().contains('@') {
        return Err(bad("must name a host, without user information"));
    }
    if !matches!(uri.path(), "" | "/") || uri.query().is_some() || url.contains('#') {
        return Err(bad(
            "must be http(s)://host[:port] without a path: the request path is forwarded unchanged",
        ));
    }
    Ok((scheme, authority.clone()))
}

/// True when `prefix` is `path` or a whole-segment prefix of it.
fn prefix_matches(prefix: &str, path: &str) -> bool {
    if prefix == "/" {
        return path.starts_with('/');
    }
    path.strip_prefix(prefix)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// [`prefix_matches`] comparing characters as case-insensitive frameworks do, one
/// character at a time by its simple case mappings: `/api/\u{212A}eys` (a Kelvin sign)
/// is `/api/keys` to Java's `equalsIgnoreCase`. Prefixes are ASCII.
fn prefix_matches_ignoring_case(prefix: &str, path: &str) -> bool {
    let mut rest = path.chars();
    for expected in prefix.chars() {
        let Some(found) = rest.next() else {
            return false;
        };
        if found.is_ascii() {
            // An ASCII character's case mappings are ASCII's.
            if !found.eq_ignore_ascii_case(&expected) {
                return false;
            }
            continue;
        }
        let same = found == expected
            || found.to_lowercase().next() == Some(expected.to_ascii_lowercase())
            || found.to_uppercase().next() == Some(expected.to_ascii_uppercase());
        if !same {
            return false;
        }
    }
    let rest = rest.as_str();
    prefix == "/" || rest.is_empty() || rest.starts_with('/')
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn config(routes: &str) -> GatewayConfig {
        GatewayConfig::from_toml(&format!(
            "listen = \"127.0.0.1:0\"\nserver = \"http://127.0.0.1:1\"\ncredential = \"c\"\n{routes}"
        ))
        .unwrap()
    }

    fn table(routes: &str) -> Result<RouteTable, ConfigError> {
        RouteTable::compile(&config(routes), &Upstream::new(None).unwrap())
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
    fn upstreams_must_be_http_or_https_authorities() {
        for url in [
            "ftp://127.0.0.1:9",
            "127.0.0.1:9",
            "http://127.0.0.1:9/base",
            "https://127.0.0.1:9/base",
            "http://127.0.0.1:9?x=1",
            "https://user@127.0.0.1:9",
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
        for (url, scheme, authority) in [
            ("http://127.0.0.1:9", Scheme::HTTP, "127.0.0.1:9"),
            ("https://127.0.0.1:9", Scheme::HTTPS, "127.0.0.1:9"),
            ("https://api.internal/", Scheme::HTTPS, "api.internal"),
        ] {
            let t = table(&route("/a").replace("http://127.0.0.1:9", url)).unwrap();
            let found = t.find("/a").unwrap();
            assert_eq!(found.scheme, scheme, "{url}");
            assert_eq!(found.upstream.as_str(), authority, "{url}");
        }
    }

    #[test]
    fn a_ca_file_on_a_plain_http_upstream_is_refused_naming_the_route_and_file() {
        let text = format!("{}tls_ca_file = \"/etc/ca.pem\"\n", route("/a"));
        let error = table(&text).unwrap_err();
        assert!(
            matches!(&error, ConfigError::BadRouteCaFile { prefix, file, .. }
                if prefix == "/a" && file == "/etc/ca.pem"),
            "{error}"
        );
        assert_eq!(
            error.to_string(),
            "route `/a`: tls_ca_file `/etc/ca.pem`: applies only to an https:// upstream, and this one is http://"
        );
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

    /// The review's routes: a reader's `/api`, an admin's `/api/admin`, a public route.
    fn review_table() -> RouteTable {
        table(&format!(
            "{}scopes = {{ GET = [\"reports:read\"] }}\n{}scopes = {{ GET = [\"billing:admin\"] }}\n{}public = true\n",
            route("/api"),
            route("/api/admin"),
            route("/public"),
        ))
        .unwrap()
    }

    fn routed(t: &RouteTable, raw: &str) -> Result<Option<String>, PathError> {
        let path = NormalisedPath::parse(raw.as_bytes())?;
        t.route(&path).map(|r| r.map(|r| r.prefix.to_string()))
    }

    #[test]
    fn an_encoded_unreserved_character_routes_as_its_decoded_form() {
        let t = review_table();
        for raw in [
            "/api/%61dmin/users",
            "/api/%61%64%6D%69%6E",
            "/%61pi/admin",
            "/api/admi%6e",
        ] {
            assert_eq!(routed(&t, raw), Ok(Some("/api/admin".to_owned())), "{raw}");
        }
        assert_eq!(routed(&t, "/api/reports"), Ok(Some("/api".to_owned())));
        assert_eq!(routed(&t, "/api/%7Euser"), Ok(Some("/api".to_owned())));
    }

    #[test]
    fn a_path_readable_as_another_protected_route_is_refused() {
        let t = review_table();
        let cases = [
            ("/API/admin", PathError::ReadsAsAnotherRoute),
            ("/api/ADMIN", PathError::ReadsAsAnotherRoute),
            ("/Api/Admin/users", PathError::ReadsAsAnotherRoute),
            ("/api/%41dmin", PathError::ReadsAsAnotherRoute),
            ("/api/admin.", PathError::ReadsAsAnotherRoute),
            ("/api/admin%20/users", PathError::ReadsAsAnotherRoute),
            ("/api%EF%BC%8Fadmin", PathError::ReadsAsAnotherRoute),
            (
                "/api/x%EF%BC%BC..%EF%BC%BCadmin",
                PathError::ReadsAsAnotherRoute,
            ),
            // Found by the differential test while the readings were switched off.
            ("/api/admin%2e%2e", PathError::ReadsAsAnotherRoute),
            ("/api/admin..", PathError::ReadsAsAnotherRoute),
            ("/api/admin%3F", PathError::ReadsAsAnotherRoute),
            ("/api/admin%23frag", PathError::ReadsAsAnotherRoute),
            ("/api/admin+", PathError::ReadsAsAnotherRoute),
            ("/api/admin;jsessionid=1", PathError::PublicOnly),
            ("/api;x=1/admin", PathError::ReadsAsAnotherRoute),
            ("/api%3Bx=1/admin", PathError::ReadsAsAnotherRoute),
            ("/api/%2561dmin", PathError::PublicOnly),
            ("/api/reports;x=1", PathError::PublicOnly),
            ("/api/100%25", PathError::PublicOnly),
            (
                "/public/%252e%252e/api/admin",
                PathError::ReadsAsAnotherRoute,
            ),
            ("/public/..%252Fapi", PathError::ReadsAsAnotherRoute),
            ("/public;x/../api", PathError::DotSegment),
            ("/nowhere;/../api", PathError::DotSegment),
            ("/publ%69c/..%252Fapi", PathError::ReadsAsAnotherRoute),
        ];
        for (raw, error) in cases {
            assert_eq!(routed(&t, raw), Err(error), "{raw}");
        }
    }

    #[test]
    fn characters_whose_case_mapping_is_ascii_count_as_that_letter() {
        let t = table(&format!(
            "{}{}public = true\n",
            route("/keys/list"),
            route("/keys")
        ))
        .unwrap();
        // U+212A KELVIN SIGN lower-cases to `k`; U+017F LONG S upper-cases to `S`.
        for raw in ["/keys/li\u{17F}t", "/\u{212A}eys/list", "/keys/li%C5%BFt"] {
            assert_eq!(
                routed(&t, raw),
                Err(PathError::ReadsAsAnotherRoute),
                "{raw}"
            );
        }
        assert_eq!(routed(&t, "/keys/lists"), Ok(Some("/keys".to_owned())));
    }

    #[test]
    fn case_parameters_and_escaped_percent_are_fine_where_no_protected_route_is_reached() {
        let t = review_table();
        let public = Ok(Some("/public".to_owned()));
        assert_eq!(routed(&t, "/public/x;jsessionid=1"), public);
        assert_eq!(routed(&t, "/public/100%25"), public);
        assert_eq!(routed(&t, "/public/ADMIN"), public);
        assert_eq!(routed(&t, "/public/file."), public);
        assert_eq!(routed(&t, "/api/Reports"), Ok(Some("/api".to_owned())));
        assert_eq!(
            routed(&t, "/api/administrator"),
            Ok(Some("/api".to_owned()))
        );
        assert_eq!(routed(&t, "/PUBLIC/x"), Ok(None));
        assert_eq!(routed(&t, "/nowhere;x=1"), Ok(None));
    }

    #[test]
    fn prefixes_equal_but_for_case_or_holding_parameters_are_refused() {
        let error = table(&[route("/api"), route("/API")].concat()).unwrap_err();
        assert!(matches!(error, ConfigError::BadPrefix { .. }), "{error}");
        let error = table(&route("/api;v=1")).unwrap_err();
        assert!(matches!(error, ConfigError::BadPrefix { .. }), "{error}");
    }

    /// Decodes every escape of `text` once; `None` unless the result is UTF-8.
    fn fully_decoded(text: &str) -> Option<String> {
        let bytes = text.as_bytes();
        let mut out = Vec::new();
        let mut i = 0;
        while let Some(&byte) = bytes.get(i) {
            if byte == b'%' {
                let hex = bytes.get(i + 1..i + 3)?;
                if !hex.iter().all(u8::is_ascii_hexdigit) {
                    return None;
                }
                out.push(u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?);
                i += 3;
            } else {
                out.push(byte);
                i += 1;
            }
        }
        String::from_utf8(out).ok()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1000))]

        #[test]
        fn the_route_of_the_normalised_path_is_the_route_of_the_decoded_path(
            raw in crate::path::tests::path_bytes()
        ) {
            let t = review_table();
            let Ok(path) = NormalisedPath::parse(&raw) else {
                return Ok(());
            };
            let Ok(chosen) = t.route(&path) else {
                return Ok(());
            };
            let decoded = fully_decoded(path.as_str()).expect("a normalised path decodes");
            let expected = t.find(&decoded);
            prop_assert_eq!(chosen.map(|r| &r.prefix), expected.map(|r| &r.prefix));
            // No case-insensitive reader lands on another protected route either.
            if let Some(other) = t.find_ignoring_case(&decoded) {
                prop_assert!(!other.is_protected() || chosen.is_some_and(|c| Arc::ptr_eq(c, other)));
            }
        }
    }
}
