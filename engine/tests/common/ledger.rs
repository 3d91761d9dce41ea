//! The fault suite's own account, and the checker that does not take the engine's word.
//!
//! A [`Ledger`] keeps what the test sent and what the broker answered: request id, key, body,
//! partition and offset, and whether the event is a valid update (with the instant its
//! version stands for) or one that must be dead-lettered. [`check`] then reads the topic, the
//! dead-letter topic and the table itself, folds each key's updates with the oracle
//! ([`ordo::testing::oracle`], which runs no plugin), and compares every field of every
//! record. The engines' metrics and audit trail are only cross-checked against that account.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ordo::testing::oracle::{Oracle, Update};

use super::dynamo::get_item;
use super::engine::Engine;
use super::kafka::{read_all, Read};

/// What must become of an event.
#[derive(Debug, Clone)]
pub enum Fate {
    /// Applied or skipped as stale: reflected in its record.
    Reflected(Update),
    /// Dead-lettered, with its reason containing this.
    DeadLettered(String),
}

/// One event the test sent, as the broker acknowledged it.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Its request id (`X-Request-Id` or the `ordo-request-id` header).
    pub id: String,
    /// Its body.
    pub body: String,
    /// Where the broker put it.
    pub partition: i32,
    /// Its offset there.
    pub offset: i64,
    /// What must become of it.
    pub fate: Fate,
}

/// What the test sent; cloning shares it.
#[derive(Debug, Clone, Default)]
pub struct Ledger(Arc<Mutex<Vec<Entry>>>);

impl Ledger {
    /// Records a valid update, acknowledged at `partition`/`offset`.
    pub fn update(&self, id: &str, body: &str, (partition, offset): (i32, i64)) {
        let update = Update::of(body, instant_of(body))
            .unwrap_or_else(|| panic!("{id} is not an update: {body}"));
        self.push(id, body, partition, offset, Fate::Reflected(update));
    }

    /// Records an event that must be dead-lettered with a reason naming `why`.
    pub fn poison(&self, id: &str, body: &str, (partition, offset): (i32, i64), why: &str) {
        self.push(id, body, partition, offset, Fate::DeadLettered(why.into()));
    }

    fn push(&self, id: &str, body: &str, partition: i32, offset: i64, fate: Fate) {
        self.entries_mut().push(Entry {
            id: id.into(),
            body: body.into(),
            partition,
            offset,
            fate,
        });
    }

    fn entries_mut(&self) -> std::sync::MutexGuard<'_, Vec<Entry>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Every entry so far.
    pub fn entries(&self) -> Vec<Entry> {
        self.entries_mut().clone()
    }

    /// How many events were acknowledged so far.
    pub fn len(&self) -> usize {
        self.entries_mut().len()
    }

    /// Whether none was.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The instant of a body's `UpdatedAt` (RFC 3339), in nanoseconds since the epoch.
pub fn instant_of(body: &str) -> i128 {
    let value: serde_json::Value = serde_json::from_str(body).expect("JSON body");
    let text = value["UpdatedAt"].as_str().expect("UpdatedAt");
    let at = chrono::DateTime::parse_from_rfc3339(text).expect("an RFC 3339 instant");
    i128::from(at.timestamp()) * 1_000_000_000 + i128::from(at.timestamp_subsec_nanos())
}

/// Whether `held` is the event `sent` as ingest produces it: the same JSON, with `UpdatedAt`
/// stamped when the body had none.
fn same_event(held: &Read, sent: &str) -> bool {
    let (Some(mut held), Ok(sent)) = (held.json(), serde_json::from_str::<serde_json::Value>(sent))
    else {
        return false;
    };
    if sent.get("UpdatedAt").is_none() {
        if let Some(object) = held.as_object_mut() {
            object.remove("UpdatedAt");
        }
    }
    held == sent
}

/// The engines' `ordo_events_total` and `ordo_dynamodb_writes_total`, read once.
#[derive(Debug, Default, Clone, Copy)]
pub struct Counts {
    /// Events applied.
    pub applied: u64,
    /// Events skipped as stale.
    pub skipped: u64,
    /// Events dead-lettered.
    pub dead_lettered: u64,
    /// Conditional writes that went through.
    pub writes: u64,
}

impl Counts {
    /// `engine`'s counts now.
    pub async fn of(engine: &Engine) -> Self {
        let events = |outcome: &'static str| async move {
            engine
                .metric("ordo_events_total", &format!(",outcome=\"{outcome}\""))
                .await
        };
        Self {
            applied: events("applied").await,
            skipped: events("skipped_stale").await,
            dead_lettered: events("dead_lettered").await,
            writes: engine.metric("ordo_dynamodb_writes_total", "").await,
        }
    }

    fn add(&mut self, o: Counts) {
        self.applied += o.applied;
        self.skipped += o.skipped;
        self.dead_lettered += o.dead_lettered;
        self.writes += o.writes;
    }

    /// Events settled.
    pub fn settled(&self) -> u64 {
        self.applied + self.skipped + self.dead_lettered
    }
}

/// How exactly the engines' metrics must agree with what the checker found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exact {
    /// One engine settled each event once and no write could take effect unseen: the
    /// metrics equal the account (events settled, letters, writes = revisions).
    All,
    /// One engine, each event once, but a store fault may have made a write take effect
    /// while the engine saw an error: writes at most the revisions.
    Events,
    /// Engines died or left, and events were replayed: letters and writes at most what the
    /// topic and the table hold.
    Bounds,
}

/// What the checker found.
#[derive(Debug, Default)]
pub struct Found {
    /// Events acknowledged.
    pub sent: usize,
    /// Of them, valid updates.
    pub valid: usize,
    /// Events not reflected or not dead-lettered as they must be, with why.
    pub unaccounted: Vec<String>,
    /// Records that differ from the oracle's, with why.
    pub wrong: Vec<String>,
    /// Dead letters in the topic.
    pub letters: usize,
    /// Letters that arrived while the checker watched a settled pipeline.
    pub late_letters: usize,
    /// The engines' counts, summed.
    pub counts: Counts,
    /// Disagreements between the metrics or the audit trail and the account.
    pub disagreements: Vec<String>,
}

/// Checks `ledger` against the topic, the dead-letter topic and the table of `engine`'s
/// pipeline (read through `dynamo`), once the group committed everything acknowledged and the
/// dead-letter topic stayed still for `quiet`. `counts`: the metrics of engines gone before
/// the end (read just before they went); `alive`: the engines still running.
pub async fn check(
    engine: &Engine,
    dynamo: &aws_sdk_dynamodb::Client,
    ledger: &Ledger,
    alive: &[&Engine],
    gone: &[Counts],
    exact: Exact,
    quiet: Duration,
) -> Found {
    let entries = ledger.entries();
    let positions: Vec<(i32, i64)> = entries.iter().map(|e| (e.partition, e.offset)).collect();
    engine.wait_all_committed(&positions).await;
    let dlq = format!("{}.dlq", engine.names.topic);
    let mut found = Found {
        sent: entries.len(),
        ..Found::default()
    };
    // No letter arrives once the group committed everything: watch for one.
    let settled = read_all(&engine.brokers, &dlq).len();
    let watched = Instant::now();
    while watched.elapsed() < quiet {
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let letters = read_all(&engine.brokers, &dlq);
    found.letters = letters.len();
    found.late_letters = letters.len().saturating_sub(settled);
    let topic: HashMap<(i32, i64), Read> = read_all(&engine.brokers, &engine.names.topic)
        .into_iter()
        .map(|m| ((m.partition, m.offset), m))
        .collect();
    let mut letters_of: HashMap<(i32, i64), Vec<&Read>> = HashMap::new();
    for letter in &letters {
        let at = |h: &str| letter.header(h).and_then(|v| v.parse::<i64>().ok());
        let (Some(p), Some(o)) = (at("ordo-original-partition"), at("ordo-original-offset")) else {
            found.unaccounted.push(format!(
                "a dead letter without its origin: {:?}",
                letter.headers
            ));
            continue;
        };
        letters_of.entry((p as i32, o)).or_default().push(letter);
    }
    let mut oracle = Oracle::default();
    for entry in &entries {
        let at = (entry.partition, entry.offset);
        // The broker holds what it acknowledged, where it said.
        let held = topic.get(&at);
        let same =
            held.is_some_and(|m| m.payload == entry.body.as_bytes() || same_event(m, &entry.body));
        if !same {
            let held = held.map(|m| String::from_utf8_lossy(&m.payload).into_owned());
            found
                .unaccounted
                .push(format!("{}: p{}@{} holds {held:?}", entry.id, at.0, at.1));
        }
        let lettered = letters_of.remove(&at).unwrap_or_default();
        match &entry.fate {
            Fate::Reflected(update) => {
                found.valid += 1;
                if !lettered.is_empty() {
                    found
                        .unaccounted
                        .push(format!("{}: a valid event dead-lettered", entry.id));
                }
                oracle.add(update.clone());
            }
            Fate::DeadLettered(why) => {
                let reasons: Vec<&str> = lettered
                    .iter()
                    .filter_map(|l| l.header("ordo-reason"))
                    .collect();
                if reasons.is_empty() {
                    found
                        .unaccounted
                        .push(format!("{}: not dead-lettered", entry.id));
                } else if !reasons.iter().all(|r| r.contains(why.as_str())) {
                    found.unaccounted.push(format!(
                        "{}: letters say {reasons:?}, not {why:?}",
                        entry.id
                    ));
                } else if exact != Exact::Bounds && reasons.len() > 1 {
                    found.unaccounted.push(format!(
                        "{}: {} letters for one delivery",
                        entry.id,
                        reasons.len()
                    ));
                }
            }
        }
    }
    for ((p, o), extra) in letters_of {
        found.unaccounted.push(format!(
            "{} letters for p{p}@{o}, which the test never sent",
            extra.len()
        ));
    }
    // Every record is the fold of its key's updates, field by field; each key's revision is
    // its number of writes, no more than its updates.
    let mut revisions = 0;
    let mut updates_of: BTreeMap<&str, usize> = BTreeMap::new();
    for entry in &entries {
        if let Fate::Reflected(u) = &entry.fate {
            *updates_of.entry(u.key.as_str()).or_default() += 1;
        }
    }
    for (key, updates) in updates_of {
        let record = get_item(dynamo, &engine.names.table, key)
            .await
            .map(|item| ordo::store::item::from_item(&item).expect("a JSON record"));
        if let Err(why) = oracle.check_final(key, record.as_ref()) {
            found.wrong.push(why);
        }
        let revision = record
            .as_ref()
            .and_then(|r| r.get("Ordo"))
            .and_then(|m| m["revision"].as_u64())
            .unwrap_or(0);
        if revision == 0 || revision as usize > updates {
            found
                .wrong
                .push(format!("{key}: revision {revision} for {updates} updates"));
        }
        revisions += revision;
    }
    // The engines' own counts, against the account.
    for engine in alive {
        found.counts.add(Counts::of(engine).await);
    }
    for counts in gone {
        found.counts.add(*counts);
    }
    let c = found.counts;
    let mut disagree = |holds: bool, what: String| {
        if !holds {
            found.disagreements.push(what);
        }
    };
    disagree(
        c.writes <= revisions,
        format!(
            "the engines count {} writes, the table holds {revisions} revisions",
            c.writes
        ),
    );
    disagree(
        c.dead_lettered as usize <= found.letters,
        format!(
            "the engines count {} dead letters, the topic holds {}",
            c.dead_lettered, found.letters
        ),
    );
    if exact != Exact::Bounds {
        disagree(
            c.settled() as usize == found.sent,
            format!(
                "the engines settled {} events, the test sent {}",
                c.settled(),
                found.sent
            ),
        );
        disagree(
            c.dead_lettered as usize == found.letters,
            format!(
                "the engines count {} dead letters, the topic holds {}",
                c.dead_lettered, found.letters
            ),
        );
    }
    if exact == Exact::All {
        disagree(
            c.writes == revisions,
            format!(
                "the engines count {} writes, the table holds {revisions} revisions",
                c.writes
            ),
        );
    }
    // The audit trail names every event the test sent, with what became of it.
    let audited: std::collections::HashSet<String> =
        super::kafka::read_all_json(&engine.brokers, &engine.audit_topic())
            .iter()
            .filter(|r| matches!(r["action"].as_str(), Some("apply" | "skip" | "dead-letter")))
            .filter_map(|r| r["request_id"].as_str().map(String::from))
            .collect();
    let missing: Vec<&str> = entries
        .iter()
        .filter(|e| !audited.contains(&e.id))
        .map(|e| e.id.as_str())
        .collect();
    disagree(
        missing.is_empty(),
        format!(
            "the audit trail misses {} events: {missing:?}",
            missing.len()
        ),
    );
    found
}
