//! The simulated world every seam shares: the topic, the dead-letter and audit topics, the
//! table, the consumer group, the faults in force, and what the checker has seen. One mutex
//! guards it all; the simulation runs on one thread, so it is never contended.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::hash::Hasher as _;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::Notify;
use tokio::time::Instant;

use super::plan::{Kind, Plan, Policy};
use crate::bus::Message;
use crate::store::Record;
use crate::testing::oracle::{Oracle, Update};

/// A member of the group in one life: `(member, incarnation)`.
pub type Life = (usize, u32);

/// Which invariant a run broke.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Invariant {
    /// An acknowledged event was not applied, skipped or dead-lettered as the oracle says.
    Accounting,
    /// An offset was stored for commit past an event whose effect was not durable.
    CommitBeforeDurable,
    /// A final record differs from the oracle's fold of its key's events.
    FinalRecord,
    /// A write did not raise the revision by one, or made a record older.
    Revisions,
    /// A key was written by a member that did not own its partition.
    TwoOwners,
    /// The events were not all settled in time (liveness).
    Stuck,
}

/// A broken invariant, when and why.
#[derive(Debug, Clone)]
pub struct Violation {
    /// Which.
    pub invariant: Invariant,
    /// Virtual milliseconds since the start.
    pub at_ms: u128,
    /// What was seen.
    pub detail: String,
}

/// A consumer's state in one life.
#[derive(Debug, Default)]
pub struct Consumer {
    /// Partitions assigned to it.
    pub owned: BTreeSet<i32>,
    /// Those of them being revoked: no longer fetched, offsets still stored and committed.
    pub revoking: BTreeSet<i32>,
    /// Next offset to hand out, per partition.
    pub positions: BTreeMap<i32, i64>,
    /// Offsets stored for commit, per partition.
    pub stored: BTreeMap<i32, i64>,
}

/// A message a member published (a dead letter or an audit record).
#[derive(Debug, Clone)]
pub struct Published {
    /// Its headers.
    pub headers: Vec<(String, String)>,
    /// Its body.
    pub payload: Vec<u8>,
}

/// The faults in force: each until an instant.
#[derive(Debug, Default)]
pub struct Faults {
    /// Store calls fail at once.
    pub store_down: Option<Instant>,
    /// Store calls fail, time out or are ambiguous, with this probability in percent.
    pub store_flaky: Option<(Instant, u32)>,
    /// Store calls are slow.
    pub store_slow: Option<Instant>,
    /// Store calls are throttled half the time.
    pub store_throttled: Option<Instant>,
    /// Publishes are not acknowledged.
    pub bus_down: Option<Instant>,
    /// Plugin calls answer busy.
    pub plugin_busy: Option<Instant>,
    /// Plugin calls still to panic.
    pub panics: u32,
}

/// The world's state.
pub struct State {
    /// The plan.
    pub plan: Arc<Plan>,
    /// The world's dice (faults, delivery order, latencies).
    pub rng: fastrand::Rng,
    /// When the run started.
    pub start: Instant,
    /// The event topic, per partition: each message with the index of its event.
    pub topic: Vec<Vec<(usize, Message)>>,
    /// Per event sent: its partition and offset.
    pub sent: Vec<Option<(i32, i64)>>,
    /// The dead-letter topic.
    pub letters: Vec<Published>,
    /// The audit topic.
    pub audit: Vec<Published>,
    /// Request ids the audit trail has settled (apply, skip, dead-letter).
    pub audited: BTreeSet<String>,
    /// The table: key → record, as stored (with the engine's metadata).
    pub table: BTreeMap<String, Record>,
    /// Writes that went through.
    pub writes: u64,
    /// Conditional writes refused.
    pub conflicts: u64,
    /// Lives and whether each is alive.
    pub alive: BTreeMap<Life, bool>,
    /// Consumers by life.
    pub consumers: BTreeMap<Life, Consumer>,
    /// Which life owns each partition.
    pub owner: Vec<Option<Life>>,
    /// The group's committed offset per partition.
    pub committed: Vec<i64>,
    /// Per partition, the offset below which every event was checked durable.
    pub checked: Vec<i64>,
    /// Deliveries of each (partition, offset).
    pub deliveries: BTreeMap<(i32, i64), u32>,
    /// The faults in force.
    pub faults: Faults,
    /// The policy new members start with.
    pub policy: Policy,
    /// Whether the field-merge policy is in force in every member (partial updates may go).
    pub swapped: bool,
    /// The oracle, of the valid events.
    pub oracle: Oracle,
    /// Per event: the update it is, when valid.
    pub updates: Vec<Option<Update>>,
    /// The first broken invariant.
    pub violation: Option<Violation>,
    /// How often each kind of thing happened (faults met, replays, conflicts), to show what
    /// the seeds cover.
    pub seen: BTreeMap<&'static str, u64>,
    /// A running hash of what happened, in order: two runs of one seed must agree.
    trace: std::collections::hash_map::DefaultHasher,
    /// What happened, line by line, when asked to keep it.
    pub lines: Option<Vec<String>>,
}

/// The world, shared by every seam.
pub struct World {
    /// Its state.
    state: Mutex<State>,
    /// Woken when messages arrive or partitions are assigned.
    pub arrived: Notify,
}

impl World {
    /// The world of `plan`, keeping the trace's lines when `verbose`.
    pub fn new(plan: Arc<Plan>, verbose: bool) -> Arc<Self> {
        let partitions = plan.partitions as usize;
        let updates: Vec<Option<Update>> = plan
            .events
            .iter()
            .map(|e| match e.kind {
                Kind::Valid { instant, .. } => Update::of(&e.body, instant),
                Kind::Poison(_) => None,
            })
            .collect();
        let mut oracle = Oracle::default();
        for update in updates.iter().flatten() {
            oracle.add(update.clone());
        }
        Arc::new(Self {
            state: Mutex::new(State {
                rng: fastrand::Rng::with_seed(plan.seed ^ 0x5eed),
                start: Instant::now(),
                topic: vec![Vec::new(); partitions],
                sent: vec![None; plan.events.len()],
                letters: Vec::new(),
                audit: Vec::new(),
                audited: BTreeSet::new(),
                table: BTreeMap::new(),
                writes: 0,
                conflicts: 0,
                alive: BTreeMap::new(),
                consumers: BTreeMap::new(),
                owner: vec![None; partitions],
                committed: vec![0; partitions],
                checked: vec![0; partitions],
                deliveries: BTreeMap::new(),
                faults: Faults::default(),
                policy: plan.policy,
                swapped: plan.policy == Policy::FieldMerge,
                oracle,
                updates,
                violation: None,
                seen: BTreeMap::new(),
                trace: Default::default(),
                lines: verbose.then(Vec::new),
                plan,
            }),
            arrived: Notify::new(),
        })
    }

    /// The state, locked.
    pub fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl State {
    /// Virtual milliseconds since the start.
    pub fn now_ms(&self) -> u128 {
        Instant::now().duration_since(self.start).as_millis()
    }

    /// Adds a line to the trace.
    pub fn trace(&mut self, line: std::fmt::Arguments<'_>) {
        let mut text = String::new();
        let _ = write!(text, "{:>7}ms {line}", self.now_ms());
        self.trace.write(text.as_bytes());
        if let Some(lines) = &mut self.lines {
            lines.push(text);
        }
    }

    /// Counts one `what`.
    pub fn saw(&mut self, what: &'static str) {
        *self.seen.entry(what).or_default() += 1;
    }

    /// The trace's hash so far.
    pub fn trace_hash(&self) -> u64 {
        self.trace.finish()
    }

    /// Records a broken invariant (the first one counts).
    pub fn violated(&mut self, invariant: Invariant, detail: String) {
        self.trace(format_args!("VIOLATION {invariant:?}: {detail}"));
        if self.violation.is_none() {
            self.violation = Some(Violation {
                invariant,
                at_ms: self.now_ms(),
                detail,
            });
        }
    }

    /// Whether `life` is alive.
    pub fn is_alive(&self, life: Life) -> bool {
        self.alive.get(&life).copied().unwrap_or(false)
    }

    /// Whether `until` is still ahead.
    pub fn during(until: Option<Instant>) -> bool {
        until.is_some_and(|u| Instant::now() < u)
    }

    /// Checks that every event of `partition` below `offset` is durable: in the table (a
    /// valid one, by the oracle's measure), in the dead-letter topic (a poison one), and in
    /// the audit trail. Called when an offset is stored for commit, and so before it can be.
    pub fn check_durable(&mut self, partition: i32, offset: i64, by: Life) {
        let p = partition as usize;
        let from = self.checked[p];
        for o in from..offset {
            let Some(&(index, _)) = self.topic[p].get(o as usize) else {
                let detail =
                    format!("{by:?} stored offset {offset} of partition {partition} past its end");
                return self.violated(Invariant::CommitBeforeDurable, detail);
            };
            let event = &self.plan.events[index];
            let why = if let Some(update) = &self.updates[index] {
                let record = self.table.get(&event.key);
                match self.oracle.durable(update, record) {
                    Ok(true) => None,
                    Ok(false) => Some(format!(
                        "its effect is not in the record {}",
                        record
                            .map(|r| serde_json::Value::Object(r.clone()))
                            .unwrap_or_default()
                    )),
                    Err(why) => Some(why),
                }
            } else {
                let lettered = self.letters.iter().any(|l| is_letter_of(l, partition, o));
                (!lettered).then(|| "no dead letter".to_string())
            };
            let why = why.or_else(|| {
                (!self.audited.contains(&event.id)).then(|| "no audit record".to_string())
            });
            if let Some(why) = why {
                let detail = format!(
                    "{by:?} stored offset {offset} of partition {partition}, past offset {o} (event {}): {why}",
                    event.id
                );
                return self.violated(Invariant::CommitBeforeDurable, detail);
            }
            self.checked[p] = o + 1;
        }
    }
}

impl Published {
    /// The value of header `name`.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Whether `letter` is the dead letter of `partition`/`offset`.
pub fn is_letter_of(letter: &Published, partition: i32, offset: i64) -> bool {
    letter.header("ordo-original-partition") == Some(partition.to_string().as_str())
        && letter.header("ordo-original-offset") == Some(offset.to_string().as_str())
}
