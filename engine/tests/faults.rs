//! The fault suite: a steady stream of keyed updates, half through HTTP and half straight to
//! the topic, in shuffled order, flowing before, through and after one fault per scenario.
//!
//! The checker does not take the engine's word. The test keeps its own ledger from the
//! answers it got (request id, key, body, partition, offset), then reads the topic, the
//! dead-letter topic and the table itself ([`common::ledger`]): every acknowledged event is
//! where the broker said, every update is reflected in its record and none is dead-lettered,
//! every poison event is dead-lettered with its reason, and every record equals, field by
//! field, the fold of its key's updates by an oracle that runs no plugin
//! (`ordo::testing::oracle`). Once the group committed everything, it watches the dead-letter
//! topic for a few seconds more: no late letter may arrive. The engines' metrics and audit
//! trail are cross-checked against that account in every scenario: exactly where one engine
//! settled each event once, as bounds where engines died or left and events were replayed.
//!
//! Each scenario prints one line:
//!
//! `fault <name>: sent N (R retried) over T s: U updates, P to dead-letter; unaccounted 0, wrong 0, letters P (0 late); engines: ...; caught up T s after the fault`
//!
//! `make test` runs it at the short scale (outages of 10 s, the stream flowing throughout);
//! `make chaos` sets `ORDO_CHAOS_SCALE=5` (30 s outages, longer streams). Run alone and in
//! order (`--test-threads=1`): scenarios share the machine's two cores.

mod common;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use common::hostile::{attack_event, letter_too_large_event, MERGE_ATTACKS, VALIDATE_ATTACKS};
use common::{
    Counts, Engine, Exact, FaultProxy, Ledger, Names, PrivateBroker, PrivateDynamo, Rng, Workload,
};
use ordo::plugin::wasm::content_id;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::util::Timeout;
use rdkafka::ClientConfig;
use serde_json::Value;

/// Patients per stream.
const PATIENTS: usize = 20;
/// How long the checker watches a settled pipeline's dead-letter topic for a late letter.
const QUIET: Duration = Duration::from_secs(5);

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

/// How long the stream flows on after a fault is lifted: 3 s, 10 s at `make chaos`'s.
fn after_recovery() -> Duration {
    Duration::from_secs(if scale() > 1 { 10 } else { 3 })
}

/// Events acknowledged before a fault is injected.
fn before_fault() -> usize {
    50 * scale()
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

/// What a stream did.
#[derive(Debug, Default)]
struct Sent {
    /// Attempts answered 503 or not answered at all, then retried.
    retried: usize,
    /// Whether it ran out of events before it was told to stop.
    ran_out: bool,
}

/// Sends `events` in order until `stop`, every other one through HTTP (retrying a 503 or a
/// refused connection until it gets a 202) and the rest straight to the topic with acks=all,
/// pausing `pace` between events; each acknowledged one goes into `ledger`, and `done`
/// counts them.
#[allow(clippy::too_many_arguments)]
async fn stream(
    events: Vec<Event>,
    target: Target,
    brokers: String,
    topic: String,
    pace: Duration,
    ledger: Ledger,
    done: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
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
    let mut sent = Sent {
        ran_out: true,
        ..Sent::default()
    };
    for (i, event) in events.iter().enumerate() {
        if stop.load(Ordering::SeqCst) {
            sent.ran_out = false;
            break;
        }
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
        ledger.update(&event.id, &event.body, position);
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

/// A stream's worth of whole updates of `PATIENTS` patients (`<label>-<p>`), shuffled: more
/// than any scenario sends before it stops the stream.
fn pool(rng: &mut Rng, label: &str) -> Vec<Event> {
    events_of(label, &Workload::new(rng, label, PATIENTS, 150 * scale()))
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
            let nanos = i64::try_from(base + step * 3_000_000).expect("instant");
            let instant = chrono::DateTime::from_timestamp_nanos(nanos);
            let mut body = serde_json::Map::new();
            body.insert("PatientId".into(), key.clone().into());
            body.insert(
                "UpdatedAt".into(),
                instant
                    .to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
                    .into(),
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

/// A running stream.
struct Run {
    /// What it sent, shared with every stream of the scenario.
    ledger: Ledger,
    /// Events it got acknowledged.
    done: Arc<AtomicUsize>,
    /// Tells it to stop.
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<Sent>,
    /// Other streams of the scenario, stopped and awaited with this one.
    others: Vec<Run>,
    started: Instant,
}

/// What a scenario expects besides "every event accounted for, every record right".
struct Expect<'a> {
    /// The engines running at the end (the first one's names are read).
    engines: Vec<&'a Engine>,
    /// The counts of engines gone before the end, read just before they went.
    gone: Vec<Counts>,
    /// How exactly the metrics must agree.
    exact: Exact,
}

impl<'a> Expect<'a> {
    /// One engine throughout, each event settled once, no write unseen.
    fn one(engine: &'a Engine) -> Self {
        Self {
            engines: vec![engine],
            gone: Vec::new(),
            exact: Exact::All,
        }
    }

    /// As [`Expect::one`], with metrics as exact as `exact` allows.
    fn one_but(engine: &'a Engine, exact: Exact) -> Self {
        Self {
            exact,
            ..Self::one(engine)
        }
    }
}

impl Run {
    /// Starts streaming a pool of whole updates to `engine`'s pipeline.
    fn start(engine: &Engine, target: &Target, ledger: &Ledger, label: &str) -> Self {
        let mut rng = Rng::from_env();
        Self::start_events(engine, target, ledger, pool(&mut rng, label))
    }

    /// Starts streaming `events` to `engine`'s pipeline.
    fn start_events(engine: &Engine, target: &Target, ledger: &Ledger, events: Vec<Event>) -> Self {
        let done = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let task = tokio::spawn(stream(
            events,
            Arc::clone(target),
            engine.brokers.clone(),
            engine.names.topic.clone(),
            Duration::from_millis(10),
            ledger.clone(),
            Arc::clone(&done),
            Arc::clone(&stop),
        ));
        Self {
            ledger: ledger.clone(),
            done,
            stop,
            task,
            others: Vec::new(),
            started: Instant::now(),
        }
    }

    /// This stream and `next` (started after it), stopped and checked together.
    fn then(mut self, next: Run) -> Run {
        self.others.push(next);
        self
    }

    /// Waits until this stream got `events` acknowledged.
    async fn reach(&self, events: usize) {
        while self.done.load(Ordering::SeqCst) < events {
            assert!(
                self.started.elapsed() < Duration::from_secs(300),
                "the stream stalled at {} of {events}",
                self.done.load(Ordering::SeqCst)
            );
            assert!(!self.task.is_finished(), "the stream ran out of events");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Lets the stream flow for [`after_recovery`] past `lifted` (when the fault ended), then
    /// stops it, checks everything it sent, prints the scenario's line and returns it.
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
        // Caught up: every event acknowledged before the fault ended is committed, while the
        // stream goes on.
        let before_lift = self.ledger.entries();
        let positions: Vec<(i32, i64)> = before_lift
            .iter()
            .map(|e| (e.partition, e.offset))
            .collect();
        let (recovered, ()) = tokio::join!(
            async {
                engine.wait_all_committed(&positions).await;
                lifted.elapsed()
            },
            tokio::time::sleep_until((lifted + after_recovery()).into())
        );
        let ledger = self.ledger.clone();
        let took = self.started.elapsed();
        let (retried, ran_out) = self.stop_all().await;
        assert!(
            !ran_out,
            "{name}: a stream ran out of events before the end"
        );
        let found = common::ledger::check(
            engine,
            dynamo,
            &ledger,
            &expect.engines,
            &expect.gone,
            expect.exact,
            QUIET,
        )
        .await;
        let c = found.counts;
        let line = format!(
            "fault {name}: sent {} ({retried} retried) over {:.0} s: {} updates, {} to dead-letter; unaccounted {}, wrong {}, letters {} ({} late); engines: applied {}, skipped {}, dead-lettered {}, writes {}; caught up {:.1} s after the fault",
            found.sent,
            took.as_secs_f64(),
            found.valid,
            found.sent - found.valid,
            found.unaccounted.len(),
            found.wrong.len(),
            found.letters,
            found.late_letters,
            c.applied,
            c.skipped,
            c.dead_lettered,
            c.writes,
            recovered.as_secs_f64()
        );
        println!("{line}");
        assert!(
            found.unaccounted.is_empty(),
            "{line}: {:#?}\nlog:\n{}",
            found.unaccounted,
            engine.log()
        );
        assert!(
            found.wrong.is_empty(),
            "{line}: {:#?}\nlog:\n{}",
            found.wrong,
            engine.log()
        );
        assert_eq!(
            found.late_letters, 0,
            "{line}: a letter arrived after everything settled"
        );
        assert!(
            found.disagreements.is_empty(),
            "{line}: the engines disagree with the account: {:#?}",
            found.disagreements
        );
        line
    }

    /// Stops this stream and the others, and awaits them: retries, and whether one ran out.
    async fn stop_all(self) -> (usize, bool) {
        let mut runs = Vec::new();
        let mut pending = vec![self];
        while let Some(mut run) = pending.pop() {
            pending.append(&mut run.others);
            run.stop.store(true, Ordering::SeqCst);
            runs.push(run);
        }
        let (mut retried, mut ran_out) = (0, false);
        for run in runs {
            let sent = run.task.await.expect("the stream ran");
            retried += sent.retried;
            ran_out |= sent.ran_out;
        }
        (retried, ran_out)
    }
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

/// POSTs `body` to `engine` with `X-Request-Id: id`: the status and the answer.
async fn post_with_id(engine: &Engine, id: &str, body: &str) -> (u16, Value) {
    let answer = reqwest::Client::new()
        .post(format!("{}/patientprofile", engine.url))
        .header("Content-Type", "application/json")
        .header("X-Request-Id", id)
        .body(body.to_string())
        .send()
        .await
        .expect("the engine answers");
    let status = answer.status().as_u16();
    (status, answer.json().await.unwrap_or_default())
}

/// The partition and offset a 202 answer names.
fn position(accepted: &Value) -> (i32, i64) {
    (
        accepted["partition"].as_i64().expect("partition") as i32,
        accepted["offset"].as_i64().expect("offset"),
    )
}

#[tokio::test]
async fn chaos_sigkill_twice_each_time_restarted_at_once() {
    let names = Names::unique("chaos-kill");
    let mut engine = Engine::builder(names.clone()).start();
    let (target, ledger) = (target_of(&engine), Ledger::default());
    let run = Run::start(&engine, &target, &ledger, "kill");
    let mut gone = Vec::new();
    for n in 1..=2 {
        run.reach(before_fault() * n).await;
        point(&target, None);
        gone.push(Counts::of(&engine).await);
        engine.kill();
        // A supervisor restarts a dead process at once; so does this test.
        engine = Engine::builder(names.clone()).start();
        point(&target, Some(&engine));
    }
    let lifted = Instant::now();
    let expect = Expect {
        engines: vec![&engine],
        gone,
        exact: Exact::Bounds,
    };
    run.finish("sigkill twice, restarted at once", lifted, expect)
        .await;
}

#[tokio::test]
async fn chaos_second_engine_joins_and_leaves_under_load() {
    let names = Names::unique("chaos-rebalance");
    let engine = Engine::builder(names.clone()).start();
    let (target, ledger) = (target_of(&engine), Ledger::default());
    let run = Run::start(&engine, &target, &ledger, "rebalance");
    run.reach(before_fault()).await;
    let mut second = Engine::builder(names).start();
    point(&target, Some(&second));
    run.reach(before_fault() * 2).await;
    point(&target, Some(&engine));
    let counts = Counts::of(&second).await;
    let status = second.terminate(Duration::from_secs(30));
    assert!(status.success(), "the leaving engine drains and exits 0");
    let lifted = Instant::now();
    let expect = Expect {
        engines: vec![&engine],
        gone: vec![counts],
        exact: Exact::Bounds,
    };
    run.finish("rebalance (join, then leave)", lifted, expect)
        .await;
}

#[tokio::test]
async fn chaos_three_engines_one_killed_mid_rebalance() {
    let names = Names::unique("chaos-three");
    let first = Engine::builder(names.clone()).start();
    let (target, ledger) = (target_of(&first), Ledger::default());
    let run = Run::start(&first, &target, &ledger, "three");
    run.reach(before_fault()).await;
    let mut second = Engine::builder(names.clone()).start();
    run.reach(before_fault() * 2).await;
    // The third joins: the group rebalances, and the second dies in the middle of it.
    let third = Engine::builder(names.clone()).start();
    let counts = Counts::of(&second).await;
    second.kill();
    point(&target, Some(&third));
    let lifted = Instant::now();
    let expect = Expect {
        engines: vec![&first, &third],
        gone: vec![counts],
        exact: Exact::Bounds,
    };
    run.finish("three engines, one killed mid-rebalance", lifted, expect)
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
/// swap; the records are the oracle's, and the new policy wrote some of them. `extra`: the
/// pipeline's limits, as its README section says to set them.
async fn swapped_to_another_language(label: &str, language: &str, built: &str, extra: &str) {
    let (_dir, plugin, engine) = swappable_engine(&format!("chaos-{label}"), extra);
    let (target, ledger) = (target_of(&engine), Ledger::default());
    let run = Run::start(&engine, &target, &ledger, label);
    run.reach(before_fault()).await;
    // Under the same sandbox, no capability added.
    let other = common::built_plugin(built);
    install(&other, &plugin);
    let other_id = wait_in_force(&engine, &other).await;
    let lifted = Instant::now();
    run.finish(
        &format!("plugin swapped Rust LWW → {language} LWW"),
        lifted,
        Expect::one(&engine),
    )
    .await;
    // The new policy did write: records name it as their writer.
    let dynamo = common::dynamodb().await;
    let mut by_other = 0;
    for p in 0..PATIENTS {
        let item = common::get_item(&dynamo, &engine.names.table, &format!("{label}-{p}")).await;
        let record = item.map(|i| ordo::store::item::from_item(&i).expect("a record"));
        by_other += usize::from(record.is_some_and(|r| r["Ordo"]["plugin"] == other_id.as_str()));
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
    let (target, ledger) = (target_of(&engine), Ledger::default());
    let whole_run = Run::start(&engine, &target, &ledger, "swap");
    whole_run.reach(before_fault()).await;
    // Last-writer-wins on whole records → per-field merge, while whole updates still flow;
    // once it is in force, partial updates follow, which only the field merge accepts whole.
    install(&common::field_merge_plugin(), &plugin);
    wait_in_force(&engine, &common::field_merge_plugin()).await;
    let mut rng = Rng::from_env();
    let partial = partial_updates(&mut rng, "swap", 60 * scale());
    let partial_run = Run::start_events(&engine, &target, &ledger, partial);
    partial_run.reach(before_fault()).await;
    let garbage = dir.path().join("garbage.wasm");
    std::fs::write(&garbage, b"\0asm broken").expect("write");
    install(&garbage, &plugin);
    let lifted = Instant::now();
    // One account of both streams: the oracle's rule holds across the swap.
    whole_run
        .then(partial_run)
        .finish(
            "plugin swapped LWW → field merge, broken file refused",
            lifted,
            Expect::one(&engine),
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
    let (target, ledger) = (target_of(&engine), Ledger::default());
    let run = Run::start(&engine, &target, &ledger, "poison");
    // Each with a word its letter's reason must contain.
    let poison = [
        ("not json at all", "not JSON"),
        (
            r#"{"PatientId":"poison-1","IsPregnant":true,"UpdatedAt":"2006-01-02T15:00:00Z"}"#,
            "IsPregnant",
        ),
        (
            r#"{"PatientId":"poison-2","UpdatedAt":"yesterday"}"#,
            "UpdatedAt",
        ),
        (r#"{"FirstName":"no key"}"#, "PatientId"),
    ];
    for (i, (payload, why)) in poison.iter().enumerate() {
        run.reach(before_fault() * (i + 1) / poison.len()).await;
        let id = format!("poison-{i}");
        let at = common::produce_with_id(&engine.names.topic, &id, payload, Some(&id)).await;
        ledger.poison(&id, payload, at, why);
    }
    let lifted = Instant::now();
    run.finish("poison messages", lifted, Expect::one(&engine))
        .await;
}

#[tokio::test]
async fn chaos_hostile_plugin_attacks_mid_stream_lose_only_their_events() {
    // The hostile fixture merges ordinary updates last-writer-wins, as the patient-profile
    // plugin does, and attacks its sandbox when an event asks it to: every class of attack
    // (holding the thread, growing, reaching out, flooding the engine's outputs, a letter too
    // large to carry its event) is mixed into the normal stream.
    let engine = common::hostile::hostile_engine("chaos-hostile");
    let (target, ledger) = (target_of(&engine), Ledger::default());
    let run = Run::start(&engine, &target, &ledger, "hostile");
    let attacks: Vec<(&str, &str)> = VALIDATE_ATTACKS
        .iter()
        .chain(&MERGE_ATTACKS)
        .copied()
        .collect();
    for (i, (attack, reason)) in attacks.iter().enumerate() {
        run.reach(before_fault() * (i + 1) / attacks.len()).await;
        let key = format!("attack-{attack}");
        let body = attack_event(&key, attack);
        let (status, answer) = post_with_id(&engine, &key, &body).await;
        if VALIDATE_ATTACKS.iter().any(|(a, _)| a == attack) {
            // At ingest the attack is refused with its reason and nothing is produced ...
            assert_eq!(status, 422, "{attack}: {answer}");
            // ... and straight from the topic it is dead-lettered while the stream goes on.
            let at = common::produce_with_id(&engine.names.topic, &key, &body, Some(&key)).await;
            ledger.poison(&key, &body, at, reason);
        } else {
            // A merge attack passes validation: accepted, then dead-lettered.
            assert_eq!(status, 202, "{attack}: {answer}");
            ledger.poison(&key, &body, position(&answer), reason);
        }
    }
    let key = "attack-letter-too-large";
    let body = letter_too_large_event(key);
    let at = common::produce_with_id(&engine.names.topic, key, &body, Some(key)).await;
    ledger.poison(key, &body, at, "");
    let lifted = Instant::now();
    run.finish("hostile plugin attacks", lifted, Expect::one(&engine))
        .await;
    let letters = common::read_all(&engine.brokers, &format!("{}.dlq", engine.names.topic));
    assert!(
        letters
            .iter()
            .any(|l| l.payload.is_empty() && l.header("ordo-event-left-out").is_some()),
        "the letter too large for its event went without it"
    );
}

#[tokio::test]
async fn chaos_broker_stopped_then_restarted() {
    let mut broker = PrivateBroker::start();
    let engine = Engine::builder(Names::unique("chaos-broker"))
        .brokers(&broker.address)
        .args(&["--produce-timeout-ms", "2000"])
        .start();
    let (target, ledger) = (target_of(&engine), Ledger::default());
    let run = Run::start(&engine, &target, &ledger, "broker");
    run.reach(before_fault()).await;
    broker.stop();
    let down = Instant::now();
    // Honest while impaired: not ready, and ingest answers 503 with Retry-After. (The stream
    // may be blocked on its raw producer meanwhile, so a probe asks.)
    wait_ready_status(&engine, 503).await;
    let probe =
        r#"{"PatientId":"broker-probe","FirstName":"probe","UpdatedAt":"2006-01-02T15:00:00Z"}"#;
    let (status, _) = post_with_id(&engine, "broker-probe", probe).await;
    assert_eq!(status, 503);
    tokio::time::sleep(outage().saturating_sub(down.elapsed())).await;
    broker.restart();
    let lifted = Instant::now();
    wait_ready_status(&engine, 200).await;
    // The client retries the refused event, as the 503 asks; it lands.
    let (status, accepted) = post_with_id(&engine, "broker-probe", probe).await;
    assert_eq!(status, 202, "{accepted}");
    ledger.update("broker-probe", probe, position(&accepted));
    // The broker's restart may rebalance the group: events may be settled twice.
    run.finish(
        &format!("broker down {} s", outage().as_secs()),
        lifted,
        Expect::one_but(&engine, Exact::Bounds),
    )
    .await;
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
    let (target, ledger) = (target_of(&engine), Ledger::default());
    let run = Run::start(&engine, &target, &ledger, "dynamo");
    run.reach(before_fault()).await;
    dynamo.signal("STOP");
    let down = Instant::now();
    wait_ready_status(&engine, 503).await;
    tokio::time::sleep(outage().saturating_sub(down.elapsed())).await;
    dynamo.signal("CONT");
    let lifted = Instant::now();
    wait_ready_status(&engine, 200).await;
    // A write in flight when it froze may land while the engine saw a timeout.
    run.finish_on(
        &format!("DynamoDB frozen {} s", outage().as_secs()),
        lifted,
        Expect::one_but(&engine, Exact::Events),
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
    let (target, ledger) = (target_of(&engine), Ledger::default());
    let run = Run::start(&engine, &target, &ledger, "refused");
    run.reach(before_fault()).await;
    proxy.refuse().await;
    let down = Instant::now();
    // Waiting, not dead-lettering: the pipeline is degraded with the reason, and not ready.
    let mut report = wait_degraded(&engine, true).await;
    // /readyz answers from its last check while that is fresh (5 s, then a 2 s check), so it
    // turns unready within that.
    let degraded_at = Instant::now();
    while report["ready"] != false {
        assert!(
            degraded_at.elapsed() < Duration::from_secs(10),
            "/readyz still ready 10 s into the outage: {report}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
        report = engine.get_json("/readyz").await.1;
    }
    // It says why: keys wait on the store, which is unavailable, and which table.
    let why = report["degraded"]["patient-profile"]
        .as_str()
        .unwrap_or_default();
    assert!(
        why.contains("key(s) waiting")
            && why.contains("(unavailable)")
            && why.contains(&format!("table `{}`", engine.names.table)),
        "{report}"
    );
    tokio::time::sleep(outage().saturating_sub(down.elapsed())).await;
    proxy.listen().await;
    let lifted = Instant::now();
    wait_degraded(&engine, false).await;
    // Connections cut mid-request may carry a write the engine never heard back from.
    run.finish(
        &format!("DynamoDB refusing connections {} s", outage().as_secs()),
        lifted,
        Expect::one_but(&engine, Exact::Events),
    )
    .await;
    let retried = engine
        .metric("ordo_apply_retries_total", ",cause=\"unavailable\"")
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
    let (target, ledger) = (target_of(&engine), Ledger::default());
    let run = Run::start(&engine, &target, &ledger, "throttled");
    run.reach(before_fault()).await;
    proxy.throttle(true);
    let down = Instant::now();
    let report = wait_degraded(&engine, true).await;
    let why = report["degraded"]["patient-profile"]
        .as_str()
        .unwrap_or_default();
    assert!(why.contains("(throttled)"), "{report}");
    tokio::time::sleep(outage().saturating_sub(down.elapsed())).await;
    let lowered = engine.metric("ordo_apply_concurrency", "").await;
    proxy.throttle(false);
    let lifted = Instant::now();
    assert!(proxy.throttled() > 0, "the proxy throttled requests");
    assert!(
        lowered < 64,
        "writes slowed below the pipeline's concurrency (64): {lowered}"
    );
    let throttled = engine
        .metric("ordo_apply_retries_total", ",cause=\"throttled\"")
        .await;
    assert!(throttled > 0, "throttled attempts were counted and retried");
    run.finish(
        &format!("DynamoDB throttling {} s", outage().as_secs()),
        lifted,
        Expect::one(&engine),
    )
    .await;
}
