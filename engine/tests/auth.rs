//! Who may call what: API keys and JWTs as `Authorization: Bearer …`, scopes per pipeline and
//! action, 401 and 403 as problems that never tell whether a record exists, keys that rotate
//! without a restart, and an engine without `[auth]` that refuses to serve beyond loopback.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use common::{Engine, Names};
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use serde_json::{json, Value};

const ISSUER: &str = "https://login.example.org/";
const AUDIENCE: &str = "ordo";

/// An ES256 signing key with its id.
struct SigningKey {
    id: String,
    pkcs8: Vec<u8>,
    public: Vec<u8>,
}

impl SigningKey {
    fn new(id: &str) -> Self {
        let rng = SystemRandom::new();
        let pkcs8 =
            EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).expect("key pair");
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
            .expect("reads back");
        Self {
            id: id.into(),
            pkcs8: pkcs8.as_ref().to_vec(),
            public: pair.public_key().as_ref().to_vec(),
        }
    }

    /// Its public half as a JWK (an uncompressed P-256 point is 0x04 ‖ x ‖ y).
    fn jwk(&self) -> Value {
        json!({
            "kty": "EC", "crv": "P-256", "use": "sig", "alg": "ES256", "kid": self.id,
            "x": URL_SAFE_NO_PAD.encode(&self.public[1..33]),
            "y": URL_SAFE_NO_PAD.encode(&self.public[33..65]),
        })
    }

    /// A token with `claims` over the defaults (issuer, audience, subject, scope, an hour).
    fn token(&self, claims: Value) -> String {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("after 1970")
            .as_secs();
        let mut all = json!({
            "iss": ISSUER, "aud": AUDIENCE, "sub": "consultation-service",
            "scope": "patient-profile:write patient-profile:read",
            "iat": now, "exp": now + 3600,
        });
        for (k, v) in claims.as_object().expect("object") {
            all[k] = v.clone();
        }
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(self.id.clone());
        encode(&header, &all, &EncodingKey::from_ec_der(&self.pkcs8)).expect("signs")
    }
}

/// Writes a JWK set of `keys` to `path` atomically (a new file renamed over the old one).
fn write_jwks(path: &Path, keys: &[&SigningKey]) {
    let staging = path.with_extension("staging");
    let set = json!({"keys": keys.iter().map(|k| k.jwk()).collect::<Vec<_>>()});
    std::fs::write(&staging, set.to_string()).expect("write jwks");
    std::fs::rename(&staging, path).expect("rename jwks");
}

/// The `[auth]` table: a writer, a reader and an admin key, and the JWT issuer.
fn auth_table(jwks: &Path) -> String {
    let keys = common::api_keys_table(&[
        ("profile-service", "writer-key", &["patient-profile:write"]),
        (
            "consultation-service",
            "reader-key",
            &["patient-profile:read"],
        ),
        ("operator", "admin-key", &["admin"]),
    ]);
    format!(
        "{keys}[auth.jwt]\nissuer = \"{ISSUER}\"\naudience = \"{AUDIENCE}\"\njwks = \"{}\"\n",
        jwks.display()
    )
}

/// Sends `method path` with `bearer` credentials (and `body` as JSON when given).
async fn call(
    engine: &Engine,
    method: reqwest::Method,
    path: &str,
    bearer: Option<&str>,
    body: Option<&str>,
) -> (u16, reqwest::header::HeaderMap, Value) {
    let mut request = reqwest::Client::new().request(method, format!("{}{path}", engine.url));
    if let Some(bearer) = bearer {
        request = request.bearer_auth(bearer);
    }
    if let Some(body) = body {
        request = request
            .header("Content-Type", "application/json")
            .body(body.to_string());
    }
    let response = request.send().await.expect("reaches the engine");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    (status, headers, response.json().await.unwrap_or_default())
}

/// The record at `path`, read with `bearer` once the engine has applied it (200).
async fn read_once_applied(engine: &Engine, path: &str, bearer: &str) -> Value {
    let deadline = std::time::Instant::now() + common::EFFECT_TIMEOUT;
    loop {
        let (status, _, record) =
            call(engine, reqwest::Method::GET, path, Some(bearer), None).await;
        if status == 200 {
            return record;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never applied: {status} {record}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn body(key: &str) -> String {
    format!(r#"{{"PatientId":"{key}","FirstName":"Ada","UpdatedAt":"2006-01-02T15:00:00Z"}}"#)
}

/// `POST /patientprofile` of `key`'s body with `token`: the answer's status.
async fn post_status(engine: &Engine, token: &str, key: &str) -> u16 {
    call(
        engine,
        reqwest::Method::POST,
        "/patientprofile",
        Some(token),
        Some(&body(key)),
    )
    .await
    .0
}

/// An HTTPS listener on a free loopback port with `pki`'s certificate, and its port.
async fn https_listener(pki: &common::Pki) -> (impl poem::listener::Acceptor + 'static, u16) {
    use poem::listener::{Acceptor, Listener, RustlsCertificate, RustlsConfig, TcpListener};
    let tls = RustlsConfig::new().fallback(
        RustlsCertificate::new()
            .cert(pki.cert_pem.clone())
            .key(pki.key_pem.clone()),
    );
    let acceptor = TcpListener::bind("127.0.0.1:0")
        .rustls(tls)
        .into_acceptor()
        .await
        .expect("issuer listens");
    let port = acceptor.local_addr()[0]
        .as_socket_addr()
        .expect("an address")
        .port();
    (acceptor, port)
}

/// `pki`'s CA written to `dir`, for `jwks_ca`.
fn issuer_ca(dir: &Path, pki: &common::Pki) -> std::path::PathBuf {
    let ca = dir.join("issuer-ca.pem");
    std::fs::write(&ca, &pki.ca_pem).expect("write CA");
    ca
}

/// A 401 or 403 problem: its status, its media type, and a challenge on a 401.
fn assert_refused(answer: &(u16, reqwest::header::HeaderMap, Value), status: u16, what: &str) {
    let (got, headers, problem) = answer;
    assert_eq!(*got, status, "{what}: {problem}");
    assert_eq!(problem["status"], status, "{what}: {problem}");
    assert_eq!(
        headers.get("content-type").and_then(|v| v.to_str().ok()),
        Some("application/problem+json"),
        "{what}"
    );
    if status == 401 {
        let challenge = headers
            .get("www-authenticate")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        assert!(challenge.starts_with("Bearer"), "{what}: {challenge:?}");
    }
}

#[tokio::test]
async fn keys_and_scopes_decide_who_may_write_read_and_administer() {
    let dir = tempfile::tempdir().expect("temp dir");
    let jwks = dir.path().join("jwks.json");
    write_jwks(&jwks, &[&SigningKey::new("k1")]);
    let engine = Engine::builder(Names::unique("auth-keys"))
        .extra(&auth_table(&jwks))
        .start();
    let post = reqwest::Method::POST;
    let get = reqwest::Method::GET;
    let route = "/patientprofile";

    // Writing needs patient-profile:write.
    assert_refused(
        &call(&engine, post.clone(), route, None, Some(&body("a1"))).await,
        401,
        "no credentials",
    );
    let wrong = call(
        &engine,
        post.clone(),
        route,
        Some("not-a-key"),
        Some(&body("a1")),
    )
    .await;
    assert_refused(&wrong, 401, "unknown key");
    assert!(wrong.1["www-authenticate"]
        .to_str()
        .is_ok_and(|c| c.contains("invalid_token")));
    assert_refused(
        &call(
            &engine,
            post.clone(),
            route,
            Some("reader-key"),
            Some(&body("a1")),
        )
        .await,
        403,
        "reader writes",
    );
    assert_eq!(engine.topic_size(), 0, "nothing refused was produced");
    let (status, _, accepted) = call(
        &engine,
        post.clone(),
        route,
        Some("writer-key"),
        Some(&body("a1")),
    )
    .await;
    assert_eq!(status, 202, "{accepted}");

    // Reading needs patient-profile:read; a refusal looks the same whether the record exists.
    for key in ["a1", "nobody"] {
        let path = format!("{route}/{key}");
        assert_refused(
            &call(&engine, get.clone(), &path, None, None).await,
            401,
            "anonymous read",
        );
        assert_refused(
            &call(&engine, get.clone(), &path, Some("writer-key"), None).await,
            403,
            "writer reads",
        );
    }
    let (status, _, _) = call(
        &engine,
        get.clone(),
        &format!("{route}/nobody"),
        Some("reader-key"),
        None,
    )
    .await;
    assert_eq!(status, 404);
    let record = read_once_applied(&engine, &format!("{route}/a1"), "reader-key").await;
    assert_eq!(record["FirstName"], "Ada");

    // The admin endpoints need admin.
    assert_refused(
        &call(&engine, get.clone(), "/admin/pipelines", None, None).await,
        401,
        "anonymous admin",
    );
    assert_refused(
        &call(
            &engine,
            get.clone(),
            "/admin/pipelines",
            Some("writer-key"),
            None,
        )
        .await,
        403,
        "writer admin",
    );
    let (status, _, list) = call(
        &engine,
        get.clone(),
        "/admin/pipelines",
        Some("admin-key"),
        None,
    )
    .await;
    assert_eq!(status, 200, "{list}");
    // So do the operator page's live readings (the page itself holds no data).
    for (bearer, refused) in [(None, 401), (Some("writer-key"), 403)] {
        assert_refused(
            &call(&engine, get.clone(), "/admin/live", bearer, None).await,
            refused,
            "live readings",
        );
    }
    let live = reqwest::Client::new()
        .get(format!("{}/admin/live", engine.url))
        .bearer_auth("admin-key")
        .send()
        .await
        .expect("reaches the engine");
    assert_eq!(live.status().as_u16(), 200);
    assert_eq!(live.headers()["content-type"], "text/event-stream");
    drop(live);

    // The document declares the scheme, so Swagger UI's "Authorize" works.
    let (_, _, spec) = call(&engine, get.clone(), "/docs/openapi.json", None, None).await;
    assert_eq!(
        spec["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
    assert_eq!(
        spec["paths"][route]["post"]["security"],
        json!([{"bearer": []}])
    );

    // No key ever reaches the log.
    let log = engine.log();
    for secret in ["writer-key", "reader-key", "admin-key", "not-a-key"] {
        assert!(!log.contains(secret), "{secret} in the log");
    }
}

#[tokio::test]
async fn jwts_are_checked_and_their_keys_rotate_without_a_restart() {
    let dir = tempfile::tempdir().expect("temp dir");
    let jwks = dir.path().join("jwks.json");
    let first = SigningKey::new("first");
    write_jwks(&jwks, &[&first]);
    let engine = Engine::builder(Names::unique("auth-jwt"))
        .extra(&auth_table(&jwks))
        .start();
    let post = |bearer: String, key: &'static str| {
        let engine = &engine;
        async move {
            call(
                engine,
                reqwest::Method::POST,
                "/patientprofile",
                Some(&bearer),
                Some(&body(key)),
            )
            .await
        }
    };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("now")
        .as_secs();

    let (status, _, answer) = post(first.token(json!({})), "j1").await;
    assert_eq!(status, 202, "a valid token: {answer}");
    for (what, claims) in [
        ("expired", json!({"exp": now - 600})),
        ("not yet valid", json!({"nbf": now + 600})),
        ("another audience", json!({"aud": "someone-else"})),
        (
            "another issuer",
            json!({"iss": "https://evil.example.org/"}),
        ),
        (
            "without the scope",
            json!({"scope": "patient-profile:read"}),
        ),
    ] {
        let status = if what == "without the scope" {
            403
        } else {
            401
        };
        assert_refused(&post(first.token(claims), "j2").await, status, what);
    }
    // A token's subject is named in its issuer's namespace, never as the bare name an API key
    // could also have.
    let (status, _, answer) = post(
        first.token(json!({"scope": "patient-profile:read", "sub": "profile-service"})),
        "j2",
    )
    .await;
    assert_eq!(status, 403, "{answer}");
    assert!(
        answer
            .to_string()
            .contains(&format!("`jwt:{ISSUER}#profile-service`")),
        "{answer}"
    );
    // A token signed by a key the set does not hold, and one whose signature was tampered.
    let stranger = SigningKey::new("first");
    assert_refused(
        &post(stranger.token(json!({})), "j2").await,
        401,
        "unknown key",
    );
    // A character inside the signature (the last one may carry only padding bits).
    let mut tampered = first.token(json!({})).into_bytes();
    let at = tampered.len() - 10;
    tampered[at] = if tampered[at] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).expect("ASCII");
    assert_refused(&post(tampered, "j2").await, 401, "tampered");

    // Rotation: the issuer publishes a new key set; the engine follows without a restart.
    let second = SigningKey::new("second-key");
    write_jwks(&jwks, &[&second]);
    let (status, _, answer) = post(second.token(json!({})), "j3").await;
    assert_eq!(status, 202, "the new key is used at once: {answer}");
    assert_refused(
        &post(first.token(json!({})), "j4").await,
        401,
        "the retired key",
    );
}

#[test]
fn without_auth_the_engine_refuses_a_non_loopback_address_unless_told_otherwise() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = common::pipelines_file(dir.path(), &common::lww_plugin(), "");
    let out = common::ordo_command()
        .args(["run", "--listen", "0.0.0.0:0", "--config"])
        .arg(&config)
        .output()
        .expect("run ordo");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("refusing to serve without authentication on 0.0.0.0:0")
            && err.contains("--insecure-no-auth"),
        "{err}"
    );

    // With the flag it serves, and says so at WARN.
    let mut child = common::ordo_command()
        .args([
            "run",
            "--listen",
            "0.0.0.0:0",
            "--insecure-no-auth",
            "--config",
        ])
        .arg(&config)
        .env("KAFKA_BROKERS", common::brokers())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run ordo");
    let stdout = child.stdout.take().expect("stdout");
    let listening = BufReader::new(stdout)
        .lines()
        .map_while(Result::ok)
        .any(|line| line.starts_with("Ordo listening on"));
    let _ = child.kill();
    let output = child.wait_with_output().expect("exits");
    let log = String::from_utf8_lossy(&output.stderr);
    assert!(listening, "{log}");
    assert!(
        log.contains("WARN") && log.contains("WITHOUT authentication"),
        "{log}"
    );
}

#[tokio::test]
async fn an_idempotency_key_belongs_to_its_caller_and_its_body() {
    let dir = tempfile::tempdir().expect("temp dir");
    let jwks = dir.path().join("jwks.json");
    let signer = SigningKey::new("k1");
    write_jwks(&jwks, &[&signer]);
    let engine = Engine::builder(Names::unique("auth-idem"))
        .extra(&auth_table(&jwks))
        .start();
    let send = |bearer: String, body: String| {
        let url = format!("{}/patientprofile", engine.url);
        async move {
            let response = reqwest::Client::new()
                .post(url)
                .bearer_auth(bearer)
                .header("Content-Type", "application/json")
                .header("Idempotency-Key", "retry-1")
                .body(body)
                .send()
                .await
                .expect("reaches the engine");
            let replayed = response.headers().contains_key("idempotency-replayed");
            let status = response.status().as_u16();
            (
                status,
                replayed,
                response.json::<Value>().await.unwrap_or_default(),
            )
        }
    };
    let (status, replayed, first) = send("writer-key".into(), body("i1")).await;
    assert_eq!((status, replayed), (202, false), "{first}");
    let (status, replayed, again) = send("writer-key".into(), body("i1")).await;
    assert_eq!((status, replayed), (202, true), "{again}");
    assert_eq!(
        again["offset"], first["offset"],
        "the first answer, nothing produced again"
    );
    let (status, _, problem) = send("writer-key".into(), body("i2")).await;
    assert_eq!(status, 422, "same key, another body: {problem}");
    assert_eq!(problem["field"], "Idempotency-Key");
    // Another caller with the same key gets an answer of its own.
    let (status, replayed, theirs) = send(signer.token(json!({})), body("i1")).await;
    assert_eq!((status, replayed), (202, false), "{theirs}");
    assert_ne!(theirs["offset"], first["offset"]);
}

#[tokio::test]
async fn writes_reads_and_denials_are_audited_with_the_principal_and_one_request_id() {
    let dir = tempfile::tempdir().expect("temp dir");
    let jwks = dir.path().join("jwks.json");
    write_jwks(&jwks, &[&SigningKey::new("k1")]);
    let names = Names::unique("auth-audit");
    let audit_topic = format!("{}.audit", names.topic);
    // Engines of the harness record to `<topic>.audit`.
    let engine = Engine::builder(names).extra(&auth_table(&jwks)).start();
    let (status, headers, _) = call(
        &engine,
        reqwest::Method::POST,
        "/patientprofile",
        Some("writer-key"),
        Some(&body("audited")),
    )
    .await;
    assert_eq!(status, 202);
    let request_id = headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .expect("a request id comes back")
        .to_string();
    // A read once applied, and a denied read.
    read_once_applied(&engine, "/patientprofile/audited", "reader-key").await;
    let (status, _, _) = call(
        &engine,
        reqwest::Method::GET,
        "/patientprofile/audited",
        Some("writer-key"),
        None,
    )
    .await;
    assert_eq!(status, 403);
    // An event produced straight to the topic, claiming a principal no Ordo vouched for:
    // one with no signature, one with the signature of another event.
    let forged = r#"{"PatientId":"forged","FirstName":"Ada","UpdatedAt":"2006-01-02T15:00:00Z"}"#;
    common::produce_with_headers(
        &engine.names.topic,
        "forged",
        forged,
        &[("ordo-principal", "key:operator")],
    )
    .await;
    let copied = r#"{"PatientId":"copied","FirstName":"Ada","UpdatedAt":"2006-01-02T15:00:00Z"}"#;
    let stolen = engine_event_mac(&engine, "audited").await;
    common::produce_with_headers(
        &engine.names.topic,
        "copied",
        copied,
        &[
            ("ordo-principal", "key:profile-service"),
            ("ordo-principal-mac", &stolen),
        ],
    )
    .await;
    // The operator's side: a refused listing, a listing, and a live stream opened.
    let get = reqwest::Method::GET;
    let (status, _, _) = call(
        &engine,
        get.clone(),
        "/admin/pipelines",
        Some("reader-key"),
        None,
    )
    .await;
    assert_eq!(status, 403);
    let (status, _, _) = call(&engine, get, "/admin/pipelines", Some("admin-key"), None).await;
    assert_eq!(status, 200);
    let live = reqwest::Client::new()
        .get(format!("{}/admin/live", engine.url))
        .bearer_auth("admin-key")
        .send()
        .await
        .expect("reaches the engine");
    assert_eq!(live.status(), 200);
    drop(live);

    let has = |trail: &[Value], action: &str| trail.iter().any(|r| r["action"] == action);
    let on = |trail: &[Value], action: &str, route: &str| {
        trail
            .iter()
            .find(|r| r["action"] == action && r["route"] == route)
            .cloned()
    };
    let trail = common::read_json_until(&engine.brokers, &audit_topic, |t| {
        has(t, "ingest")
            && t.iter()
                .any(|r| r["action"] == "apply" && r["key"] == "audited")
            && t.iter()
                .any(|r| r["action"] == "read" && r["outcome"] == "found")
            && t.iter()
                .any(|r| r["action"] == "denied" && r["route"].is_null())
            && on(t, "denied", "/admin/pipelines").is_some()
            && on(t, "admin", "/admin/pipelines").is_some()
            && on(t, "admin", "/admin/live").is_some()
            && ["forged", "copied"]
                .iter()
                .all(|k| t.iter().any(|r| r["action"] == "apply" && r["key"] == *k))
    })
    .await;
    for (key, claimed) in [
        ("forged", "key:operator"),
        ("copied", "key:profile-service"),
    ] {
        let applied = trail
            .iter()
            .find(|r| r["action"] == "apply" && r["key"] == key)
            .expect("found above");
        assert_eq!(
            (applied["principal"].as_str(), applied["claimed"].as_str()),
            (None, Some(claimed)),
            "{applied}"
        );
    }
    let refused = on(&trail, "denied", "/admin/pipelines").expect("found above");
    assert_eq!(
        (
            refused["principal"].as_str(),
            refused["outcome"].as_str(),
            refused["pipeline"].as_str()
        ),
        (Some("key:consultation-service"), Some("403"), Some("*"))
    );
    let listed = on(&trail, "admin", "/admin/pipelines").expect("found above");
    assert_eq!(
        (listed["principal"].as_str(), listed["outcome"].as_str()),
        (Some("key:operator"), Some("listed"))
    );
    let opened = on(&trail, "admin", "/admin/live").expect("found above");
    assert_eq!(
        (opened["principal"].as_str(), opened["outcome"].as_str()),
        (Some("key:operator"), Some("opened"))
    );
    let find = |action: &str| {
        trail
            .iter()
            .find(|r| r["action"] == action)
            .unwrap_or_else(|| panic!("no {action} in {trail:#?}"))
    };
    let ingest = find("ingest");
    assert_eq!(ingest["principal"], "key:profile-service");
    assert_eq!(ingest["key"], "audited");
    assert_eq!(ingest["request_id"], request_id.as_str());
    // The POSTed event's apply (the forged ones below are applied too).
    let apply = trail
        .iter()
        .find(|r| r["action"] == "apply" && r["key"] == "audited")
        .unwrap_or_else(|| panic!("no apply of `audited` in {trail:#?}"));
    assert_eq!(
        apply["request_id"],
        request_id.as_str(),
        "one id from POST to write"
    );
    assert_eq!(apply["principal"], "key:profile-service");
    assert!(apply["plugin"]
        .as_str()
        .is_some_and(|p| p.starts_with("sha256:")));
    let read = trail
        .iter()
        .find(|r| r["action"] == "read" && r["outcome"] == "found")
        .expect("a read that found the record");
    assert_eq!(read["principal"], "key:consultation-service");
    assert_eq!(read["revision"], 1);
    let denied = trail
        .iter()
        .find(|r| r["action"] == "denied" && r["route"].is_null())
        .expect("the denied read");
    assert_eq!(
        (denied["principal"].as_str(), denied["outcome"].as_str()),
        (Some("key:profile-service"), Some("403"))
    );
    // Never a field value.
    assert!(
        trail.iter().all(|r| !r.to_string().contains("Ada")),
        "{trail:#?}"
    );
}

#[tokio::test]
async fn the_operators_side_can_have_a_listener_of_its_own() {
    let dir = tempfile::tempdir().expect("temp dir");
    let jwks = dir.path().join("jwks.json");
    write_jwks(&jwks, &[&SigningKey::new("k1")]);
    let port = common::free_port();
    let operator = format!("http://127.0.0.1:{port}");
    let engine = Engine::builder(Names::unique("auth-admin-listen"))
        .extra(&auth_table(&jwks))
        .args(&["--admin-listen", &format!("127.0.0.1:{port}")])
        .start();
    let get = |base: String, path: &'static str, bearer: Option<&'static str>| async move {
        let mut request = reqwest::Client::new().get(format!("{base}{path}"));
        if let Some(bearer) = bearer {
            request = request.bearer_auth(bearer);
        }
        request.send().await.map(|r| r.status().as_u16())
    };
    // The public listener no longer serves the operator's side ...
    assert_eq!(
        get(engine.url.clone(), "/metrics", None).await.ok(),
        Some(404)
    );
    assert_eq!(
        get(engine.url.clone(), "/admin/pipelines", Some("admin-key"))
            .await
            .ok(),
        Some(404)
    );
    // ... the operator's listener does, with the same rules, and nothing else.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while get(operator.clone(), "/healthz", None).await.ok() != Some(200) {
        assert!(
            std::time::Instant::now() < deadline,
            "the operator's listener never served"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // With [auth], /metrics wants the admin scope as /admin/* does; the public routes are
    // not served on the operator's side.
    for (path, bearer, status) in [
        ("/metrics", None, 401),
        ("/metrics", Some("reader-key"), 403),
        ("/metrics", Some("admin-key"), 200),
        ("/admin/pipelines", None, 401),
        ("/admin/pipelines", Some("admin-key"), 200),
        ("/patientprofile/1", Some("reader-key"), 404),
    ] {
        assert_eq!(
            get(operator.clone(), path, bearer).await.ok(),
            Some(status),
            "{path} with {bearer:?}"
        );
    }
    assert!(engine.log().contains("server=Ordo admin") || engine.log().contains("Ordo admin"));
}

// Multi-threaded: the issuer's server runs on this runtime while the engine starts, which
// blocks the test's thread.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_set_at_an_https_url_is_fetched_and_followed_when_it_rotates() {
    use std::sync::{Arc, Mutex};
    // The issuer: an HTTPS server (its CA made here) serving the key set it holds now.
    let issuer_pki = common::pki("issuer");
    let served = Arc::new(Mutex::new(String::new()));
    let set = |keys: &[&SigningKey]| {
        json!({"keys": keys.iter().map(|k| k.jwk()).collect::<Vec<_>>()}).to_string()
    };
    let first = SigningKey::new("url-first");
    *served.lock().expect("lock") = set(&[&first]);
    let app = {
        let served = Arc::clone(&served);
        poem::Route::new().at(
            "/jwks.json",
            poem::get(poem::endpoint::make_sync(move |_| {
                served.lock().map(|s| s.clone()).unwrap_or_default()
            })),
        )
    };
    let (acceptor, port) = https_listener(&issuer_pki).await;
    tokio::spawn(poem::Server::new_with_acceptor(acceptor).run(app));

    let dir = tempfile::tempdir().expect("temp dir");
    let ca = issuer_ca(dir.path(), &issuer_pki);
    let table = format!(
        r#"
[auth]
[auth.jwt]
issuer = "{ISSUER}"
audience = "{AUDIENCE}"
jwks = "https://127.0.0.1:{port}/jwks.json"
jwks_ca = "{}"
"#,
        ca.display()
    );
    let engine = Engine::builder(Names::unique("auth-jwks-url"))
        .extra(&table)
        .start();
    assert_eq!(
        post_status(&engine, &first.token(json!({})), "u1").await,
        202,
        "a key fetched at start"
    );

    // The issuer rotates: a token of the new key makes the engine fetch the set again.
    let second = SigningKey::new("url-second");
    *served.lock().expect("lock") = set(&[&second]);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while post_status(&engine, &second.token(json!({})), "u1").await != 202 {
        assert!(
            std::time::Instant::now() < deadline,
            "the rotated key set was never fetched"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        post_status(&engine, &first.token(json!({})), "u1").await,
        401,
        "the retired key"
    );
}

// Multi-threaded, as above.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwks_keys_are_bound_to_their_use_and_algorithm_and_a_url_is_capped_and_kept_on_its_host() {
    // The issuer: an HTTPS server (its CA made here) serving a good set, one too large, and
    // redirects to the same host and to another name of the same server.
    let issuer_pki = common::pki("issuer");
    let good = SigningKey::new("good");
    let set = json!({"keys": [good.jwk()]}).to_string();
    let oversized = json!({"keys": [good.jwk()], "padding": "x".repeat(300 * 1024)}).to_string();
    let (acceptor, port) = https_listener(&issuer_pki).await;
    let redirect = |to: String| {
        poem::get(poem::endpoint::make_sync(move |_| {
            poem::web::Redirect::temporary(to.clone())
        }))
    };
    let app = poem::Route::new()
        .at(
            "/jwks.json",
            poem::get(poem::endpoint::make_sync(move |_| set.clone())),
        )
        .at(
            "/big.json",
            poem::get(poem::endpoint::make_sync(move |_| oversized.clone())),
        )
        .at("/here", redirect("/jwks.json".into()))
        .at(
            "/away",
            redirect(format!("https://localhost:{port}/jwks.json")),
        );
    tokio::spawn(poem::Server::new_with_acceptor(acceptor).run(app));
    let dir = tempfile::tempdir().expect("temp dir");
    let ca = issuer_ca(dir.path(), &issuer_pki);
    let table = |path: &str| {
        format!(
            "[auth]\n[auth.jwt]\nissuer = \"{ISSUER}\"\naudience = \"{AUDIENCE}\"\njwks = \"https://127.0.0.1:{port}{path}\"\njwks_ca = \"{}\"\n",
            ca.display()
        )
    };

    // Too large, or moved to another host: the engine refuses to start, saying why.
    for (path, why) in [("/big.json", "larger than"), ("/away", "another host")] {
        let config = common::pipelines_file(dir.path(), &common::lww_plugin(), &table(path));
        let mut command = common::ordo_command();
        command
            .args(["run", "--config"])
            .arg(&config)
            .args(["--listen", "127.0.0.1:0"]);
        // An engine that started anyway would serve until killed: it fails the test instead.
        let out = tokio::time::timeout(
            Duration::from_secs(60),
            tokio::process::Command::from(command)
                .kill_on_drop(true)
                .output(),
        )
        .await
        .unwrap_or_else(|_| panic!("{path}: the engine started"))
        .expect("run ordo");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{path}: {stderr}");
        assert!(stderr.contains(why), "{path}: {stderr}");
    }

    // Moved on the same host: followed. In the set fetched, a key marked for encryption or
    // for another algorithm verifies nothing.
    let engine = Engine::builder(Names::unique("auth-jwks-bound"))
        .extra(&table("/here"))
        .start();
    assert_eq!(
        post_status(&engine, &good.token(json!({})), "b1").await,
        202,
        "fetched through the redirect"
    );

    let jwks = dir.path().join("jwks.json");
    let encryption = SigningKey::new("for-encryption");
    let other_alg = SigningKey::new("for-es384");
    let mut enc_jwk = encryption.jwk();
    enc_jwk["use"] = json!("enc");
    let mut alg_jwk = other_alg.jwk();
    alg_jwk["alg"] = json!("ES384");
    let usable = SigningKey::new("usable");
    std::fs::write(
        &jwks,
        json!({"keys": [enc_jwk, alg_jwk, usable.jwk()]}).to_string(),
    )
    .expect("write jwks");
    let engine = Engine::builder(Names::unique("auth-jwks-file"))
        .extra(&format!(
            "[auth]\n[auth.jwt]\nissuer = \"{ISSUER}\"\naudience = \"{AUDIENCE}\"\njwks = \"{}\"\n",
            jwks.display()
        ))
        .start();
    assert_eq!(
        post_status(&engine, &usable.token(json!({})), "b2").await,
        202,
        "a signing key"
    );
    assert_eq!(
        post_status(&engine, &encryption.token(json!({})), "b2").await,
        401,
        "`use` is `enc`"
    );
    assert_eq!(
        post_status(&engine, &other_alg.token(json!({})), "b2").await,
        401,
        "`alg` is ES384"
    );
}

/// The `ordo-principal-mac` header of the event the engine produced for `key`, read from the
/// topic.
async fn engine_event_mac(engine: &Engine, key: &str) -> String {
    let deadline = std::time::Instant::now() + common::EFFECT_TIMEOUT;
    loop {
        let found = common::read_all(&engine.brokers, &engine.names.topic)
            .into_iter()
            .find(|e| {
                serde_json::from_slice::<Value>(&e.payload).is_ok_and(|v| v["PatientId"] == key)
            })
            .and_then(|e| e.header("ordo-principal-mac").map(str::to_string));
        if let Some(mac) = found {
            return mac;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no signed event for {key}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Counts the readings of an open `/admin/live` stream until it ends or `within` passes;
/// whether it ended, and how many readings came.
async fn follow_live(response: reqwest::Response, within: Duration) -> (bool, usize) {
    let mut response = response;
    let mut readings = 0;
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, response.chunk()).await {
            Ok(Ok(Some(chunk))) => {
                readings += String::from_utf8_lossy(&chunk).matches("data:").count();
            }
            Ok(Ok(None)) | Ok(Err(_)) => return (true, readings),
            Err(_) => return (false, readings),
        }
    }
}

#[tokio::test]
async fn a_live_stream_ends_when_its_token_expires() {
    let dir = tempfile::tempdir().expect("temp dir");
    let jwks = dir.path().join("jwks.json");
    let key = SigningKey::new("k1");
    write_jwks(&jwks, &[&key]);
    // No leeway, so the token is refused the second it expires.
    let table = auth_table(&jwks).replace("[auth.jwt]\n", "[auth.jwt]\nleeway_seconds = 0\n");
    let engine = Engine::builder(Names::unique("auth-live"))
        .extra(&table)
        .start();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("now")
        .as_secs();
    let open = |token: String| {
        let url = format!("{}/admin/live?interval_ms=200", engine.url);
        async move {
            let response = reqwest::Client::new()
                .get(url)
                .bearer_auth(token)
                .send()
                .await
                .expect("reaches the engine");
            assert_eq!(response.status(), 200);
            response
        }
    };
    let brief = open(key.token(json!({"scope": "admin", "exp": now + 3}))).await;
    let lasting = open(key.token(json!({"scope": "admin", "exp": now + 3600}))).await;
    let (ended, readings) = follow_live(brief, Duration::from_secs(20)).await;
    assert!(
        ended,
        "a stream outlived its token by 15 s ({readings} readings)"
    );
    assert!(
        readings >= 2,
        "it streamed while the token was valid: {readings}"
    );
    // The stream of a token still valid goes on.
    let (ended, readings) = follow_live(lasting, Duration::from_secs(2)).await;
    assert!(!ended, "a stream with a valid token ended");
    assert!(readings >= 2, "{readings}");
}
