//! A hostile plugin under a running engine, one attack per class: holding the thread (spin,
//! sleep, a clock subscription and `poll`, endless recursion), growing (memory, a flood of
//! random bytes, stdio streams), reaching out (files, sockets, environment, clock), flooding the
//! engine's outputs (a 2 MB field error, a 2 MB reject reason, a 500 KB record, a reason whose
//! letter cannot carry its event) and markup in its schema. For each: ingest answers within the
//! limit, the event is refused or dead-lettered with its reason, other keys keep flowing, the
//! group commits to the end of the topic, and the engine still shuts down at once.

mod common;

use std::time::{Duration, Instant};

use common::hostile::{
    attack_event, hostile_engine, letter_too_large_event, LIMIT_MS, MERGE_ATTACKS, VALIDATE_ATTACKS,
};
use common::{produce_raw, Engine};

/// How long ingest may take to refuse an attack: the limit, stretched by a starved host up to
/// the engine's wall-time cap (20×), plus a margin for the HTTP round trip.
const ANSWER_WITHIN: Duration = Duration::from_millis(LIMIT_MS * 20 + 1000);

#[tokio::test]
async fn every_attack_is_refused_in_time_with_its_reason_and_the_stream_flows_on() {
    let mut engine = hostile_engine("hostile");
    let topic = engine.names.topic.clone();

    // At ingest: each attack in `validate` is answered 422 within the limit, naming what the
    // plugin did; nothing is produced.
    for (attack, says) in VALIDATE_ATTACKS {
        let started = Instant::now();
        let (status, problem) = engine
            .post(&attack_event(&format!("in-{attack}"), attack))
            .await;
        let took = started.elapsed();
        println!("ingest {attack:>16}: {status} in {took:?}");
        assert_eq!(status, 422, "{attack}: {problem}");
        let text = problem.to_string();
        assert!(
            text.contains(says),
            "{attack}: {says:?} missing from {text}"
        );
        assert!(text.len() < 4096, "{attack}: a {} byte answer", text.len());
        assert!(took < ANSWER_WITHIN, "{attack} took {took:?}");
    }
    assert_eq!(engine.topic_size(), 0, "no attack was produced");

    // Straight from the topic, mixed with ordinary updates of other keys: every attack is
    // dead-lettered with its reason, every ordinary update is applied.
    let mut attacks = Vec::new();
    let mut produced = Vec::new();
    for (i, (attack, says)) in VALIDATE_ATTACKS.iter().chain(&MERGE_ATTACKS).enumerate() {
        let key = format!("t-{attack}");
        let at = produce_raw(&topic, &key, &attack_event(&key, attack)).await;
        attacks.push((at, *attack, *says));
        produced.push(at);
        let plain = format!("plain-{i}");
        let update = format!(r#"{{"PatientId":"{plain}","Name":"after {attack}"}}"#);
        produced.push(produce_raw(&topic, &plain, &update).await);
    }
    // An event so large that its dead letter cannot carry it as well as the reason: the letter
    // goes without it, naming where it lives.
    let key = "t-letter-too-large";
    let large_at = produce_raw(&topic, key, &letter_too_large_event(key)).await;
    produced.push(large_at);
    let started = Instant::now();
    engine.wait_all_committed(&produced).await;
    println!(
        "consumed {} events to the end in {:?}",
        produced.len(),
        started.elapsed()
    );

    for i in 0..VALIDATE_ATTACKS.len() + MERGE_ATTACKS.len() {
        let (status, record) = engine.get_json(&format!("/patientprofile/plain-{i}")).await;
        assert_eq!(status, 200, "plain-{i}: {record}");
    }
    let letters = common::read_dead_letters(&engine, attacks.len() + 1).await;
    let letter_at = |(partition, offset): (i32, i64), key: &str| {
        letters
            .iter()
            .find(|l| (l.partition, l.offset) == (partition, offset))
            .unwrap_or_else(|| {
                panic!("no dead letter for {key} at {partition}/{offset}: {letters:?}")
            })
            .clone()
    };
    for (at, attack, says) in &attacks {
        let letter = letter_at(*at, attack);
        assert!(
            letter.reason.contains(says),
            "{attack}: {says:?} missing from {letter:?}"
        );
        assert!(letter.headers_len < 4096, "{attack}: {letter:?}");
        assert!(
            letter.payload_len > 0 && letter.left_out.is_empty(),
            "{attack}: {letter:?}"
        );
    }
    let letter = letter_at(large_at, key);
    assert!(
        letter.reason.contains("[cut from 2097152 bytes]"),
        "{letter:?}"
    );
    assert_eq!(letter.payload_len, 0, "the event is left out: {letter:?}");
    assert!(letter.left_out.contains("too large"), "{letter:?}");

    // Nothing a plugin did holds the engine's shutdown.
    let started = Instant::now();
    let status = engine.terminate(Duration::from_secs(15));
    assert!(status.success(), "{}", engine.log());
    println!("shut down in {:?}", started.elapsed());
    let log = engine.log();
    assert!(
        log.lines().all(|line| line.len() < 8192),
        "no log line carries a flood"
    );
}

#[tokio::test]
async fn the_docs_page_runs_only_the_engines_scripts_whatever_the_schema_says() {
    let hostile = hostile_engine("hostile-docs");
    let plain = Engine::start("plain-docs");
    let page = hostile.get_text("/docs").await;
    let reference = plain.get_text("/docs").await;
    // The same script openings and closings as a plain plugin's page (the inlined Swagger
    // bundle holds a few in its own strings).
    for tag in ["<script", "</script>", "<!--", "-->"] {
        assert_eq!(
            page.matches(tag).count(),
            reference.matches(tag).count(),
            "{tag} in the hostile plugin's page"
        );
    }
    for raw in ["<script>window.ordoPwned", "<img src=x"] {
        assert!(!page.contains(raw), "{raw} landed raw in the page");
    }
    assert_eq!(
        page.matches("<!--").count(),
        reference.matches("<!--").count()
    );
    // The schema is still there, escaped.
    assert!(page.contains("window.ordoPwned"), "the schema is shown");
}
