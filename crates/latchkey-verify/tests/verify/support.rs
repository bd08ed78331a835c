//! The test issuer: a tiny in-process axum app serving RFC 8414 metadata, a JWKS and a
//! scripted introspection endpoint on 127.0.0.1:0, counting every request by path; test
//! signing keys (Ed25519, P-256, RSA-2048, generated here with aws-lc-rs); token
//! builders; a manual clock and a scriptable deny list.

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair, KeyPair, RSA_PKCS1_SHA256,
    RsaKeyPair,
};
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Json};
use axum::routing::{get, post};
use latchkey_core::jwt::b64url_encode;
use latchkey_core::secret::{SecretCodec, SecretPrefix, SecretType};
use latchkey_core::usable::Standing;
use latchkey_core::{Permission, PermissionSet, RoleName, TenantId, Timestamp, TokenId, UserId};
use latchkey_verify::{Clock, Credential, Revocation, RevocationCheck, Verifier, VerifierOptions};
use serde_json::{Value, json};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex, OnceLock, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The credential the test issuer accepts for introspection.
pub const VERIFIER_CREDENTIAL: &str = "lk_ak_verifier-credential";

enum Signer {
    Ed(Ed25519KeyPair),
    Es(EcdsaKeyPair),
    Rs(RsaKeyPair),
}

/// RSA generation is slow; one key serves every test.
static RSA: LazyLock<Arc<Signer>> =
    LazyLock::new(|| Arc::new(Signer::Rs(RsaKeyPair::generate(KeySize::Rsa2048).unwrap())));

/// A signing key with its `kid`.
#[derive(Clone)]
pub struct TestKey {
    pub kid: String,
    signer: Arc<Signer>,
}

impl TestKey {
    pub fn ed25519(kid: &str) -> Self {
        Self {
            kid: kid.to_owned(),
            signer: Arc::new(Signer::Ed(Ed25519KeyPair::generate().unwrap())),
        }
    }

    pub fn es256(kid: &str) -> Self {
        let pair = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).unwrap();
        Self {
            kid: kid.to_owned(),
            signer: Arc::new(Signer::Es(pair)),
        }
    }

    pub fn rs256(kid: &str) -> Self {
        Self {
            kid: kid.to_owned(),
            signer: RSA.clone(),
        }
    }

    /// The same key material under another kid.
    pub fn renamed(&self, kid: &str) -> Self {
        Self {
            kid: kid.to_owned(),
            signer: self.signer.clone(),
        }
    }

    pub fn alg(&self) -> &'static str {
        match *self.signer {
            Signer::Ed(_) => "EdDSA",
            Signer::Es(_) => "ES256",
            Signer::Rs(_) => "RS256",
        }
    }

    /// The public JWK, as the server publishes it.
    pub fn jwk(&self) -> Value {
        match &*self.signer {
            Signer::Ed(pair) => json!({
                "kid": self.kid, "kty": "OKP", "crv": "Ed25519", "alg": "EdDSA", "use": "sig",
                "x": b64url_encode(pair.public_key().as_ref()),
            }),
            Signer::Es(pair) => {
                let point = pair.public_key().as_ref();
                json!({
                    "kid": self.kid, "kty": "EC", "crv": "P-256", "alg": "ES256", "use": "sig",
                    "x": b64url_encode(&point[1..33]), "y": b64url_encode(&point[33..65]),
                })
            }
            Signer::Rs(pair) => {
                let public = pair.public_key();
                json!({
                    "kid": self.kid, "kty": "RSA", "alg": "RS256", "use": "sig",
                    "n": b64url_encode(public.modulus().big_endian_without_leading_zero()),
                    "e": b64url_encode(public.exponent().big_endian_without_leading_zero()),
                })
            }
        }
    }

    /// The public key as DER SubjectPublicKeyInfo (RSA) or raw bytes (others), for
    /// the HS256 key-confusion attacks.
    pub fn public_der(&self) -> Vec<u8> {
        use aws_lc_rs::encoding::AsDer;
        match &*self.signer {
            Signer::Ed(pair) => pair.public_key().as_ref().to_vec(),
            Signer::Es(pair) => pair.public_key().as_ref().to_vec(),
            Signer::Rs(pair) => pair.public_key().as_der().unwrap().as_ref().to_vec(),
        }
    }

    pub fn sign(&self, message: &[u8]) -> Vec<u8> {
        let rng = SystemRandom::new();
        match &*self.signer {
            Signer::Ed(pair) => pair.sign(message).as_ref().to_vec(),
            Signer::Es(pair) => pair.sign(&rng, message).unwrap().as_ref().to_vec(),
            Signer::Rs(pair) => {
                let mut signature = vec![0; pair.public_modulus_len()];
                pair.sign(&RSA_PKCS1_SHA256, &rng, message, &mut signature)
                    .unwrap();
                signature
            }
        }
    }
}

pub fn jwks(keys: &[&TestKey]) -> Value {
    json!({ "keys": keys.iter().map(|k| k.jwk()).collect::<Vec<_>>() })
}

pub fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// The header the server writes for `key`.
pub fn header(key: &TestKey) -> Value {
    json!({ "alg": key.alg(), "typ": "at+jwt", "kid": key.kid })
}

/// Valid access-token claims for `issuer` at `now`: a tenant token whose own
/// permission is `reports:read`, with no roles.
pub fn claims(issuer: &str, now: i64) -> Value {
    let id = uuid::Uuid::new_v4().to_string();
    json!({
        "iss": issuer, "sub": id, "aud": issuer,
        "exp": now + 900, "iat": now, "nbf": now,
        "jti": uuid::Uuid::new_v4().to_string(),
        "client_id": id, "scope": "reports:read", "tid": "acme", "tkt": "tenant",
        "rol": [], "prm": ["reports:read"],
    })
}

/// Signs raw header and claims JSON text with `key`.
pub fn sign_raw(key: &TestKey, header: &str, claims: &str) -> String {
    let input = format!(
        "{}.{}",
        b64url_encode(header.as_bytes()),
        b64url_encode(claims.as_bytes())
    );
    let signature = key.sign(input.as_bytes());
    format!("{input}.{}", b64url_encode(&signature))
}

pub fn sign(key: &TestKey, header: &Value, claims: &Value) -> String {
    sign_raw(key, &header.to_string(), &claims.to_string())
}

/// A well-formed api key (prefix `lk`, right checksum) and its token id.
pub fn api_key() -> (String, TokenId) {
    let rng = SystemRandom::new();
    let id = TokenId::generate(&rng).unwrap();
    let codec = SecretCodec::new(SecretPrefix::default(), &[0; 32]);
    let issued = codec.generate(SecretType::ApiKey, id, &rng).unwrap();
    (issued.secret.expose().to_owned(), id)
}

pub use latchkey_core::clock::ManualClock;

/// Time that moves only when told to; starts at the real time (whole seconds) so tokens
/// signed with `unix_now()` are current.
pub fn manual_clock() -> Arc<ManualClock> {
    Arc::new(ManualClock::new(Timestamp::from_millis(unix_now() * 1000)))
}

/// Scripted grant state: role permissions and members' roles, by name.
#[derive(Default)]
pub struct GrantScript {
    pub roles: HashMap<String, Vec<String>>,
    pub members: HashMap<String, Vec<String>>,
}

/// A scriptable deny list: ids and jtis in `revoked` are revoked; everything else gets
/// `otherwise`. It knows grant state only once `state` is set.
pub struct DenyList {
    pub revoked: Mutex<HashSet<String>>,
    pub otherwise: Mutex<Revocation>,
    pub state: Mutex<Option<GrantScript>>,
    pub epoch: AtomicU64,
}

impl DenyList {
    pub fn new(otherwise: Revocation) -> Arc<Self> {
        Arc::new(Self {
            revoked: Mutex::new(HashSet::new()),
            otherwise: Mutex::new(otherwise),
            state: Mutex::new(None),
            epoch: AtomicU64::new(0),
        })
    }

    /// Changes the grant state, as a role or member entry does.
    pub fn script(&self, change: impl FnOnce(&mut GrantScript)) {
        change(
            self.state
                .lock()
                .unwrap()
                .get_or_insert_with(GrantScript::default),
        );
        self.epoch.fetch_add(1, Ordering::SeqCst);
    }

    pub fn revoke(&self, id: &str) {
        self.revoked.lock().unwrap().insert(id.to_owned());
    }
}

impl RevocationCheck for DenyList {
    fn check(&self, token_id: &TokenId, jti: Option<&str>) -> Revocation {
        let revoked = self.revoked.lock().unwrap();
        if revoked.contains(&token_id.to_string()) || jti.is_some_and(|j| revoked.contains(j)) {
            Revocation::Revoked
        } else {
            *self.otherwise.lock().unwrap()
        }
    }

    fn standing(
        &self,
        _tenant: &TenantId,
        user: Option<&UserId>,
        roles: &[RoleName],
    ) -> Option<Standing> {
        let state = self.state.lock().unwrap();
        let script = state.as_ref()?;
        let of = |roles: &mut dyn Iterator<Item = &str>| -> PermissionSet {
            roles
                .filter_map(|r| script.roles.get(r))
                .flatten()
                .map(|p| Permission::parse(p).unwrap())
                .collect()
        };
        Some(match user {
            None => Standing::Tenant {
                role_permissions: of(&mut roles.iter().map(|r| r.as_str())),
            },
            Some(user) => match script.members.get(user.as_str()) {
                Some(held) if !held.is_empty() => Standing::Member {
                    holds: of(&mut held.iter().map(String::as_str)),
                },
                _ => Standing::Departed,
            },
        })
    }

    fn state_epoch(&self) -> u64 {
        self.epoch.load(Ordering::SeqCst)
    }
}

#[derive(Default)]
pub struct IssuerState {
    url: OnceLock<String>,
    jwks: RwLock<Value>,
    hits: Mutex<HashMap<String, usize>>,
    /// Introspection answers by token; unknown tokens are inactive.
    answers: Mutex<HashMap<String, Value>>,
    introspection_delay: Mutex<Duration>,
    introspection_status: Mutex<Option<StatusCode>>,
}

/// The fake issuer.
pub struct Issuer {
    pub url: String,
    state: Arc<IssuerState>,
}

impl Issuer {
    pub async fn start(keys: &[&TestKey]) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        Self::serve(keys, listener, None, url).await
    }

    /// An issuer served over TLS with `tls`, at `https://localhost:PORT`, whose
    /// metadata names `advertise` (default: that address) as its issuer and its URLs
    /// on that origin. Returns it and the address it is reached at.
    pub async fn start_tls(
        keys: &[&TestKey],
        tls: tokio_rustls::TlsAcceptor,
        advertise: Option<&str>,
    ) -> (Self, String) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = format!(
            "https://localhost:{}",
            listener.local_addr().unwrap().port()
        );
        let url = advertise.map_or_else(|| address.clone(), str::to_owned);
        (Self::serve(keys, listener, Some(tls), url).await, address)
    }

    /// An issuer on plain HTTP whose metadata names `advertise` as its issuer; returns
    /// it and the address it is reached at.
    pub async fn start_advertising(keys: &[&TestKey], advertise: &str) -> (Self, String) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = format!("http://{}", listener.local_addr().unwrap());
        (
            Self::serve(keys, listener, None, advertise.to_owned()).await,
            address,
        )
    }

    async fn serve(
        keys: &[&TestKey],
        listener: tokio::net::TcpListener,
        tls: Option<tokio_rustls::TlsAcceptor>,
        url: String,
    ) -> Self {
        let state = Arc::new(IssuerState::default());
        *state.jwks.write().unwrap() = jwks(keys);
        let app = Router::new()
            .route("/.well-known/oauth-authorization-server", get(metadata))
            .route("/.well-known/jwks.json", get(key_set))
            .route("/oauth/introspect", post(introspect))
            .fallback(elsewhere)
            .with_state(state.clone());
        state.url.set(url.clone()).unwrap();
        match tls {
            None => {
                tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
            }
            Some(tls) => {
                let listener = crate::tls::TlsListener::new(listener, tls);
                tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
            }
        }
        Self { url, state }
    }

    /// How many requests reached `path`.
    pub fn hits(&self, path: &str) -> usize {
        self.state
            .hits
            .lock()
            .unwrap()
            .get(path)
            .copied()
            .unwrap_or(0)
    }

    pub fn jwks_fetches(&self) -> usize {
        self.hits("/.well-known/jwks.json")
    }

    pub fn introspections(&self) -> usize {
        self.hits("/oauth/introspect")
    }

    /// Every request the issuer has seen.
    pub fn total_hits(&self) -> usize {
        self.state.hits.lock().unwrap().values().sum()
    }

    pub fn publish(&self, keys: &[&TestKey]) {
        *self.state.jwks.write().unwrap() = jwks(keys);
    }

    /// Scripts the introspection answer for `token`.
    pub fn answer(&self, token: &str, answer: Value) {
        self.state
            .answers
            .lock()
            .unwrap()
            .insert(token.to_owned(), answer);
    }

    /// Scripts an active api-key answer.
    pub fn activate(&self, key: &str, id: TokenId, scope: &str) {
        self.answer(
            key,
            json!({
                "active": true, "scope": scope, "client_id": id.to_string(),
                "sub": id.to_string(), "tid": "acme", "token_type": "Bearer",
                "iat": unix_now(), "iss": self.url,
            }),
        );
    }

    pub fn delay_introspection(&self, by: Duration) {
        *self.state.introspection_delay.lock().unwrap() = by;
    }

    pub fn fail_introspection(&self, status: StatusCode) {
        *self.state.introspection_status.lock().unwrap() = Some(status);
    }

    /// Options using `clock` and the verifier credential, refreshing only when told.
    pub fn options(&self, clock: &Arc<ManualClock>) -> VerifierOptions {
        VerifierOptions {
            credential: Some(Credential::new(VERIFIER_CREDENTIAL)),
            clock: clock.clone(),
            jwks_refresh_interval: Duration::ZERO,
            ..VerifierOptions::default()
        }
    }

    pub async fn verifier(&self, options: VerifierOptions) -> Verifier {
        Verifier::discover(&self.url, options).await.unwrap()
    }
}

fn count(state: &IssuerState, path: &str) {
    *state
        .hits
        .lock()
        .unwrap()
        .entry(path.to_owned())
        .or_default() += 1;
}

async fn metadata(State(state): State<Arc<IssuerState>>) -> Json<Value> {
    count(&state, "/.well-known/oauth-authorization-server");
    let url = state.url.get().unwrap();
    Json(json!({
        "issuer": url,
        "jwks_uri": format!("{url}/.well-known/jwks.json"),
        "introspection_endpoint": format!("{url}/oauth/introspect"),
        "access_token_signing_alg_values_supported": ["EdDSA", "ES256", "RS256"],
    }))
}

async fn key_set(State(state): State<Arc<IssuerState>>) -> Json<Value> {
    count(&state, "/.well-known/jwks.json");
    Json(state.jwks.read().unwrap().clone())
}

async fn introspect(
    State(state): State<Arc<IssuerState>>,
    headers: HeaderMap,
    body: String,
) -> axum::response::Response {
    count(&state, "/oauth/introspect");
    let delay = *state.introspection_delay.lock().unwrap();
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    if let Some(status) = *state.introspection_status.lock().unwrap() {
        return status.into_response();
    }
    let authorized = headers.get("authorization").and_then(|v| v.to_str().ok())
        == Some(&format!("Bearer {VERIFIER_CREDENTIAL}"));
    if !authorized {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let token = body.strip_prefix("token=").unwrap_or_default();
    let answer = state.answers.lock().unwrap().get(token).cloned();
    Json(answer.unwrap_or_else(|| json!({ "active": false }))).into_response()
}

async fn elsewhere(State(state): State<Arc<IssuerState>>, uri: Uri) -> StatusCode {
    count(&state, uri.path());
    StatusCode::NOT_FOUND
}

/// An issuer with one key of each algorithm and a verifier on a manual clock.
pub struct Fixture {
    pub issuer: Issuer,
    pub verifier: Verifier,
    pub clock: Arc<ManualClock>,
    pub ed: TestKey,
    pub es: TestKey,
    pub rs: TestKey,
}

impl Fixture {
    pub async fn start() -> Self {
        Self::with(|_| {}).await
    }

    /// Like `start`, with `tweak` applied to the options.
    pub async fn with(tweak: impl FnOnce(&mut VerifierOptions)) -> Self {
        let (ed, es, rs) = (
            TestKey::ed25519("ed-1"),
            TestKey::es256("es-1"),
            TestKey::rs256("rs-1"),
        );
        let issuer = Issuer::start(&[&ed, &es, &rs]).await;
        let clock = manual_clock();
        let mut options = issuer.options(&clock);
        tweak(&mut options);
        let verifier = issuer.verifier(options).await;
        Self {
            issuer,
            verifier,
            clock,
            ed,
            es,
            rs,
        }
    }

    /// Valid claims for this issuer at the clock's time.
    pub fn claims(&self) -> Value {
        claims(&self.issuer.url, self.clock.now().unix_seconds())
    }

    /// A valid access token signed by `key`.
    pub fn token(&self, key: &TestKey) -> String {
        sign(key, &header(key), &self.claims())
    }
}
