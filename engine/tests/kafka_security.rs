//! Kafka over TLS and SASL for real: the engine against a broker of the test's own, reached
//! through a TLS terminator whose certificate a CA made here signed (tansu 0.6 speaks plain
//! Kafka only, so the broker advertises the terminator's address, as a cluster behind a TLS
//! load balancer does), and against the same broker requiring SASL/SCRAM.

mod common;

use std::path::Path;

use common::tls::TlsFront;
use common::{free_port, pki, s, wait_item, Engine, Names, PrivateBroker};

const SEED: &str = r#"{ "PatientId": "1", "FirstName": "John", "LastName": "Doe", "IsPregnant": "False", "Sex": "Female"}"#;

/// A broker behind a TLS front (the front first: the broker advertises its address).
fn broker_behind_tls(pki: &common::Pki) -> (PrivateBroker, TlsFront) {
    let broker_address = format!("127.0.0.1:{}", free_port());
    let front = TlsFront::start(&broker_address, pki);
    let broker = PrivateBroker::start_advertising(&broker_address, &front.address, &[]);
    (broker, front)
}

/// `ca`'s certificate written into `dir`, as the `[kafka]` lines that trust it (`ssl.ca.location`).
fn trusting(dir: &Path, ca: &common::Pki) -> String {
    let file = dir.join("ca.pem");
    std::fs::write(&file, &ca.ca_pem).expect("write CA");
    format!("\"ssl.ca.location\" = \"{}\"\n", file.display())
}

/// Runs the engine on `brokers` with `extra` pipelines-file lines and `env`, expects it to
/// stop at start, and returns what it wrote to stderr.
fn failed_start(label: &str, brokers: &str, extra: &str, env: &[(&str, &str)]) -> String {
    let dir = tempfile::tempdir().expect("temp dir");
    let names = Names::unique(label);
    let config = common::pipelines_file_of(
        dir.path(),
        &names.topic,
        &names.table,
        &common::lww_plugin(),
        extra,
    );
    let out = common::ordo_command()
        .args(["--listen", "127.0.0.1:0", "--config"])
        .arg(&config)
        .env("KAFKA_BROKERS", brokers)
        .envs(env.iter().copied())
        .output()
        .expect("run the engine");
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(!out.status.success(), "the engine must stop:\n{stderr}");
    stderr
}

#[tokio::test]
async fn the_seed_round_trips_over_tls_with_the_ca_from_a_file() {
    let pki = pki("kafka-tls");
    let (_broker, front) = broker_behind_tls(&pki);
    let dir = tempfile::tempdir().expect("temp dir");
    let engine = Engine::builder(Names::unique("kafka-tls"))
        .brokers(&front.address)
        .extra(&format!(
            "\n[kafka]\n\"security.protocol\" = \"SSL\"\n{}",
            trusting(dir.path(), &pki)
        ))
        .start();
    let (status, body) = engine.post(SEED).await;
    assert_eq!(status, 202, "{body}");
    let item = wait_item(&engine, "1", |_| true).await;
    assert_eq!(s(&item, "FirstName"), "John");
    assert_eq!(s(&item, "IsPregnant"), "False");
}

#[test]
fn a_wrong_ca_stops_the_engine_naming_the_tls_failure() {
    let (_broker, front) = broker_behind_tls(&pki("kafka-tls-right"));
    let dir = tempfile::tempdir().expect("temp dir");
    let extra = format!(
        "\n[kafka]\n\"security.protocol\" = \"SSL\"\n{}",
        trusting(dir.path(), &pki("kafka-tls-wrong"))
    );
    let stderr = failed_start("kafka-tls-wrong", &front.address, &extra, &[]);
    assert!(
        stderr.contains("certificate verify failed"),
        "the TLS failure is named:\n{stderr}"
    );
    assert!(
        stderr.contains("the brokers refused the connection"),
        "the startup error explains itself:\n{stderr}"
    );
}

/// A broker requiring SASL with a SCRAM-SHA-256 user `ordo`: the user is created while the
/// broker is open, then it restarts with `--authentication` on the same storage.
fn broker_with_scram_user(password: &str) -> PrivateBroker {
    let address = format!("127.0.0.1:{}", free_port());
    let mut broker = PrivateBroker::start_advertising(&address, &address, &[]);
    let created = broker.tansu(&[
        "user",
        "create",
        "--broker",
        &format!("tcp://{address}"),
        "--mechanism",
        "scram256",
        "ordo",
        password,
    ]);
    assert!(
        created.status.success(),
        "tansu user create: {}",
        String::from_utf8_lossy(&created.stderr)
    );
    broker.stop();
    broker.set_args(&["--authentication"]);
    broker.restart();
    broker
}

fn scram_table(password_env: &str) -> String {
    format!(
        r#"
[kafka]
"security.protocol" = "SASL_PLAINTEXT"
"sasl.mechanisms" = "SCRAM-SHA-256"
"sasl.username" = "ordo"
"sasl.password" = "${{env:{password_env}}}"
"#
    )
}

#[tokio::test]
async fn the_seed_round_trips_with_sasl_scram_and_the_password_from_the_environment() {
    let broker = broker_with_scram_user("scram-secret-1");
    let engine = Engine::builder(Names::unique("kafka-scram"))
        .brokers(&broker.address)
        .env("ORDO_TEST_SCRAM_PASSWORD", "scram-secret-1")
        .extra(&scram_table("ORDO_TEST_SCRAM_PASSWORD"))
        .start();
    let (status, body) = engine.post(SEED).await;
    assert_eq!(status, 202, "{body}");
    let item = wait_item(&engine, "1", |_| true).await;
    assert_eq!(s(&item, "LastName"), "Doe");
    assert!(
        !engine.log().contains("scram-secret-1"),
        "no password in the log"
    );
}

#[test]
fn a_wrong_scram_password_stops_the_engine_naming_the_authentication_failure() {
    let broker = broker_with_scram_user("scram-secret-2");
    let stderr = failed_start(
        "kafka-scram-wrong",
        &broker.address,
        &scram_table("ORDO_TEST_SCRAM_WRONG"),
        &[("ORDO_TEST_SCRAM_WRONG", "not-the-password")],
    );
    assert!(
        stderr.contains("the brokers refused the connection") && stderr.contains("SASL"),
        "the authentication failure is named:\n{stderr}"
    );
    assert!(!stderr.contains("not-the-password"), "{stderr}");
}

/// MSK IAM against a broker that is not MSK: the engine signs a token (from the test's AWS
/// credentials) and librdkafka offers it over TLS; the local broker knows no OAUTHBEARER and
/// refuses, which the engine reports. What this proves is the client side: the token callback
/// runs inside librdkafka and the handshake gets as far as the mechanism.
#[test]
fn msk_iam_signs_a_token_and_offers_it_over_tls() {
    let pki = pki("kafka-msk-iam");
    let (_broker, front) = broker_behind_tls(&pki);
    let dir = tempfile::tempdir().expect("temp dir");
    let extra = format!(
        "\n[kafka]\n{}[kafka.aws_msk_iam]\nregion = \"eu-west-1\"\n",
        trusting(dir.path(), &pki)
    );
    let stderr = failed_start(
        "kafka-msk-iam",
        &front.address,
        &extra,
        &[("ORDO_KAFKA_DEBUG", "security")],
    );
    assert!(
        !stderr.contains("No MSK IAM token"),
        "the token was signed:\n{stderr}"
    );
    assert!(
        stderr.contains("the brokers refused the connection") && stderr.contains("OAUTHBEARER"),
        "the mechanism offered is named:\n{stderr}"
    );
}
