//! Bulk ingest against the real local stack: `POST {route}` with `application/x-ndjson`, good
//! and bad lines mixed. (`ordo load` is unit-tested in `ops::load`; its end-to-end test is
//! issue 19's next step: on tansu 0.6 a backfill consumed while it lands starved the group
//! coordinator's heartbeats.)

mod common;

use std::collections::HashMap;

use common::{Engine, Rng, Workload};
use serde_json::Value;

/// Every 500th line is bad, in one of three ways.
fn bad_line(n: usize) -> Option<&'static str> {
    match n % 1500 {
        0 => Some("{not json"),
        500 => Some(r#"{"FirstName":"no key","UpdatedAt":"2006-01-02T15:00:00Z"}"#),
        1000 => Some(r#"{"PatientId":"bad","IsPregnant":true}"#),
        _ => None,
    }
}

/// `workload`'s events as a file body with a bad line every 500th, and the bad line numbers.
fn file_of(workload: &Workload) -> (String, Vec<usize>) {
    let mut text = String::new();
    let mut bad = Vec::new();
    let mut events = workload.events.iter();
    let mut n = 0;
    loop {
        n += 1;
        if let Some(line) = bad_line(n) {
            text.push_str(line);
            bad.push(n);
        } else {
            let Some((_, body)) = events.next() else {
                break;
            };
            text.push_str(body);
        }
        text.push('\n');
    }
    (text, bad)
}

#[tokio::test]
async fn a_bulk_post_takes_every_good_line_and_names_each_bad_one() {
    let engine = Engine::start("bulk");
    let mut rng = Rng::from_env();
    let workload = Workload::new(&mut rng, "bulk", 200, 5);
    let (text, bad) = file_of(&Workload {
        events: workload.events.clone(),
        newest: HashMap::new(),
    });
    let answer = reqwest::Client::new()
        .post(format!("{}/patientprofile", engine.url))
        .header("Content-Type", "application/x-ndjson")
        .body(text)
        .send()
        .await
        .expect("POST");
    assert_eq!(answer.status().as_u16(), 207);
    let answer: Value = answer.json().await.expect("JSON");
    assert_eq!(answer["accepted"], 1_000);
    assert_eq!(answer["rejected"], bad.len());
    let results = answer["results"].as_array().cloned().unwrap_or_default();
    let refused: Vec<usize> = results
        .iter()
        .filter(|r| r["status"] != 202)
        .filter_map(|r| r["line"].as_u64())
        .map(|n| n as usize)
        .collect();
    assert_eq!(refused, bad);
    let positions: Vec<(i32, i64)> = results
        .iter()
        .filter(|r| r["status"] == 202)
        .map(|r| {
            (
                r["partition"].as_i64().unwrap_or(-1) as i32,
                r["offset"].as_i64().unwrap_or(-1),
            )
        })
        .collect();
    engine.wait_all_committed(&positions).await;
    common::assert_newest(&engine, &workload.newest).await;
}
