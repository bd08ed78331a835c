//! The hardened edge: the path the gateway routes on is the path the upstream reads,
//! and identity headers cannot be smuggled in under another spelling. The routes are
//! those of the outside review: a reader's `/api`, an admin's `/api/admin` and a
//! public `/public`, each on its own upstream so an answer names the route it took.

use crate::support::{Answer, FakeServer, FakeUpstream, TestGateway, percent_decode};
use hyper::{Method, StatusCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

struct Edge {
    gw: TestGateway,
    api: FakeUpstream,
    admin: FakeUpstream,
}

impl Edge {
    async fn start() -> Self {
        let api = FakeUpstream::start("api").await;
        let admin = FakeUpstream::start("admin").await;
        let public = FakeUpstream::start("public").await;
        let routes = format!(
            r#"
[[route]]
prefix = "/api"
upstream = "{}"
scopes = {{ "*" = ["reports:read"] }}

[[route]]
prefix = "/api/admin"
upstream = "{}"
scopes = {{ "*" = ["billing:admin"] }}

[[route]]
prefix = "/public"
upstream = "{}"
public = true
"#,
            api.url, admin.url, public.url,
        );
        let gw = TestGateway::start_with(FakeServer::start().await, public, &routes).await;
        Self { gw, api, admin }
    }

    /// Requests that reached any upstream.
    fn echoed(&self) -> usize {
        self.api.echoed() + self.admin.echoed() + self.gw.upstream.echoed()
    }

    async fn get(&self, path: &str, bearer: &str, headers: &[(&str, &str)]) -> Answer {
        let mut all = vec![("authorization", bearer)];
        all.extend_from_slice(headers);
        self.gw
            .client
            .call(Method::GET, &self.gw.at(path), &all, "")
            .await
    }
}

/// Asserts the gateway's own 400 for an ambiguous path.
fn assert_refused(answer: &Answer, path: &str) {
    assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{path}");
    assert_eq!(answer.header("content-type"), Some("application/json"));
    assert_eq!(answer.header("cache-control"), Some("no-store"));
    let body = answer.json();
    assert_eq!(body["error"], "invalid_request", "{path}");
    let description = body["error_description"].as_str().unwrap();
    assert!(description.contains("path"), "{path}: {description}");
}

#[tokio::test]
async fn an_encoded_letter_routes_to_the_admin_route_and_a_reader_is_refused_there() {
    let edge = Edge::start().await;
    let reader = edge.gw.token("reports:read").bearer();
    for path in [
        "/api/%61dmin/users",
        "/api/%61%64%6D%69%6E/users",
        "/api/%61%64%6d%69%6e/users",
        "/api/admi%6E/users",
        "/%61pi/admin/users",
    ] {
        let answer = edge.get(path, &reader, &[]).await;
        assert_eq!(answer.status, StatusCode::FORBIDDEN, "{path}");
        assert_eq!(answer.json()["error"], "insufficient_scope");
    }
    assert_eq!(edge.echoed(), 0);

    // The admin gets through, and the upstream receives the path the gateway judged.
    let admin = edge.gw.token("billing:admin").bearer();
    let answer = edge.get("/api/%61dmin/users?q=%61", &admin, &[]).await;
    assert_eq!(answer.status, StatusCode::OK);
    let echoed = answer.json();
    assert_eq!(echoed["upstream"], "admin");
    assert_eq!(echoed["path"], "/api/admin/users?q=%61");
}

#[tokio::test]
async fn every_path_an_upstream_could_read_another_way_is_a_400_that_reaches_no_upstream() {
    let edge = Edge::start().await;
    // Scopes do not matter: the path is refused before anyone is authenticated.
    let both = edge.gw.token("reports:read billing:admin").bearer();
    let attacks = [
        // `;` path parameters, which servlet containers cut off.
        "/api;x=1/admin/users",
        "/api%3Bx=1/admin",
        "/api/admin;jsessionid=1",
        "/api/admin;jsessionid=1/users",
        "/api/reports;x=1",
        // Encoded and raw separators.
        "/api%2Fadmin/users",
        "/api%2fadmin",
        "/api%5Cadmin",
        "/api%5cadmin",
        "/api\\admin",
        "/public\\..\\api\\admin",
        // Dot segments in every spelling, and their servlet form.
        "/api/./admin",
        "/api/x/../admin",
        "/public/../api/admin",
        "/public/%2e%2e/api/admin",
        "/public/%2E%2e/api/admin",
        "/public/.%2E/api/admin",
        "/public/..;/api/admin",
        "/public/%2e;x/api",
        // Empty segments, which nginx merges.
        "/api//admin",
        "//api/admin",
        "/public//api",
        // Double encoding on a protected route, or reaching one when decoded twice.
        "/api/%2561dmin/users",
        "/api/%252e%252e/admin",
        "/public/%252e%252e/api/admin",
        "/public/..%252Fapi%252Fadmin",
        // Control characters, encoded.
        "/api/%00admin",
        "/api/%0d%0aX-Injected:%201",
        "/api/%09",
        "/api/%7F",
        "/api/%C2%85",
        // Escapes that are not UTF-8, or not escapes.
        "/api/%FF",
        "/api/%C0%AF",
        "/api/%C3",
        "/api/%",
        "/api/%zz",
        "/api/%u0061dmin",
        // Readings of case-insensitive or Windows upstreams.
        "/API/admin/users",
        "/api/ADMIN/users",
        "/Api/Admin",
        "/api/%41dmin",
        "/api/admin./users",
        "/api/admin%20/users",
        "/api%EF%BC%8Fadmin",
    ];
    for path in attacks {
        let answer = edge.get(path, &both, &[]).await;
        assert_refused(&answer, path);
    }
    assert_eq!(edge.echoed(), 0);
    let stats = edge.gw.gateway.stats();
    assert_eq!(stats.bad_request, attacks.len() as u64);
    assert_eq!(stats.forwarded, 0);
}

#[tokio::test]
async fn raw_control_characters_and_bytes_that_are_not_utf8_reach_no_upstream() {
    let edge = Edge::start().await;
    for target in [
        &b"/public/\x01"[..],
        b"/public/a\x7fb",
        b"/public/\xff",
        b"/public/\xc3\x28",
    ] {
        let mut stream = tokio::net::TcpStream::connect(edge.gw.address)
            .await
            .unwrap();
        let mut request = b"GET ".to_vec();
        request.extend_from_slice(target);
        request.extend_from_slice(b" HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n");
        stream.write_all(&request).await.unwrap();
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await.unwrap();
        let response = String::from_utf8_lossy(&response);
        assert!(
            response.starts_with("HTTP/1.1 400"),
            "{target:?}: {response}"
        );
    }
    assert_eq!(edge.echoed(), 0);
}

#[tokio::test]
async fn legitimate_paths_reach_their_route_at_the_normalised_path() {
    let edge = Edge::start().await;
    let reader = edge.gw.token("reports:read").bearer();
    let cases = [
        ("/api/reports", "api", "/api/reports"),
        ("/api/%7Euser", "api", "/api/~user"),
        ("/api/%7euser?x=%7e&y=%2F", "api", "/api/~user?x=%7e&y=%2F"),
        ("/api/Reports", "api", "/api/Reports"),
        ("/api/administrator", "api", "/api/administrator"),
        ("/api/caf%c3%a9", "api", "/api/caf%C3%A9"),
        ("/api/café", "api", "/api/caf%C3%A9"),
        ("/api/a:b@c,d", "api", "/api/a:b@c,d"),
        ("/api/%3a%2c", "api", "/api/%3A%2C"),
        ("/api/{\"a\"}", "api", "/api/%7B%22a%22%7D"),
        ("/api/reports/", "api", "/api/reports/"),
        ("/api/v1.2/x...y", "api", "/api/v1.2/x...y"),
        ("/public/x;jsessionid=1", "public", "/public/x;jsessionid=1"),
        ("/public/100%25", "public", "/public/100%25"),
        ("/public/ADMIN", "public", "/public/ADMIN"),
        ("/public/file.", "public", "/public/file."),
    ];
    for (sent, upstream, received) in cases {
        let answer = edge.get(sent, &reader, &[]).await;
        assert_eq!(answer.status, StatusCode::OK, "{sent}");
        let echoed = answer.json();
        assert_eq!(echoed["upstream"], upstream, "{sent}");
        assert_eq!(echoed["path"], received, "{sent}");
    }
    // A case-only match of a public route is simply no route.
    let answer = edge.get("/PUBLIC/x", &reader, &[]).await;
    assert_eq!(answer.status, StatusCode::NOT_FOUND);
    assert_eq!(answer.json()["error"], "not_found");
}

#[tokio::test]
async fn identity_headers_in_any_spelling_are_stripped_on_protected_and_public_routes() {
    let edge = Edge::start().await;
    let token = edge.gw.token("reports:read");
    let bearer = token.bearer();
    let spoofed = [
        ("X_Latchkey_User", "ceo"),
        ("X-Latchkey_User", "ceo"),
        ("x_latchkey_user", "ceo"),
        ("X-LATCHKEY_TENANT", "ceo"),
        ("x_LATCHKEY-Scopes", "ceo"),
        ("X.Latchkey.Token-Id", "ceo"),
        ("x-latchkey-user", "ceo"),
        ("x-latchkeyuser", "kept"),
        ("x-request-id", "kept"),
    ];
    for (path, authenticated) in [("/api/reports", true), ("/public/x", false)] {
        let answer = edge.get(path, &bearer, &spoofed).await;
        assert_eq!(answer.status, StatusCode::OK, "{path}");
        let echoed = answer.json();
        let headers = echoed["headers"].as_object().unwrap();
        for (name, values) in headers {
            assert!(
                values.as_array().unwrap().iter().all(|v| v != "ceo"),
                "{path}: {name} got through"
            );
            let folded: String = name
                .chars()
                .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
                .collect();
            if folded.starts_with("x-latchkey-") {
                assert!(authenticated, "{path}: {name} on a public route");
                assert!(name.starts_with("x-latchkey-"), "{path}: {name}");
            }
        }
        assert_eq!(
            answer.upstream_saw("x-latchkeyuser"),
            Some(vec!["kept".to_owned()])
        );
        assert_eq!(
            answer.upstream_saw("x-request-id"),
            Some(vec!["kept".to_owned()])
        );
        if authenticated {
            assert_eq!(
                answer.upstream_saw("x-latchkey-tenant"),
                Some(vec!["acme".to_owned()])
            );
            assert_eq!(
                answer.upstream_saw("x-latchkey-token-id"),
                Some(vec![token.id.clone()])
            );
            assert_eq!(answer.upstream_saw("x-latchkey-user"), None);
        }
    }
}

// ---------------------------------------------------------------------------------
// The differential test

/// How many generated paths go through the gateway.
const DIFFERENTIAL_PATHS: usize = 3000;

/// xorshift64*: deterministic, so a failure names a path that fails again.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[(self.next() % items.len() as u64) as usize]
    }
}

/// A path mixing encodings, `;`, dots, case, `%25`, slashes and unicode, always one a
/// client's URI may hold.
fn generate(rng: &mut Rng) -> String {
    const STARTS: [&str; 8] = [
        "/api/",
        "/api/admin/",
        "/api/admin",
        "/public/",
        "/",
        "/API/",
        "/%61pi/",
        "/api",
    ];
    #[rustfmt::skip]
    const PIECES: [&str; 67] = [
        "/", "/", "/", "api", "admin", "public", "users", "API", "Admin", "ADMIN", "Public",
        "%61", "%41", "%64%6d%69%6e", "%2F", "%2f", "%5C", "%5c", "\\", ".", "..", ".",
        "%2e", "%2E", "%2e%2e", ";", ";x=1", ";jsessionid=9", "%3B", "%3b", "%25", "%2561",
        "%252e", "%252F", "%", "%4", "%zz", "%00", "%0a", "%7F", "%C3%A9", "é", "%c3%a9",
        "%FF", "%C0%AF", "%7e", "%7E", "~", "-", "_", "%20", "\"", "{", "|", "+", "@", ":",
        "%3A", "%e2%84%aa", "\u{FF0F}", "%ef%bc%8e", "\u{17F}", "%3F", "%23", "%ef%bc%bc",
        "+", "\u{FF41}",
    ];
    let mut path = rng.pick(&STARTS).to_owned();
    for _ in 0..rng.next() % 6 {
        path.push_str(rng.pick(&PIECES));
    }
    path
}

/// The test's own routing: the longest whole-segment prefix, comparing as `same` says.
fn route_of(path: &str) -> Option<&'static str> {
    [
        ("/api/admin", "admin"),
        ("/api", "api"),
        ("/public", "public"),
    ]
    .into_iter()
    .find(|(prefix, _)| {
        path.strip_prefix(prefix)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
    })
    .map(|(_, name)| name)
}

/// Dot segments resolved, empty segments merged, `\` read as `/`.
fn resolved(path: &str) -> String {
    let mut segments: Vec<&str> = Vec::new();
    let path = path.replace('\\', "/");
    for segment in path.split('/') {
        match segment {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            _ => segments.push(segment),
        }
    }
    format!("/{}", segments.join("/"))
}

/// Each segment cut at its first `;`.
fn without_parameters(path: &str) -> String {
    path.split('/')
        .map(|s| s.split(';').next().unwrap())
        .collect::<Vec<_>>()
        .join("/")
}

fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// How other upstream frameworks read the `received` path: lower-cased (and
/// upper-cased first: `ſ` is `S`), servlet-style (parameters cut before or after
/// decoding), Windows-style (trailing dots, spaces and `+` dropped), IIS-style
/// (full-width forms as ASCII), cut at a decoded `?` or `#`, and decoded twice.
fn other_readings(received: &str) -> Vec<String> {
    let decoded = lossy(&percent_decode(received));
    let ascii: String = decoded
        .chars()
        .map(|c| match u32::from(c) {
            0xFF01..=0xFF5E => char::from_u32(u32::from(c) - 0xFEE0).unwrap(),
            _ => c,
        })
        .collect();
    let mut readings = vec![
        resolved(&ascii),
        decoded.split(['?', '#']).next().unwrap().to_owned(),
        decoded.to_lowercase(),
        decoded.to_uppercase().to_lowercase(),
        resolved(&without_parameters(&decoded)),
        resolved(&lossy(&percent_decode(&without_parameters(received)))),
        resolved(&lossy(&percent_decode(&decoded))),
        decoded
            .split('/')
            .map(|s| s.trim_end_matches(['.', ' ', '+']))
            .collect::<Vec<_>>()
            .join("/"),
    ];
    let more: Vec<String> = readings.iter().map(|r| r.to_lowercase()).collect();
    readings.extend(more);
    readings
}

#[tokio::test]
async fn the_upstream_reads_every_forwarded_path_as_the_route_the_gateway_chose() {
    let edge = Edge::start().await;
    let bearer = edge.gw.token("reports:read billing:admin").bearer();
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let (mut forwarded, mut refused, mut unrouted) = (0, 0, 0);
    for _ in 0..DIFFERENTIAL_PATHS {
        let path = generate(&mut rng);
        let before = edge.echoed();
        let answer = edge.get(&path, &bearer, &[]).await;
        match answer.status {
            StatusCode::BAD_REQUEST => {
                refused += 1;
                assert_refused(&answer, &path);
                assert_eq!(edge.echoed(), before, "{path}");
            }
            StatusCode::NOT_FOUND => {
                unrouted += 1;
                assert_eq!(edge.echoed(), before, "{path}");
                let decoded = String::from_utf8(percent_decode(&path)).unwrap();
                assert_eq!(route_of(&decoded), None, "{path}");
            }
            StatusCode::OK => {
                forwarded += 1;
                assert_eq!(edge.echoed(), before + 1, "{path}");
                let echoed = answer.json();
                let chosen = echoed["upstream"].as_str().unwrap();
                let received = echoed["path"].as_str().unwrap();
                let decoded = echoed["decoded"].as_str().unwrap();
                // The upstream's reading is the gateway's.
                assert_eq!(route_of(decoded), Some(chosen), "{path} -> {received}");
                // Normalising changed the form of the path, never what it decodes to.
                assert_eq!(percent_decode(received), percent_decode(&path), "{path}");
                let bytes = received.as_bytes();
                for (i, _) in received.match_indices('%') {
                    let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap();
                    assert_eq!(hex, hex.to_ascii_uppercase(), "{received}");
                    let value = u8::from_str_radix(hex, 16).unwrap();
                    assert!(
                        !value.is_ascii_alphanumeric() && !b"-._~/\\".contains(&value),
                        "{received}"
                    );
                }
                // No other reading reaches a protected route the gateway did not judge.
                for reading in other_readings(received) {
                    let other = route_of(&reading);
                    assert!(
                        matches!(other, None | Some("public")) || other == Some(chosen),
                        "{path} -> {received}: read as {reading} ({other:?}), routed to {chosen}"
                    );
                }
            }
            status => panic!("{path}: unexpected {status}"),
        }
    }
    // Every outcome was exercised, in earnest.
    assert!(forwarded > DIFFERENTIAL_PATHS / 5, "forwarded {forwarded}");
    assert!(refused > DIFFERENTIAL_PATHS / 5, "refused {refused}");
    assert!(unrouted > 0, "unrouted {unrouted}");
    let stats = edge.gw.gateway.stats();
    assert_eq!(stats.forwarded, forwarded as u64);
    assert_eq!(stats.bad_request, refused as u64);
}
