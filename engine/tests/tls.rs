//! HTTPS on the engine's own listener: a CA made here signs the engine's certificate; a client
//! trusting that CA gets the seed's round trip, one that does not is refused, plain HTTP gets
//! nowhere, and a renewed certificate (signed by another CA) is served without a restart.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{pki, Engine, Names, Pki};

/// Writes `pki`'s certificate and key over `cert` and `key`, each by an atomic rename.
fn install(pki: &Pki, cert: &Path, key: &Path) {
    for (text, path) in [(&pki.key_pem, key), (&pki.cert_pem, cert)] {
        let staging = path.with_extension("staging");
        std::fs::write(&staging, text).expect("write");
        std::fs::rename(&staging, path).expect("rename");
    }
}

fn client_trusting(ca_pem: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(ca_pem.as_bytes()).expect("CA"))
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client")
}

async fn post(client: &reqwest::Client, url: &str, id: &str) -> Result<u16, reqwest::Error> {
    client
        .post(format!("{url}/patientprofile"))
        .header("Content-Type", "application/json")
        .body(format!(
            r#"{{ "PatientId": "{id}", "FirstName": "John", "LastName": "Doe", "IsPregnant": "False", "Sex": "Female"}}"#
        ))
        .send()
        .await
        .map(|r| r.status().as_u16())
}

#[tokio::test]
async fn the_engine_serves_https_and_follows_a_renewed_certificate() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (cert, key) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
    let first = pki("one");
    install(&first, &cert, &key);
    let engine = Engine::builder(Names::unique("tls"))
        .args(&[
            "--tls-cert",
            &cert.display().to_string(),
            "--tls-key",
            &key.display().to_string(),
        ])
        .start();
    assert!(
        engine.url.starts_with("https://127.0.0.1:"),
        "{}",
        engine.url
    );

    // The seed's round trip, over HTTPS.
    let trusting = client_trusting(&first.ca_pem);
    assert_eq!(
        post(&trusting, &engine.url, "tls-1").await.expect("HTTPS"),
        202
    );
    let deadline = Instant::now() + common::EFFECT_TIMEOUT;
    loop {
        let read = trusting
            .get(format!("{}/patientprofile/tls-1", engine.url))
            .send()
            .await
            .expect("HTTPS");
        if read.status() == 200 {
            let record: serde_json::Value = read.json().await.expect("JSON");
            assert_eq!(record["FirstName"], "John");
            break;
        }
        assert!(Instant::now() < deadline, "never applied");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // A client that does not trust the CA is refused; plain HTTP gets no answer.
    let stranger = client_trusting(&pki("stranger").ca_pem);
    let refused = post(&stranger, &engine.url, "tls-2")
        .await
        .expect_err("untrusted");
    assert!(refused.is_connect() || refused.is_request(), "{refused:?}");
    let plain = engine.url.replacen("https://", "http://", 1);
    assert!(
        post(&reqwest::Client::new(), &plain, "tls-3")
            .await
            .is_err(),
        "plain HTTP is not served"
    );

    // A renewed certificate, from another CA, is served without a restart.
    let second = pki("two");
    install(&second, &cert, &key);
    let renewed = client_trusting(&second.ca_pem);
    let deadline = Instant::now() + Duration::from_secs(15);
    while post(&renewed, &engine.url, "tls-4").await.ok() != Some(202) {
        assert!(
            Instant::now() < deadline,
            "the renewed certificate was never served"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(engine.log().contains("TLS certificate reloaded."));
}

#[test]
fn a_certificate_that_does_not_load_stops_the_start_naming_the_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (cert, key) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
    std::fs::write(&cert, "not a certificate").expect("write");
    std::fs::write(&key, "not a key").expect("write");
    let config = common::pipelines_file(dir.path(), &common::lww_plugin(), "");
    let out = common::ordo_command()
        .args(["run", "--listen", "127.0.0.1:0", "--config"])
        .arg(&config)
        .arg("--tls-cert")
        .arg(&cert)
        .arg("--tls-key")
        .arg(&key)
        .env("KAFKA_BROKERS", common::brokers())
        .output()
        .expect("run ordo");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("TLS:") && err.contains("tls.crt"), "{err}");
}
