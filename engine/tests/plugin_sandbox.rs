//! A hostile plugin under a running engine: each attack is cut off, the event is refused (422
//! at ingest, dead-lettered with the reason when it came straight from the topic), and the
//! engine keeps applying other events.

mod common;

use common::{produce_raw, Engine, Names};

#[tokio::test]
async fn attacks_are_refused_with_their_reason_and_other_events_still_apply() {
    let engine = Engine::builder(Names::unique("hostile"))
        .plugin(&common::hostile_plugin())
        // Fuel to spare, so the time limit (CPU time) and the memory cap are what stop the attacks.
        .extra("plugin_fuel = 100000000000\nplugin_timeout_ms = 50\nplugin_memory_mib = 8")
        .start();
    let topic = engine.names.topic.clone();

    // At ingest: the plugin fails on this body, so the body is refused; nothing is produced.
    let (status, problem) = engine.post(r#"{"PatientId":"h0","attack":"loop"}"#).await;
    assert_eq!(status, 422, "{problem}");
    assert!(
        problem["detail"]
            .as_str()
            .is_some_and(|d| d.contains("time limit (50 ms")),
        "{problem}"
    );
    assert_eq!(engine.topic_size(), 0);

    // Straight from the topic: each attack is dead-lettered, the plain event is applied.
    let mut produced = Vec::new();
    // One key, so one partition: the dead letters' original offsets tell them apart.
    for attack in ["loop", "alloc", "trap"] {
        let body = format!(r#"{{"PatientId":"h1","attack":"{attack}"}}"#);
        produced.push(produce_raw(&topic, "h1", &body).await);
    }
    produced.push(produce_raw(&topic, "h4", r#"{"PatientId":"h4","Name":"fine"}"#).await);
    engine.wait_all_committed(&produced).await;

    let (status, record) = engine.get_json("/patientprofile/h4").await;
    assert_eq!(status, 200, "{record}");
    assert_eq!(record["Name"], "fine");

    let letters = common::read_dead_letters(&engine, 3).await;
    let reason_of = |offset: i64| {
        letters
            .iter()
            .find(|l| l.0 == offset)
            .map(|l| l.1.clone())
            .unwrap_or_else(|| panic!("no dead letter for offset {offset}: {letters:?}"))
    };
    let by_key: Vec<String> = produced[..3].iter().map(|&(_, o)| reason_of(o)).collect();
    assert!(by_key[0].contains("time limit (50 ms"), "{by_key:?}");
    assert!(by_key[1].contains("memory limit (8 MiB"), "{by_key:?}");
    assert!(by_key[2].contains("trapped"), "{by_key:?}");
}
