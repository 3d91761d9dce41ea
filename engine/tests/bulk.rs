//! Bulk ingest against the real local stack: `POST {route}` with `application/x-ndjson`, good
//! and bad lines mixed. (`ordo load` has its own, `load.rs`.)

mod common;

use common::{ndjson_with_bad_lines, Engine, Rng, Workload};
use serde_json::Value;

#[tokio::test]
async fn a_bulk_post_takes_every_good_line_and_names_each_bad_one() {
    let engine = Engine::start("bulk");
    let mut rng = Rng::from_env();
    let workload = Workload::new(&mut rng, "bulk", 200, 5);
    let (text, bad) = ndjson_with_bad_lines(&workload.events);
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
