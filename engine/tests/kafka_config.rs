//! The `[kafka]` table: librdkafka properties every client gets, secrets from the environment
//! or a file, and every wrong property named by `ordo validate` without its value.

mod common;

use common::{Engine, Names};

#[tokio::test]
async fn properties_and_secrets_reach_every_client_and_the_seed_round_trips() {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("rack"), "rack-from-file\n").expect("write");
    let engine = Engine::builder(Names::unique("kafka-props"))
        .env("ORDO_TEST_KAFKA_TIMEOUT", "45000")
        .extra(&format!(
            r#"
[kafka]
"socket.keepalive.enable" = true
"socket.timeout.ms" = "${{env:ORDO_TEST_KAFKA_TIMEOUT}}"
"client.rack" = "${{file:{}}}"
"#,
            dir.path().join("rack").display()
        ))
        .start();
    let written = engine
        .post_accepted(r#"{ "PatientId": "k1", "FirstName": "John", "LastName": "Doe", "IsPregnant": "False", "Sex": "Female"}"#)
        .await;
    engine.wait_all_committed(&[written]).await;
    let (status, record) = engine.get_json("/patientprofile/k1").await;
    assert_eq!(status, 200, "{record}");
    assert!(
        !engine.log().contains("rack-from-file"),
        "no property value in the log"
    );
}

#[test]
fn validate_names_each_wrong_property_and_never_its_value() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = common::pipelines_file(
        dir.path(),
        &common::lww_plugin(),
        r#"
[kafka]
"sasl.password" = "${env:ORDO_TEST_KAFKA_NOT_SET}"
"sasl.mechanisms" = "PLAIN"
"bootstrap.servers" = "elsewhere:9092"
"not.a.property" = "top-secret-value"
"#,
    );
    let out = common::ordo_command()
        .args(["validate", "--no-environment"])
        .arg(&config)
        .output()
        .expect("run ordo validate");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{text}");
    for expected in [
        "`kafka.\"sasl.password\"` names the environment variable `ORDO_TEST_KAFKA_NOT_SET`, which is not set",
        "`kafka.\"bootstrap.servers\"` cannot be set here: it is set by --brokers or KAFKA_BROKERS",
        "`kafka.\"not.a.property\"` is not a librdkafka property",
    ] {
        assert!(text.contains(expected), "{expected} missing from:\n{text}");
    }
    assert!(!text.contains("top-secret-value"), "{text}");
}

#[tokio::test]
async fn topic_config_is_set_at_creation_and_an_existing_topics_difference_is_warned_about() {
    use ordo::bus::kafka::{topic_config_differences, KafkaConfig};
    let names = Names::unique("topic-config");
    let engine = Engine::builder(names.clone())
        .extra(r#"topic_config = { "retention.ms" = "3600000", "max.message.bytes" = 2000000 }"#)
        .start();
    let kafka = KafkaConfig::new(&common::brokers());
    let wanted = |retention: &str| {
        vec![
            ("retention.ms".to_string(), retention.to_string()),
            ("max.message.bytes".to_string(), "2000000".to_string()),
        ]
    };
    let created = topic_config_differences(&kafka, &names.topic, &wanted("3600000"))
        .await
        .expect("describe configs");
    assert!(created.is_empty(), "set at creation: {created:?}");
    drop(engine);

    // The topic exists: another value is checked against it, warned about, not applied.
    let again = Engine::builder(names.clone())
        .extra(r#"topic_config = { "retention.ms" = "7200000" }"#)
        .start();
    let log = again.log();
    assert!(
        log.contains("topic_config `retention.ms` is \"7200000\" in the pipelines file but \"3600000\" on the topic"),
        "{log}"
    );
    let kept = topic_config_differences(&kafka, &names.topic, &wanted("3600000"))
        .await
        .expect("describe configs");
    assert!(kept.is_empty(), "unchanged: {kept:?}");
}

#[test]
fn a_secret_written_in_the_file_is_refused_unless_allowed() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = common::pipelines_file(
        dir.path(),
        &common::lww_plugin(),
        r#"
[kafka]
"sasl.username" = "ordo"
"sasl.password" = "hunter2-literal"
"#,
    );
    let validate = |allow: bool| {
        let mut command = common::ordo_command();
        command.args(["validate", "--no-environment"]);
        if allow {
            command.arg("--allow-literal-secrets");
        }
        let out = command.arg(&config).output().expect("run ordo validate");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let (ok, text) = validate(false);
    assert!(!ok, "{text}");
    assert!(
        text.contains("kafka.\"sasl.password\": a secret written as it is"),
        "{text}"
    );
    assert!(!text.contains("hunter2-literal"), "{text}");
    let (ok, text) = validate(true);
    assert!(ok, "{text}");
    // The engine refuses to start on it as well, naming the property and not the value.
    let out = common::ordo_command()
        .args(["run", "--config"])
        .arg(&config)
        .args(["--listen", "127.0.0.1:0"])
        .output()
        .expect("run ordo");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("sasl.password") && stderr.contains("--allow-literal-secrets"),
        "{stderr}"
    );
    assert!(!stderr.contains("hunter2-literal"), "{stderr}");
}
