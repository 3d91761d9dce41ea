//! `make soak MINUTES=30`: two engines on the real stack take a steady stream of updates
//! while a nemesis, every 5–30 s, picks a fault: SIGKILL an engine and restart it, SIGSTOP it
//! and later SIGCONT, restart the broker, refuse or throttle DynamoDB through a proxy, or swap
//! the plugin (Rust last-writer-wins ↔ the same policy in Python). The client sends each
//! update through HTTP to either engine and retries a 5xx, a 409 or no answer with the same
//! `Idempotency-Key`, as a real client would.
//!
//! At the end the fault suite's independent checker ([`common::ledger::check`]) reads the
//! topic, the dead-letter topic and the table, and the run prints (and writes to
//! `ORDO_SOAK_REPORT`, by default `soak-report.md` in the target dir) one line per fault
//! kind: the events acknowledged while it was in force or recovering, what the audit trail
//! says became of them, and what the checker found lost or wrong. Not in `make test`: it runs
//! for as long as it is told.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use common::{Counts, Engine, Exact, FaultProxy, Ledger, Names, PrivateBroker, Rng, Workload};
use serde_json::Value;

/// Updates per second the client sends.
const RATE: u64 = 20;
/// Patients the stream updates.
const PATIENTS: usize = 50;
/// How long after a fault ends its recovery counts as part of it.
const RECOVERY: Duration = Duration::from_secs(10);

/// The fault kinds, as the report names them.
const KINDS: [&str; 6] = [
    "engine killed and restarted",
    "engine paused (SIGSTOP, SIGCONT)",
    "broker restarted",
    "DynamoDB refusing connections",
    "DynamoDB throttling",
    "plugin swapped",
];

/// Where the client's requests go: the engines serving now.
type Targets = Arc<RwLock<Vec<Option<String>>>>;

/// One acknowledged event: when it was first sent and acknowledged.
#[derive(Debug, Clone)]
struct Sent {
    id: String,
    key: String,
    first_sent: Instant,
    acked: Instant,
}

#[tokio::test]
#[ignore = "a long run: make soak MINUTES=30"]
async fn soak() {
    let minutes: f64 = std::env::var("ORDO_SOAK_MINUTES")
        .ok()
        .and_then(|m| m.parse().ok())
        .unwrap_or(30.0);
    let until = Instant::now() + Duration::from_secs_f64(minutes * 60.0);
    let mut broker = PrivateBroker::start();
    let mut proxy = FaultProxy::start(
        &std::env::var("AWS_ENDPOINT_URL").unwrap_or_else(|_| "http://127.0.0.1:4566".into()),
    )
    .await;
    let dir = tempfile::tempdir().expect("temp dir");
    let plugin = dir.path().join("policy.wasm");
    let policies = [
        common::lww_plugin(),
        common::built_plugin("patient_profile_lww_py"),
    ];
    install(&policies[0], &plugin);
    let names = Names::unique("soak");
    let (brokers, endpoint, policy) = (
        broker.address.clone(),
        proxy.endpoint.clone(),
        plugin.clone(),
    );
    let start = move |names: &Names| {
        Engine::builder(names.clone())
            .brokers(&brokers)
            .env("AWS_ENDPOINT_URL", &endpoint)
            .plugin(&policy)
            .start()
    };
    let mut engines = [start(&names), start(&names)];
    let targets: Targets = Arc::new(RwLock::new(
        engines.iter().map(|e| Some(e.url.clone())).collect(),
    ));
    let ledger = Ledger::default();
    let sent: Arc<RwLock<Vec<Sent>>> = Arc::default();
    let mut rng = Rng::from_env();
    let updates = (minutes * 60.0 * RATE as f64 / PATIENTS as f64) as usize + 10;
    let workload = Workload::new(&mut rng, "soak", PATIENTS, updates);
    let client = tokio::spawn(stream(
        workload.events,
        until,
        Arc::clone(&targets),
        ledger.clone(),
        Arc::clone(&sent),
    ));

    // The nemesis.
    let mut windows: Vec<(&str, Instant, Instant)> = Vec::new();
    let mut gone = Vec::new();
    let mut swapped = 0;
    loop {
        let pause = Duration::from_secs(5 + rng.below(26) as u64);
        if Instant::now() + pause + Duration::from_secs(10) >= until {
            break;
        }
        tokio::time::sleep(pause).await;
        let kind = KINDS[rng.below(KINDS.len())];
        let lasting = Duration::from_secs(2 + rng.below(9) as u64);
        let began = Instant::now();
        let i = rng.below(engines.len());
        match kind {
            "engine killed and restarted" => {
                set(&targets, i, None);
                gone.push(Counts::of(&engines[i]).await);
                engines[i].kill();
                engines[i] = start(&names);
                set(&targets, i, Some(&engines[i]));
            }
            "engine paused (SIGSTOP, SIGCONT)" => {
                engines[i].signal("STOP");
                tokio::time::sleep(lasting).await;
                engines[i].signal("CONT");
            }
            "broker restarted" => {
                broker.stop();
                tokio::time::sleep(lasting).await;
                broker.restart();
            }
            "DynamoDB refusing connections" => {
                proxy.refuse().await;
                tokio::time::sleep(lasting).await;
                proxy.listen().await;
            }
            "DynamoDB throttling" => {
                proxy.throttle(true);
                tokio::time::sleep(lasting).await;
                proxy.throttle(false);
            }
            _ => {
                swapped += 1;
                install(&policies[swapped % policies.len()], &plugin);
            }
        }
        println!("soak: {kind} ({:.0} s)", began.elapsed().as_secs_f64());
        windows.push((kind, began, Instant::now() + RECOVERY));
    }
    client.await.expect("the client ran");
    // Every engine runs at the end (a paused one was resumed): the checker reads the rest.
    let dynamo = common::dynamodb().await;
    let alive: Vec<&Engine> = engines.iter().collect();
    let found = common::ledger::check(
        &engines[0],
        &dynamo,
        &ledger,
        &alive,
        &gone,
        Exact::Bounds,
        Duration::from_secs(10),
    )
    .await;
    let report = report(
        &engines[0],
        &found,
        &sent.read().expect("sent"),
        &windows,
        minutes,
    );
    println!("{report}");
    let path = std::env::var("ORDO_SOAK_REPORT").unwrap_or_else(|_| {
        let target = std::env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| "target".into());
        format!("{target}/soak-report.md")
    });
    std::fs::write(&path, &report).expect("write the report");
    println!("soak: report written to {path}");
    assert!(found.unaccounted.is_empty(), "{:#?}", found.unaccounted);
    assert!(found.wrong.is_empty(), "{:#?}", found.wrong);
    assert_eq!(
        found.late_letters, 0,
        "a letter arrived after everything settled"
    );
    assert!(found.disagreements.is_empty(), "{:#?}", found.disagreements);
}

/// Sends `events` at [`RATE`] per second until `until`, each to an engine of `targets` in
/// turn, retrying with the same `Idempotency-Key` until one answers 202.
async fn stream(
    events: Vec<(String, String)>,
    until: Instant,
    targets: Targets,
    ledger: Ledger,
    sent: Arc<RwLock<Vec<Sent>>>,
) {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .expect("HTTP client");
    let mut tick = tokio::time::interval(Duration::from_millis(1000 / RATE));
    let mut tasks = tokio::task::JoinSet::new();
    for (n, (key, body)) in events.into_iter().enumerate() {
        tick.tick().await;
        if Instant::now() >= until {
            break;
        }
        let (http, targets, ledger, sent) = (
            http.clone(),
            Arc::clone(&targets),
            ledger.clone(),
            Arc::clone(&sent),
        );
        tasks.spawn(async move {
            let id = format!("soak-{n}");
            let first_sent = Instant::now();
            for attempt in n.. {
                let url = {
                    let targets = targets.read().expect("targets");
                    targets[attempt % targets.len()].clone()
                };
                let answer = match url {
                    Some(url) => http
                        .post(format!("{url}/patientprofile"))
                        .header("Content-Type", "application/json")
                        .header("Idempotency-Key", &id)
                        .header("X-Request-Id", &id)
                        .body(body.clone())
                        .send()
                        .await
                        .ok(),
                    None => None,
                };
                match answer.as_ref().map(|a| a.status().as_u16()) {
                    Some(202) => {
                        let accepted: Value = answer
                            .expect("an answer")
                            .json()
                            .await
                            .expect("202 is JSON");
                        let at = (
                            accepted["partition"].as_i64().expect("partition") as i32,
                            accepted["offset"].as_i64().expect("offset"),
                        );
                        ledger.update(&id, &body, at);
                        sent.write().expect("sent").push(Sent {
                            id,
                            key,
                            first_sent,
                            acked: Instant::now(),
                        });
                        return;
                    }
                    Some(status) if status >= 500 || status == 409 => {}
                    Some(status) => panic!("unexpected answer {status} to a valid event"),
                    None => {}
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.expect("a send");
    }
}

/// The report: one line per fault kind (and one for the quiet stretches between faults).
fn report(
    engine: &Engine,
    found: &common::Found,
    sent: &[Sent],
    windows: &[(&str, Instant, Instant)],
    minutes: f64,
) -> String {
    // What the audit trail says became of each event (its last word).
    let mut became: HashMap<String, String> = HashMap::new();
    for record in common::read_all_json(&engine.brokers, &engine.audit_topic()) {
        if let (Some(id), Some(action)) = (record["request_id"].as_str(), record["action"].as_str())
        {
            if matches!(action, "apply" | "skip" | "dead-letter") {
                became.insert(id.to_string(), action.to_string());
            }
        }
    }
    let lost: Vec<&str> = found
        .unaccounted
        .iter()
        .filter_map(|u| u.split(':').next())
        .collect();
    let wrong_keys: Vec<&str> = found
        .wrong
        .iter()
        .filter_map(|w| w.strip_prefix("key ").and_then(|w| w.split(':').next()))
        .collect();
    let mut rows: BTreeMap<&str, [usize; 6]> = BTreeMap::new();
    for event in sent {
        let kinds: Vec<&str> = windows
            .iter()
            .filter(|(_, from, to)| event.acked >= *from && event.first_sent <= *to)
            .map(|(k, _, _)| *k)
            .collect();
        let kinds = if kinds.is_empty() {
            vec!["(no fault)"]
        } else {
            kinds
        };
        for kind in kinds {
            let row = rows.entry(kind).or_default();
            row[0] += 1;
            match became.get(&event.id).map(String::as_str) {
                Some("apply") => row[1] += 1,
                Some("skip") => row[2] += 1,
                Some(_) => row[3] += 1,
                None => {}
            }
            row[4] += usize::from(lost.contains(&event.id.as_str()));
            row[5] += usize::from(wrong_keys.contains(&event.key.as_str()));
        }
    }
    let mut text = format!(
        "Soak: {minutes} min, two engines, {RATE} updates/s to {PATIENTS} patients; {} faults; {} events acknowledged, {} lost, {} records wrong, {} late letters, metrics: {}.\n\n",
        windows.len(),
        found.sent,
        found.unaccounted.len(),
        found.wrong.len(),
        found.late_letters,
        if found.disagreements.is_empty() { "agree" } else { "DISAGREE" },
    );
    text.push_str("| fault (in force or recovering) | times | events | applied | skipped | dead-lettered | lost | wrong |\n|---|---|---|---|---|---|---|---|\n");
    for (kind, row) in &rows {
        let times = windows.iter().filter(|(k, _, _)| k == kind).count();
        text.push_str(&format!(
            "| {kind} | {times} | {} | {} | {} | {} | {} | {} |\n",
            row[0], row[1], row[2], row[3], row[4], row[5]
        ));
    }
    text.push_str("\nApplied, skipped and dead-lettered are the audit trail's last word on each event; lost and wrong are the independent checker's (an event counts under every fault whose window, from its start to 10 s after its end, overlaps the event's time from first send to acknowledgement; wrong counts events of a key whose record is wrong).\n");
    text
}

/// Points request slot `i` at `engine`, or at nothing.
fn set(targets: &Targets, i: usize, engine: Option<&Engine>) {
    if let Ok(mut t) = targets.write() {
        t[i] = engine.map(|e| e.url.clone());
    }
}

/// Replaces `target` with `source` by an atomic rename.
fn install(source: &Path, target: &Path) {
    let staging = target.with_extension("staging");
    std::fs::copy(source, &staging).expect("copy plugin");
    std::fs::rename(&staging, target).expect("rename into place");
}
