//! The fault suite: a steady stream of keyed updates, half through HTTP and half straight to
//! the topic, in shuffled order, while one fault is injected per scenario. Each event carries
//! a request id of its own (`X-Request-Id`, or the `ordo-request-id` header), so afterwards
//! every event is accounted for from the audit trail: applied, skipped as stale or
//! dead-lettered, none missing. The counts are checked against the engine's own metrics and
//! the table's revisions, and every record must equal, field by field, what the pipeline's
//! plugin gives when its key's events are merged in version order (an oracle computed here,
//! with the plugin files themselves, following which plugin decided each event).
//!
//! Each scenario prints one line:
//!
//! `fault <name>: sent N (R retried), applied A, skipped S, dead-lettered D, unaccounted U, wrong W, recovered in T`
//!
//! `make test` runs it at the short scale; `make chaos` sets `ORDO_CHAOS_SCALE=5` (five times
//! the events, outages of 30 s instead of 10). Run alone and in order (`--test-threads=1`):
//! scenarios share the machine's two cores.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use common::hostile::{attack_event, letter_too_large_event, MERGE_ATTACKS, VALIDATE_ATTACKS};
use common::{Engine, FaultProxy, Names, PrivateBroker, PrivateDynamo, Rng, Workload};
use ordo::plugin::sandbox::{Capabilities, Limits};
use ordo::plugin::wasm::{content_id, WasmPolicy};
use ordo::plugin::{Decision, Policy};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::util::Timeout;
use rdkafka::ClientConfig;
use serde_json::Value;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// Patients per stream.
const PATIENTS: usize = 20;

/// Events per scenario scale with `ORDO_CHAOS_SCALE` (default 1).
fn scale() -> usize {
    std::env::var("ORDO_CHAOS_SCALE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1)
        .max(1)
}

/// How long each outage lasts: 10 s at the short scale, 30 s at `make chaos`'s.
fn outage() -> Duration {
    Duration::from_secs(if scale() > 1 { 30 } else { 10 })
}

/// Where the stream's HTTP half goes: the engine now serving, or none while it is down.
type Target = Arc<RwLock<Option<String>>>;

/// One event of a stream.
#[derive(Debug, Clone)]
struct Event {
    /// Its request id.
    id: String,
    /// The patient.
    key: String,
    /// The JSON body.
    body: String,
}

/// What the stream did.
#[derive(Debug, Default)]
struct Sent {
    /// (partition, offset) of every acknowledged event.
    acked: Vec<(i32, i64)>,
    /// Attempts answered 503 or not answered at all, then retried.
    retried: usize,
}

/// Sends `events` in order, every other one through HTTP (retrying a 503 or a refused
/// connection until it gets a 202) and the rest straight to the topic with acks=all, pausing
/// `pace` between events. `done` counts events acknowledged so far.
async fn stream(
    events: Vec<Event>,
    target: Target,
    brokers: String,
    topic: String,
    pace: Duration,
    done: Arc<AtomicUsize>,
) -> Sent {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("partitioner", "murmur2_random")
        .set("message.timeout.ms", "120000")
        .create()
        .expect("stream producer");
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("HTTP client");
    let mut sent = Sent::default();
    for (i, event) in events.iter().enumerate() {
        let position = if i % 2 == 0 {
            loop {
                let url = target.read().ok().and_then(|t| t.clone());
                let answer = match url {
                    Some(url) => http
                        .post(format!("{url}/patientprofile"))
                        .header("Content-Type", "application/json")
                        .header("X-Request-Id", &event.id)
                        .body(event.body.clone())
                        .send()
                        .await
                        .ok(),
                    None => None,
                };
                match answer {
                    Some(r) if r.status().as_u16() == 202 => {
                        let accepted: Value = r.json().await.expect("202 is JSON");
                        break (
                            accepted["partition"].as_i64().expect("partition") as i32,
                            accepted["offset"].as_i64().expect("offset"),
                        );
                    }
                    Some(r) if r.status().as_u16() == 503 => {
                        assert!(
                            r.headers().contains_key("retry-after"),
                            "a 503 says when to retry"
                        );
                    }
                    Some(r) => panic!(
                        "unexpected answer {} to a valid event: {}",
                        r.status(),
                        r.text().await.unwrap_or_default()
                    ),
                    None => {}
                }
                sent.retried += 1;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        } else {
            loop {
                let headers = OwnedHeaders::new().insert(Header {
                    key: "ordo-request-id",
                    value: Some(event.id.as_str()),
                });
                let record = FutureRecord::to(&topic)
                    .key(&event.key)
                    .payload(&event.body)
                    .headers(headers);
                match producer
                    .send(record, Timeout::After(Duration::from_secs(120)))
                    .await
                {
                    Ok(delivery) => break (delivery.partition, delivery.offset),
                    Err(_) => sent.retried += 1,
                }
            }
        };
        sent.acked.push(position);
        done.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(pace).await;
    }
    sent
}

/// The workload's events, each with a request id `<label>-<n>`.
fn events_of(label: &str, workload: &Workload) -> Vec<Event> {
    workload
        .events
        .iter()
        .enumerate()
        .map(|(n, (key, body))| Event {
            id: format!("{label}-{n}"),
            key: key.clone(),
            body: body.clone(),
        })
        .collect()
}

/// Partial updates of the workload's patients (`<label>-<p>`): each sets a random non-empty
/// subset of the profile's fields, at instants between those of the whole updates and past
/// them (3 ms apart, where whole updates are 1 ms apart), shuffled.
fn partial_updates(rng: &mut Rng, label: &str, updates: usize) -> Vec<Event> {
    let fields = ["FirstName", "LastName", "IsPregnant", "Sex"];
    let base = 1_136_214_000_000_000_000i128 + 500_000; // half a step after the whole ones
    let mut events = Vec::new();
    for p in 0..PATIENTS {
        let key = format!("{label}-{p}");
        for step in 0..updates as i128 {
            let instant = OffsetDateTime::from_unix_timestamp_nanos(base + step * 3_000_000)
                .expect("instant");
            let mut body = serde_json::Map::new();
            body.insert("PatientId".into(), key.clone().into());
            body.insert(
                "UpdatedAt".into(),
                instant.format(&Rfc3339).expect("format").into(),
            );
            let mask = 1 + rng.below((1 << fields.len()) - 1);
            for (bit, field) in fields.iter().enumerate() {
                if mask & (1 << bit) != 0 {
                    body.insert((*field).into(), format!("{field}-p{step}").into());
                }
            }
            events.push(Event {
                id: format!("{label}-partial-{p}-{step}"),
                key: key.clone(),
                body: Value::Object(body).to_string(),
            });
        }
    }
    rng.shuffle(&mut events);
    events
}

/// A running stream and what it needs to be checked.
struct Run {
    events: Vec<Event>,
    done: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<Sent>,
    started: Instant,
}

/// What a scenario expects besides "every event accounted for, every record right".
struct Expect<'a> {
    /// The engines whose metrics count the events (the first one's names are read).
    engines: Vec<&'a Engine>,
    /// Whether their counts must equal the audit trail's (false when an engine died or left
    /// meanwhile: its counts went with it).
    exact: bool,
    /// Messages expected in the dead-letter topic (the stream's events are never among them).
    dead_letters: i64,
    /// The plugin files in force, in the order they were.
    plugins: Vec<PathBuf>,
}

impl<'a> Expect<'a> {
    /// One engine throughout, the patient-profile LWW plugin, no dead letters.
    fn one(engine: &'a Engine) -> Self {
        Self::some(vec![engine], true)
    }

    /// These engines, counts exact or not.
    fn some(engines: Vec<&'a Engine>, exact: bool) -> Self {
        Self {
            engines,
            exact,
            dead_letters: 0,
            plugins: vec![common::lww_plugin()],
        }
    }
}

/// Per event: its audit records' actions, and the plugin of the first.
#[derive(Debug, Default, Clone)]
struct Trail {
    actions: Vec<String>,
    plugin: String,
}

impl Run {
    /// Starts streaming the default workload (scaled) to `engine`'s pipeline.
    fn start(engine: &Engine, target: &Target, label: &str) -> Self {
        let mut rng = Rng::from_env();
        let workload = Workload::new(&mut rng, label, PATIENTS, 10 * scale());
        Self::start_events(engine, target, events_of(label, &workload))
    }

    /// Starts streaming `events` to `engine`'s pipeline.
    fn start_events(engine: &Engine, target: &Target, events: Vec<Event>) -> Self {
        let done = Arc::new(AtomicUsize::new(0));
        let task = tokio::spawn(stream(
            events.clone(),
            Arc::clone(target),
            engine.brokers.clone(),
            engine.names.topic.clone(),
            Duration::from_millis(10),
            Arc::clone(&done),
        ));
        Self {
            events,
            done,
            task,
            started: Instant::now(),
        }
    }

    /// This stream and `next` (started after it) as one, to be finished and accounted for
    /// together; `next` counts its progress.
    fn then(self, next: Run) -> Run {
        let first = self.task;
        Run {
            events: self.events.into_iter().chain(next.events).collect(),
            done: next.done,
            task: tokio::spawn(async move {
                let sent = first.await.expect("the first stream ran");
                let mut rest = next.task.await.expect("the next stream ran");
                rest.acked.extend(sent.acked);
                rest.retried += sent.retried;
                rest
            }),
            started: next.started,
        }
    }

    /// Waits until `fraction` of the events are acknowledged.
    async fn reach(&self, fraction: f64) {
        let goal = (self.events.len() as f64 * fraction) as usize;
        while self.done.load(Ordering::SeqCst) < goal {
            assert!(
                self.started.elapsed() < Duration::from_secs(300),
                "the stream stalled at {} of {goal}",
                self.done.load(Ordering::SeqCst)
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Lets the stream finish, waits until the group committed all of it, accounts for every
    /// event, checks every record against the oracle, and returns the scenario's line.
    /// `lifted` is when the fault ended.
    async fn finish(self, name: &str, lifted: Instant, expect: Expect<'_>) -> String {
        self.finish_on(name, lifted, expect, &common::dynamodb().await)
            .await
    }

    /// As [`Run::finish`], reading the table through `dynamo`.
    async fn finish_on(
        self,
        name: &str,
        lifted: Instant,
        expect: Expect<'_>,
        dynamo: &aws_sdk_dynamodb::Client,
    ) -> String {
        let engine = expect.engines[0];
        let sent = self.task.await.expect("the stream ran");
        engine.wait_all_committed(&sent.acked).await;
        let recovered = lifted.elapsed();
        let dlq = dead_letters(engine, expect.dead_letters).await;
        // Every event's record is written before its offset is committed: the trail is whole.
        let trail = trail_of(engine);
        let mut counts: HashMap<&str, usize> = HashMap::new();
        let mut unaccounted = Vec::new();
        for event in &self.events {
            match trail.get(&event.id).and_then(|t| t.actions.last()) {
                Some(action) => *counts.entry(action_name(action)).or_default() += 1,
                None => unaccounted.push(event.id.clone()),
            }
        }
        let wrong = wrong_records(dynamo, engine, &self.events, &trail, &expect.plugins).await;
        let count = |k: &str| counts.get(k).copied().unwrap_or(0);
        let line = format!(
            "fault {name}: sent {} ({} retried), applied {}, skipped {}, dead-lettered {} (topic {dlq}), unaccounted {}, wrong {}, recovered in {:.1}s",
            sent.acked.len(),
            sent.retried,
            count("applied"),
            count("skipped"),
            count("dead-lettered"),
            unaccounted.len(),
            wrong.len(),
            recovered.as_secs_f64()
        );
        println!("{line}");
        assert!(
            unaccounted.is_empty(),
            "{line}: no audit record for {unaccounted:?}\nlog:\n{}",
            engine.log()
        );
        assert!(
            wrong.is_empty(),
            "{line}: {wrong:#?}\nlog:\n{}",
            engine.log()
        );
        assert_eq!(
            count("dead-lettered"),
            0,
            "{line}: a valid event dead-lettered"
        );
        assert_eq!(dlq, expect.dead_letters, "{line}: the dead-letter topic");
        if expect.exact {
            check_metrics(&expect, &trail).await;
        }
        line
    }
}

/// The dead-letter topic's size once `expected` letters arrived (more would fail the
/// caller's assertion), or after 30 s.
async fn dead_letters(engine: &Engine, expected: i64) -> i64 {
    let topic = format!("{}.dlq", engine.names.topic);
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut dlq = common::topic_size(&engine.brokers, &topic);
    while dlq < expected && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
        dlq = common::topic_size(&engine.brokers, &topic);
    }
    dlq
}

/// The label of an audit action, as the metrics name the outcome.
fn action_name(action: &str) -> &'static str {
    match action {
        "apply" => "applied",
        "skip" => "skipped",
        _ => "dead-lettered",
    }
}

/// The audit trail of `engine`'s pipeline: per request id, what became of the event.
fn trail_of(engine: &Engine) -> HashMap<String, Trail> {
    let mut trail: HashMap<String, Trail> = HashMap::new();
    for record in common::read_all_json(&engine.brokers, &engine.audit_topic()) {
        let action = record["action"].as_str().unwrap_or_default();
        if !matches!(action, "apply" | "skip" | "dead-letter") {
            continue;
        }
        let id = record["request_id"]
            .as_str()
            .unwrap_or("(none)")
            .to_string();
        let entry = trail.entry(id).or_default();
        if entry.actions.is_empty() {
            entry.plugin = record["plugin"].as_str().unwrap_or_default().to_string();
        }
        entry.actions.push(action.to_string());
    }
    trail
}

/// The engines' `ordo_events_total` must equal the audit trail's records, outcome by
/// outcome (each engine counts what it settled; the trail has a record per settlement).
async fn check_metrics(expect: &Expect<'_>, trail: &HashMap<String, Trail>) {
    let mut recorded: HashMap<&str, u64> = HashMap::new();
    for t in trail.values() {
        for action in &t.actions {
            *recorded.entry(action_name(action)).or_default() += 1;
        }
    }
    for (outcome, name) in [
        ("applied", "applied"),
        ("skipped_stale", "skipped"),
        ("dead_lettered", "dead-lettered"),
    ] {
        let mut reported = 0;
        for engine in &expect.engines {
            let labels = format!(",outcome=\"{outcome}\"");
            reported += metric(engine, "ordo_events_total", &labels).await;
        }
        let audited = recorded.get(name).copied().unwrap_or(0);
        assert_eq!(
            reported, audited,
            "{outcome}: the engines report {reported}, the audit trail holds {audited}"
        );
    }
}

/// The value of the sample `name{pipeline="patient-profile"<labels>}` in `engine`'s metrics.
async fn metric(engine: &Engine, name: &str, labels: &str) -> u64 {
    let sample = format!("{name}{{pipeline=\"patient-profile\"{labels}}} ");
    engine
        .get_text("/metrics")
        .await
        .lines()
        .find_map(|l| l.strip_prefix(&sample))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no sample {sample} in /metrics"))
}

/// The instant of an event's `UpdatedAt`.
fn version_of(body: &str) -> OffsetDateTime {
    let value: Value = serde_json::from_str(body).expect("JSON event");
    OffsetDateTime::parse(value["UpdatedAt"].as_str().expect("UpdatedAt"), &Rfc3339)
        .expect("an RFC 3339 instant")
}

/// Keys whose record differs from the oracle's: each key's events merged, with the plugin
/// that decided each (in the order `plugins` were in force) and in version order within one
/// plugin, by the plugin files themselves. Also checks the record's revision is no more than
/// its events.
async fn wrong_records(
    client: &aws_sdk_dynamodb::Client,
    engine: &Engine,
    events: &[Event],
    trail: &HashMap<String, Trail>,
    plugins: &[PathBuf],
) -> Vec<String> {
    let policies: Vec<(String, WasmPolicy)> = plugins
        .iter()
        .map(|path| {
            let bytes = std::fs::read(path).expect("plugin file");
            let policy = WasmPolicy::load(path, Limits::default(), Capabilities::default())
                .expect("the plugin loads");
            (content_id(&bytes), policy)
        })
        .collect();
    let mut by_key: HashMap<&str, Vec<&Event>> = HashMap::new();
    for event in events {
        by_key.entry(&event.key).or_default().push(event);
    }
    let mut wrong = Vec::new();
    for (key, mut events) in by_key {
        events.sort_by_key(|e| version_of(&e.body));
        let mut state: Option<String> = None;
        for (id, policy) in &policies {
            for event in &events {
                let Some(t) = trail.get(&event.id) else {
                    continue;
                };
                if t.plugin != *id || t.actions.iter().any(|a| a == "dead-letter") {
                    continue;
                }
                match policy.merge(&event.body, state.as_deref()) {
                    Ok(Decision::Write(record)) => state = Some(record),
                    Ok(Decision::Skip(_)) => {}
                    other => panic!("the oracle's {id} refused {}: {other:?}", event.id),
                }
            }
        }
        let expected: Option<Value> = state.map(|s| serde_json::from_str(&s).expect("JSON"));
        let stored = common::get_item(client, &engine.names.table, key).await;
        let stored = stored.map(|item| {
            let mut record = ordo::store::item::from_item(&item).expect("a JSON record");
            let meta = record.remove("Ordo");
            (Value::Object(record), meta)
        });
        match (expected, stored) {
            (Some(expected), Some((stored, meta))) => {
                if stored != expected {
                    wrong.push(format!("{key}: {stored} instead of {expected}"));
                }
                // Each write is one revision, and no event makes more than one (a replayed
                // event finds itself in the record and changes nothing).
                let revision = meta
                    .and_then(|m| m["revision"].as_u64())
                    .unwrap_or_default();
                if revision == 0 || revision as usize > events.len() {
                    wrong.push(format!(
                        "{key}: revision {revision} for {} events",
                        events.len()
                    ));
                }
            }
            (None, None) => {}
            (expected, stored) => {
                wrong.push(format!("{key}: {stored:?} instead of {expected:?}"));
            }
        }
    }
    wrong
}

/// Waits until `/readyz` answers `status`, and returns how long that took.
async fn wait_ready_status(engine: &Engine, status: u16) -> Duration {
    let started = Instant::now();
    loop {
        let (answer, _) = engine.get_json("/readyz").await;
        if answer == status {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "/readyz never answered {status} (last {answer})"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until `/readyz` lists the pipeline as degraded (keys waiting on a transient
/// failure) or not, and returns the report.
async fn wait_degraded(engine: &Engine, degraded: bool) -> Value {
    let started = Instant::now();
    loop {
        let (_, report) = engine.get_json("/readyz").await;
        if report["degraded"].get("patient-profile").is_some() == degraded {
            return report;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "/readyz never showed degraded = {degraded}: {report}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn target_of(engine: &Engine) -> Target {
    Arc::new(RwLock::new(Some(engine.url.clone())))
}

fn point(target: &Target, to: Option<&Engine>) {
    if let Ok(mut t) = target.write() {
        *t = to.map(|e| e.url.clone());
    }
}

#[tokio::test]
async fn chaos_sigkill_twice_each_time_restarted_at_once() {
    let names = Names::unique("chaos-kill");
    let mut engine = Engine::builder(names.clone()).start();
    let target = target_of(&engine);
    let run = Run::start(&engine, &target, "kill");
    for at in [0.3, 0.6] {
        run.reach(at).await;
        point(&target, None);
        engine.kill();
        // A supervisor restarts a dead process at once; so does this test.
        engine = Engine::builder(names.clone()).start();
        point(&target, Some(&engine));
    }
    let lifted = Instant::now();
    run.finish(
        "sigkill twice, restarted at once",
        lifted,
        Expect::some(vec![&engine], false),
    )
    .await;
}

#[tokio::test]
async fn chaos_second_engine_joins_and_leaves_under_load() {
    let names = Names::unique("chaos-rebalance");
    let engine = Engine::builder(names.clone()).start();
    let target = target_of(&engine);
    let run = Run::start(&engine, &target, "rebalance");
    run.reach(0.25).await;
    let mut second = Engine::builder(names).start();
    point(&target, Some(&second));
    run.reach(0.6).await;
    point(&target, Some(&engine));
    let status = second.terminate(Duration::from_secs(30));
    assert!(status.success(), "the leaving engine drains and exits 0");
    let lifted = Instant::now();
    run.finish(
        "rebalance (join, then leave)",
        lifted,
        Expect::some(vec![&engine], false),
    )
    .await;
}

#[tokio::test]
async fn chaos_three_engines_one_killed_mid_rebalance() {
    let names = Names::unique("chaos-three");
    let first = Engine::builder(names.clone()).start();
    let target = target_of(&first);
    let run = Run::start(&first, &target, "three");
    run.reach(0.2).await;
    let mut second = Engine::builder(names.clone()).start();
    run.reach(0.35).await;
    // The third joins: the group rebalances, and the second dies in the middle of it.
    let third = Engine::builder(names.clone()).start();
    second.kill();
    point(&target, Some(&third));
    let lifted = Instant::now();
    run.finish(
        "three engines, one killed mid-rebalance",
        lifted,
        Expect::some(vec![&first, &third], false),
    )
    .await;
}

/// Replaces `target` with `source` by an atomic rename.
fn install(source: &Path, target: &Path) {
    let staging = target.with_extension("staging");
    std::fs::copy(source, &staging).expect("copy plugin");
    std::fs::rename(&staging, target).expect("rename into place");
}

/// Waits until `/readyz` names `plugin` (its file) as the one in force.
async fn wait_in_force(engine: &Engine, plugin: &Path) -> String {
    let id = content_id(&std::fs::read(plugin).expect("plugin file"));
    let started = Instant::now();
    loop {
        let (_, report) = engine.get_json("/readyz").await;
        if report["plugins"]["patient-profile"] == id.as_str() {
            return id;
        }
        // Generous: a component with an interpreter inside (a Python policy) compiles for
        // tens of seconds in a debug build while the engine is busy.
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "{} never in force: {report}",
            plugin.display()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// An engine whose plugin is a file of the test's own (in the returned dir), starting as the
/// last-writer-wins plugin: `install` another over it to swap. `extra` goes into the
/// pipeline's table (limits).
fn swappable_engine(label: &str, extra: &str) -> (tempfile::TempDir, PathBuf, Engine) {
    let dir = tempfile::tempdir().expect("temp dir");
    let plugin = dir.path().join("policy.wasm");
    install(&common::lww_plugin(), &plugin);
    let engine = Engine::builder(Names::unique(label))
        .plugin(&plugin)
        .extra(extra)
        .start();
    (dir, plugin, engine)
}

/// The Rust last-writer-wins policy swapped for the same policy in another language (the
/// built plugin `built`) while the stream flows: each patient's shuffled updates straddle the
/// swap, half before and half after; the records converge, and the new policy wrote some.
/// `extra`: the pipeline's limits, as its README section says to set them.
async fn swapped_to_another_language(label: &str, language: &str, built: &str, extra: &str) {
    let (_dir, plugin, engine) = swappable_engine(&format!("chaos-{label}"), extra);
    let target = target_of(&engine);
    let mut rng = Rng::from_env();
    let workload = Workload::new(&mut rng, label, PATIENTS, 10 * scale());
    let mut events = events_of(label, &workload);
    let after = events.split_off(events.len() / 2);
    let before = Run::start_events(&engine, &target, events);
    before.reach(0.5).await;
    // Under the same sandbox, no capability added.
    let other = common::built_plugin(built);
    install(&other, &plugin);
    let other_id = wait_in_force(&engine, &other).await;
    let lifted = Instant::now();
    let run = before.then(Run::start_events(&engine, &target, after));
    let mut expect = Expect::one(&engine);
    expect.plugins = vec![common::lww_plugin(), other.clone()];
    run.finish(
        &format!("plugin swapped Rust LWW → {language} LWW"),
        lifted,
        expect,
    )
    .await;
    // The new policy did write: records name it as their writer.
    let mut by_other = 0;
    for id in workload.newest.keys() {
        let (_, record) = engine.get_json(&format!("/patientprofile/{id}")).await;
        by_other += usize::from(record["Ordo"]["plugin"] == other_id.as_str());
    }
    assert!(by_other > 0, "no record written by the {language} policy");
}

#[tokio::test]
async fn chaos_plugin_swapped_from_rust_to_python_mid_stream() {
    swapped_to_another_language("swap-py", "Python", "patient_profile_lww_py", "").await;
}

#[tokio::test]
async fn chaos_plugin_swapped_from_rust_to_javascript_mid_stream() {
    // A JavaScript policy's costliest call takes about 3M fuel (`ordo plugin test` says):
    // the pipeline gives it ten times that (plugins/README.md, "Writing one in JavaScript").
    swapped_to_another_language(
        "swap-js",
        "JavaScript",
        "patient_profile_lww_js",
        "plugin_fuel = 30000000",
    )
    .await;
}

#[tokio::test]
async fn chaos_plugin_swapped_between_policies_mid_stream_and_a_broken_file_refused() {
    let (dir, plugin, engine) = swappable_engine("chaos-swap", "");
    let target = target_of(&engine);
    let mut rng = Rng::from_env();
    let workload = Workload::new(&mut rng, "swap", PATIENTS, 10 * scale());
    let whole = events_of("swap", &workload);
    let whole_run = Run::start_events(&engine, &target, whole);
    whole_run.reach(0.5).await;
    // Last-writer-wins on whole records → per-field merge, while whole updates still flow;
    // once it is in force, partial updates follow, which only the field merge accepts whole.
    install(&common::field_merge_plugin(), &plugin);
    wait_in_force(&engine, &common::field_merge_plugin()).await;
    let partial = partial_updates(&mut rng, "swap", 5 * scale());
    let partial_run = Run::start_events(&engine, &target, partial);
    partial_run.reach(0.5).await;
    let garbage = dir.path().join("garbage.wasm");
    std::fs::write(&garbage, b"\0asm broken").expect("write");
    install(&garbage, &plugin);
    let lifted = Instant::now();
    // One account of both streams: the oracle follows each event's plugin.
    let both = whole_run.then(partial_run);
    let mut expect = Expect::one(&engine);
    expect.plugins = vec![common::lww_plugin(), common::field_merge_plugin()];
    both.finish(
        "plugin swapped LWW → field merge, broken file refused",
        lifted,
        expect,
    )
    .await;
    let metrics = engine.get_text("/metrics").await;
    assert!(
        metrics.contains("ordo_plugin_reloads_total{outcome=\"refused\"} 1"),
        "the broken file was refused once:\n{metrics}"
    );
}

#[tokio::test]
async fn chaos_poison_messages_mid_stream_go_to_the_dead_letter_topic() {
    let engine = Engine::start("chaos-poison");
    let target = target_of(&engine);
    let run = Run::start(&engine, &target, "poison");
    let poison = [
        "not json at all",
        r#"{"PatientId":"poison-1","IsPregnant":true,"UpdatedAt":"2006-01-02T15:00:00Z"}"#,
        r#"{"PatientId":"poison-2","UpdatedAt":"yesterday"}"#,
        r#"{"FirstName":"no key"}"#,
    ];
    for (i, payload) in poison.iter().enumerate() {
        run.reach((i + 1) as f64 / (poison.len() + 1) as f64).await;
        common::produce_raw(&engine.names.topic, &format!("poison-{i}"), payload).await;
    }
    let lifted = Instant::now();
    let mut expect = Expect::one(&engine);
    expect.dead_letters = poison.len() as i64;
    run.finish("poison messages", lifted, expect).await;
    let letters = common::read_dead_letters(&engine, poison.len()).await;
    let reasons: Vec<&str> = letters.iter().map(|l| l.reason.as_str()).collect();
    for expected in ["not JSON", "IsPregnant", "UpdatedAt", "PatientId"] {
        assert!(
            reasons.iter().any(|r| r.contains(expected)),
            "no dead letter mentions {expected}: {reasons:?}"
        );
    }
}

#[tokio::test]
async fn chaos_hostile_plugin_attacks_mid_stream_lose_only_their_events() {
    // The hostile fixture merges ordinary updates last-writer-wins, as the patient-profile
    // plugin does, and attacks its sandbox when an event asks it to: every class of attack
    // (holding the thread, growing, reaching out, flooding the engine's outputs, a letter too
    // large to carry its event) is mixed into the normal stream.
    let engine = common::hostile::hostile_engine("chaos-hostile");
    let target = target_of(&engine);
    let run = Run::start(&engine, &target, "hostile");
    let attacks: Vec<(&str, &str)> = VALIDATE_ATTACKS
        .iter()
        .chain(&MERGE_ATTACKS)
        .copied()
        .collect();
    let steps = attacks.len() + 2;
    let mut positions = Vec::new();
    for (i, (attack, _)) in attacks.iter().enumerate() {
        run.reach((i + 1) as f64 / steps as f64).await;
        let key = format!("attack-{attack}");
        let body = attack_event(&key, attack);
        let (status, problem) = engine.post(&body).await;
        if VALIDATE_ATTACKS.iter().any(|(a, _)| a == attack) {
            // At ingest the attack is refused with its reason and nothing is produced ...
            assert_eq!(status, 422, "{attack}: {problem}");
            // ... and straight from the topic it is dead-lettered while the stream goes on.
            positions.push(common::produce_raw(&engine.names.topic, &key, &body).await);
        } else {
            // A merge attack passes validation: accepted, then dead-lettered.
            assert_eq!(status, 202, "{attack}: {problem}");
            positions.push((
                problem["partition"].as_i64().expect("partition") as i32,
                problem["offset"].as_i64().expect("offset"),
            ));
        }
    }
    run.reach((steps - 1) as f64 / steps as f64).await;
    let key = "attack-letter-too-large";
    positions
        .push(common::produce_raw(&engine.names.topic, key, &letter_too_large_event(key)).await);
    let lifted = Instant::now();
    let letters = attacks.len() + 1;
    let mut expect = Expect::one(&engine);
    expect.dead_letters = letters as i64;
    expect.plugins = vec![common::hostile_plugin()];
    run.finish("hostile plugin attacks", lifted, expect).await;
    // Every attack's partition committed past it, so to the end of the topic.
    engine.wait_all_committed(&positions).await;
    let letters = common::read_dead_letters(&engine, letters).await;
    for ((attack, reason), at) in attacks.iter().zip(&positions) {
        let letter = letters
            .iter()
            .find(|l| (l.partition, l.offset) == *at)
            .unwrap_or_else(|| panic!("no dead letter for the {attack} attack: {letters:?}"));
        assert!(
            letter.reason.contains(reason),
            "the {attack} attack's letter does not say {reason:?}: {letter:?}"
        );
    }
    assert!(
        letters
            .iter()
            .any(|l| l.payload_len == 0 && !l.left_out.is_empty()),
        "the letter too large for its event went without it: {letters:?}"
    );
}

#[tokio::test]
async fn chaos_broker_stopped_then_restarted() {
    let mut broker = PrivateBroker::start();
    let engine = Engine::builder(Names::unique("chaos-broker"))
        .brokers(&broker.address)
        .args(&["--produce-timeout-ms", "2000"])
        .start();
    let target = target_of(&engine);
    let run = Run::start(&engine, &target, "broker");
    run.reach(0.3).await;
    broker.stop();
    let down = Instant::now();
    // Honest while impaired: not ready, and ingest answers 503 with Retry-After. (The stream
    // may be blocked on its raw producer meanwhile, so a probe asks.)
    wait_ready_status(&engine, 503).await;
    let probe =
        r#"{"PatientId":"broker-probe","FirstName":"probe","UpdatedAt":"2006-01-02T15:00:00Z"}"#;
    let refused = reqwest::Client::new()
        .post(format!("{}/patientprofile", engine.url))
        .header("Content-Type", "application/json")
        .body(probe)
        .send()
        .await
        .expect("the engine answers while the broker is down");
    assert_eq!(refused.status().as_u16(), 503);
    assert!(refused.headers().contains_key("retry-after"));
    tokio::time::sleep(outage().saturating_sub(down.elapsed())).await;
    broker.restart();
    let lifted = Instant::now();
    wait_ready_status(&engine, 200).await;
    // The client retries the refused event, as the 503 asks; it lands.
    let accepted = engine.post_accepted(probe).await;
    run.finish(
        &format!("broker down {} s", outage().as_secs()),
        lifted,
        Expect::one(&engine),
    )
    .await;
    engine.wait_all_committed(&[accepted]).await;
    let (status, record) = engine.get_json("/patientprofile/broker-probe").await;
    assert_eq!(status, 200, "{record}");
    assert_eq!(record["FirstName"], "probe");
}

#[tokio::test]
async fn chaos_dynamodb_frozen_then_thawed() {
    // moto keeps its tables in memory: killing it would lose them. Freezing the process
    // (SIGSTOP) makes the API accept connections and never answer, the way a hung
    // dependency does, and keeps the data for when it thaws (SIGCONT).
    let dynamo = PrivateDynamo::start();
    let engine = Engine::builder(Names::unique("chaos-dynamo"))
        .env("AWS_ENDPOINT_URL", &dynamo.endpoint)
        .start();
    let target = target_of(&engine);
    let run = Run::start(&engine, &target, "dynamo");
    run.reach(0.3).await;
    dynamo.signal("STOP");
    let down = Instant::now();
    wait_ready_status(&engine, 503).await;
    tokio::time::sleep(outage().saturating_sub(down.elapsed())).await;
    dynamo.signal("CONT");
    let lifted = Instant::now();
    wait_ready_status(&engine, 200).await;
    run.finish_on(
        &format!("DynamoDB frozen {} s", outage().as_secs()),
        lifted,
        Expect::one(&engine),
        &dynamo.client().await,
    )
    .await;
}

/// The local stack's DynamoDB endpoint.
fn local_dynamodb() -> String {
    std::env::var("AWS_ENDPOINT_URL").unwrap_or_else(|_| "http://127.0.0.1:4566".into())
}

#[tokio::test]
async fn chaos_dynamodb_refusing_connections_is_waited_out() {
    let mut proxy = FaultProxy::start(&local_dynamodb()).await;
    let engine = Engine::builder(Names::unique("chaos-refused"))
        .env("AWS_ENDPOINT_URL", &proxy.endpoint)
        .start();
    let target = target_of(&engine);
    let run = Run::start(&engine, &target, "refused");
    run.reach(0.3).await;
    proxy.refuse().await;
    let down = Instant::now();
    // Waiting, not dead-lettering: the pipeline is degraded with the reason, and not ready.
    let report = wait_degraded(&engine, true).await;
    assert_eq!(report["ready"], false, "{report}");
    tokio::time::sleep(outage().saturating_sub(down.elapsed())).await;
    proxy.listen().await;
    let lifted = Instant::now();
    wait_degraded(&engine, false).await;
    run.finish(
        &format!("DynamoDB refusing connections {} s", outage().as_secs()),
        lifted,
        Expect::one(&engine),
    )
    .await;
    let retried = metric(
        &engine,
        "ordo_apply_retries_total",
        ",cause=\"unavailable\"",
    )
    .await;
    assert!(retried > 0, "the refusals were retried");
}

#[tokio::test]
async fn chaos_dynamodb_throttling_slows_writes_and_fails_none() {
    let proxy = FaultProxy::start(&local_dynamodb()).await;
    let engine = Engine::builder(Names::unique("chaos-throttled"))
        .env("AWS_ENDPOINT_URL", &proxy.endpoint)
        // Would dead-letter after one failed attempt; throttling is not one.
        .extra("max_attempts = 1")
        .start();
    let target = target_of(&engine);
    let run = Run::start(&engine, &target, "throttled");
    run.reach(0.3).await;
    proxy.throttle(true);
    let down = Instant::now();
    wait_degraded(&engine, true).await;
    tokio::time::sleep(outage().saturating_sub(down.elapsed())).await;
    let lowered = metric(&engine, "ordo_apply_concurrency", "").await;
    proxy.throttle(false);
    let lifted = Instant::now();
    assert!(proxy.throttled() > 0, "the proxy throttled requests");
    assert!(
        lowered < 64,
        "writes slowed below the pipeline's concurrency (64): {lowered}"
    );
    let throttled = metric(&engine, "ordo_apply_retries_total", ",cause=\"throttled\"").await;
    assert!(throttled > 0, "throttled attempts were counted and retried");
    run.finish(
        &format!("DynamoDB throttling {} s", outage().as_secs()),
        lifted,
        Expect::one(&engine),
    )
    .await;
}
