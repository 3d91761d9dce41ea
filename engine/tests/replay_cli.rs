//! `ordo replay` restores records from the topic; `ordo dlq replay` re-drives dead letters
//! once each.

mod common;

use std::time::{Duration, Instant};

use common::{produce_raw, Engine};

/// Runs `ordo` with `args` against the local stack; (success, stdout, stderr).
fn ordo(args: &[&str]) -> (bool, String, String) {
    let out = common::ordo_command()
        .args(args)
        .output()
        .expect("run ordo");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn event(key: &str, name: &str, at: &str) -> String {
    format!(r#"{{"PatientId":"{key}","FirstName":"{name}","UpdatedAt":"{at}"}}"#)
}

#[tokio::test]
async fn replay_restores_lost_records_and_leaves_newer_ones_alone() {
    let names = common::Names::unique("replay");
    let feed = format!("{}.changes", names.topic);
    let engine = Engine::builder(names)
        .extra(&format!("changes_topic = \"{feed}\""))
        .start();
    let mut produced = Vec::new();
    for key in ["r1", "r2", "r3"] {
        produced.push(
            engine
                .post_accepted(&event(key, "old", "2006-01-02T15:00:00Z"))
                .await,
        );
        produced.push(
            engine
                .post_accepted(&event(key, "new", "2006-01-02T16:00:00Z"))
                .await,
        );
    }
    engine.wait_all_committed(&produced).await;
    let dynamo = common::dynamodb().await;
    for key in ["r1", "r2"] {
        dynamo
            .delete_item()
            .table_name(&engine.names.table)
            .key(
                "PatientId",
                aws_sdk_dynamodb::types::AttributeValue::S(key.into()),
            )
            .send()
            .await
            .expect("delete, as a lost record");
    }
    let config = engine.config_path().display().to_string();
    let brokers = common::brokers();
    // Changes per key in the feed: the engine's first, then the replays'.
    let changes = |key: &str| {
        common::read_all(&brokers, &feed)
            .iter()
            .filter(|m| m.key.as_deref() == Some(key.as_bytes()))
            .count()
    };
    let before: Vec<usize> = ["r1", "r2", "r3"].iter().map(|k| changes(k)).collect();
    assert!(before.iter().all(|n| *n >= 1), "{before:?}");
    let mut first = true;
    for from in ["0", "2000-01-01T00:00:00Z"] {
        let (ok, out, err) = ordo(&[
            "replay",
            "patient-profile",
            "--from",
            from,
            "--config",
            &config,
            "--brokers",
            &brokers,
        ]);
        assert!(ok, "{out}\n{err}");
        assert!(out.contains(": 6 events,"), "from {from}: {out}\n{err}");
        for key in ["r1", "r2", "r3"] {
            let item = common::get_item(&dynamo, &engine.names.table, key)
                .await
                .unwrap_or_else(|| panic!("{key} restored"));
            assert_eq!(common::s(&item, "FirstName"), "new", "{key}");
        }
        if first {
            // The restored records' writes are in the feed. The record left alone is at most
            // published again, under the revision it had: its event was delivered again.
            let after: Vec<usize> = ["r1", "r2", "r3"].iter().map(|k| changes(k)).collect();
            assert!(
                after[0] > before[0] && after[1] > before[1],
                "{before:?} → {after:?}"
            );
            let revisions: Vec<String> = common::read_all(&brokers, &feed)
                .iter()
                .filter(|m| m.key.as_deref() == Some(&b"r3"[..]))
                .filter_map(|m| m.header("ordo-revision").map(String::from))
                .collect();
            assert!(after[2] <= before[2] + 1, "{before:?} → {after:?}");
            assert_eq!(
                revisions.last(),
                revisions.get(before[2] - 1),
                "{revisions:?}"
            );
            first = false;
        }
    }
    // From past the end there is nothing to do.
    let (ok, out, err) = ordo(&[
        "replay",
        "patient-profile",
        "--from",
        "1000",
        "--config",
        &config,
        "--brokers",
        &brokers,
    ]);
    assert!(ok && out.contains(": 0 events,"), "{out}\n{err}");
}

/// Waits until the dead-letter topic holds `n` letters.
async fn wait_letters(engine: &Engine, n: i64) {
    let topic = format!("{}.dlq", engine.names.topic);
    let deadline = Instant::now() + common::EFFECT_TIMEOUT;
    while common::topic_size(&engine.brokers, &topic) < n {
        assert!(Instant::now() < deadline, "never {n} dead letters");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn dlq_replay_re_drives_each_letter_once() {
    let engine = Engine::start("redrive");
    for key in ["d1", "d2"] {
        produce_raw(&engine.names.topic, key, "not json").await;
    }
    wait_letters(&engine, 2).await;
    let config = engine.config_path().display().to_string();
    let brokers = common::brokers();
    let run = || {
        ordo(&[
            "dlq",
            "replay",
            "patient-profile",
            "--config",
            &config,
            "--brokers",
            &brokers,
        ])
    };
    let (ok, out, err) = run();
    assert!(ok && out.contains(": 2 letters re-driven"), "{out}\n{err}");
    assert_eq!(
        engine.topic_size(),
        4,
        "the two letters went back to the topic"
    );
    // Still not JSON: dead-lettered again. A second run re-drives only those two new letters.
    wait_letters(&engine, 4).await;
    let (ok, out, err) = run();
    assert!(ok && out.contains(": 2 letters re-driven"), "{out}\n{err}");
    let (ok, out, err) = ordo(&[
        "dlq",
        "replay",
        "nope",
        "--config",
        &config,
        "--brokers",
        &brokers,
    ]);
    assert!(!ok && err.contains("no pipeline `nope`"), "{out}\n{err}");
}

#[tokio::test]
async fn tap_shows_each_event_and_the_plugins_decision() {
    let engine = Engine::start("tap");
    let mut produced = Vec::new();
    produced.push(
        engine
            .post_accepted(&event("t1", "new", "2006-01-02T16:00:00Z"))
            .await,
    );
    produced.push(
        engine
            .post_accepted(&event("t1", "old", "2006-01-02T15:00:00Z"))
            .await,
    );
    engine.wait_all_committed(&produced).await;
    let config = engine.config_path().display().to_string();
    let (ok, out, err) = ordo(&[
        "tap",
        "patient-profile",
        "--from-beginning",
        "--limit",
        "2",
        "--config",
        &config,
        "--brokers",
        &common::brokers(),
    ]);
    assert!(ok, "{out}\n{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    // Against the stored record (the newer one), both read as stale or tie: nothing is written.
    assert!(lines.iter().all(|l| l.contains("key t1")), "{out}");
    assert!(lines[1].contains("skip"), "{out}");
    let item = common::get_item(&common::dynamodb().await, &engine.names.table, "t1")
        .await
        .expect("record");
    assert_eq!(
        common::s(&item, "FirstName"),
        "new",
        "the tap wrote nothing"
    );
}
