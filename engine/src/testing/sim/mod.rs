//! A deterministic simulation of the apply path: consume → merge → write → commit.
//!
//! The engine's real apply loop ([`crate::pipeline::consume::run`]: dispatcher, workers,
//! [`crate::pipeline::Applier`], offsets, fence, pace) runs over simulated seams ([`bus`],
//! [`store`], [`policy`]) on tokio's paused clock, in one thread, driven by one seed: the
//! [`plan`] draws the world (partitions, members, events) and the faults, and the world's dice
//! draw every latency and failure. One seed is one schedule; a failing seed replays bit for
//! bit (`ORDO_SIM_SEED=<n>`), its trace printed line by line.
//!
//! Each schedule mixes deliveries out of order across partitions, replays from the last
//! commit (after a rebalance or a crash), store calls that fail, time out, are throttled or
//! take effect unseen (ambiguous writes), partitions moved between two members mid-batch, a
//! worker panic, a crash with a restart from the committed offsets, and a swap of the policy.
//! The checker keeps its own record (what it sent, where) and reads the topics and the table
//! itself; [`crate::testing::oracle`] says what the records must be from the events alone. It checks:
//!
//! - every acknowledged event is applied or skipped (a valid one) or dead-lettered (a poison
//!   one), and has its audit record ([`world::Invariant::Accounting`]);
//! - no offset is stored for commit past an event whose effect is not durable
//!   ([`world::Invariant::CommitBeforeDurable`]);
//! - each final record equals the oracle's fold of its key's events
//!   ([`world::Invariant::FinalRecord`]);
//! - each write raises the revision by one and makes no field older
//!   ([`world::Invariant::Revisions`]);
//! - only the member that owns a key's partition writes it ([`world::Invariant::TwoOwners`]);
//! - and everything settles in time ([`world::Invariant::Stuck`]).

mod bus;
mod group;
mod plan;
mod policy;
mod store;
mod world;

#[cfg(test)]
mod tests;

use std::cell::Cell;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use self::group::{Action, Group};
use self::plan::Plan;
use self::world::{Invariant, Life, Violation, World};
use crate::bus::Message;
use crate::mistakes::Mistake;

/// The simulated event topic.
pub const TOPIC: &str = "sim.events";
/// The simulated audit topic.
pub const AUDIT_TOPIC: &str = "sim.audit";
/// Longest a seed may run, in virtual time, before it counts as stuck.
const DEADLINE: Duration = Duration::from_secs(30 * 60);
/// 2026-01-01T00:00:00Z in milliseconds: message timestamps count from here.
const EPOCH_MS: i64 = 1_767_225_600_000;

/// A past mistake the simulation can put back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bug {
    /// The engine's: see [`Mistake`].
    Engine(Mistake),
    /// The field-merge plugin's: fields of a whole record took its moving instant.
    FieldMergeInstant,
}

impl Bug {
    /// Every bug, by the name `ORDO_SIM_BUG` takes.
    pub const ALL: [(&'static str, Bug); 3] = [
        (
            "commit-before-durable",
            Bug::Engine(Mistake::CommitBeforeDurable),
        ),
        (
            "writes-after-revocation",
            Bug::Engine(Mistake::WritesAfterRevocation),
        ),
        ("field-merge-instant", Bug::FieldMergeInstant),
    ];

    /// The bug named `name`.
    pub fn named(name: &str) -> Option<Bug> {
        Self::ALL.iter().find(|(n, _)| *n == name).map(|(_, b)| *b)
    }

    /// Its name.
    pub fn name(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(_, b)| *b == self)
            .map_or("?", |(n, _)| n)
    }
}

/// What one seed did.
#[derive(Debug)]
pub struct Report {
    /// The seed.
    pub seed: u64,
    /// Events sent.
    pub events: usize,
    /// Deliveries to members (replays included).
    pub deliveries: u32,
    /// Writes that went through, and conditional writes refused.
    pub writes: u64,
    /// Conditional writes refused.
    pub conflicts: u64,
    /// Dead letters.
    pub letters: usize,
    /// Faults injected.
    pub faults: usize,
    /// Virtual time the run took.
    pub virtual_ms: u128,
    /// The hash of the trace: equal for two runs of one seed.
    pub trace: u64,
    /// The first broken invariant.
    pub violation: Option<Violation>,
    /// How often each kind of thing happened.
    pub seen: std::collections::BTreeMap<&'static str, u64>,
    /// The trace, when asked for.
    pub lines: Option<Vec<String>>,
}

thread_local! {
    /// Whether panics on this thread are planned ones, not to be printed.
    static QUIET: Cell<bool> = const { Cell::new(false) };
}

/// Runs `seed`, with `bug` put back; keeps the trace's lines when `verbose`.
pub fn run(seed: u64, bug: Option<Bug>, verbose: bool) -> Report {
    quiet_planned_panics();
    QUIET.with(|q| q.set(true));
    crate::mistakes::make(match bug {
        Some(Bug::Engine(m)) => Some(m),
        _ => None,
    });
    patient_profile_field_merge::policy::mistakes::make_instant(
        bug == Some(Bug::FieldMergeInstant),
    );
    // The thread's dice (the workers' retry jitter) follow the seed too.
    fastrand::seed(seed);
    let report = match tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
    {
        Ok(runtime) => runtime.block_on(drive(seed, verbose)),
        Err(e) => panic!("a runtime for the simulation: {e}"),
    };
    crate::mistakes::make(None);
    patient_profile_field_merge::policy::mistakes::make_instant(false);
    QUIET.with(|q| q.set(false));
    report
}

/// Keeps planned panics (on threads running a simulation) out of the test output.
fn quiet_planned_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let print = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !QUIET.with(Cell::get) {
                print(info);
            }
        }));
    });
}

/// Runs one seed to the end and checks it.
async fn drive(seed: u64, verbose: bool) -> Report {
    let plan = Arc::new(Plan::new(seed));
    let world = World::new(Arc::clone(&plan), verbose);
    let start = Instant::now();
    let mut group = Group::start(&world);
    let producer = tokio::spawn(produce(Arc::clone(&world)));
    let committer = tokio::spawn(commit_every(Arc::clone(&world), plan.commit_every));
    let mut actions: Vec<(Instant, Action)> = plan
        .faults
        .iter()
        .map(|(at, f)| (start + *at, Action::Fault(f.clone())))
        .collect();
    while !actions.is_empty() && world.lock().violation.is_none() {
        // The earliest first; among equals, the one planned first.
        let next = (0..actions.len())
            .min_by_key(|i| (actions[*i].0, *i))
            .unwrap_or(0);
        let (at, action) = actions.remove(next);
        tokio::time::sleep_until(at).await;
        group.act(action, &mut actions).await;
    }
    if world.lock().violation.is_some() {
        producer.abort();
    }
    let _ = producer.await;
    settle(&world, start).await;
    group.stop().await;
    committer.abort();
    let mut w = world.lock();
    if w.violation.is_none() {
        check_accounting(&mut w);
    }
    if w.violation.is_none() {
        check_records(&mut w);
    }
    let deliveries = w.deliveries.values().sum();
    Report {
        seed,
        events: plan.events.len(),
        deliveries,
        writes: w.writes,
        conflicts: w.conflicts,
        letters: w.letters.len(),
        faults: plan.faults.len(),
        virtual_ms: w.now_ms(),
        trace: w.trace_hash(),
        violation: w.violation.clone(),
        seen: std::mem::take(&mut w.seen),
        lines: w.lines.take(),
    }
}

/// Sends every event of the plan, as a producer whose writes the broker acknowledged; partial
/// updates wait until the field-merge policy is in force everywhere.
async fn produce(world: Arc<World>) {
    let plan = Arc::clone(&world.lock().plan);
    for (i, event) in plan.events.iter().enumerate() {
        while event.after_swap && !world.lock().swapped {
            if world.lock().violation.is_some() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        tokio::time::sleep(event.gap).await;
        let mut w = world.lock();
        let partition = plan.partition_of(&event.message_key);
        let offset = w.topic[partition as usize].len() as i64;
        let message = Message {
            topic: TOPIC.into(),
            partition,
            offset,
            key: Some(event.message_key.clone().into_bytes()),
            payload: Some(event.body.clone().into_bytes()),
            timestamp: Some(EPOCH_MS + w.now_ms() as i64),
            headers: vec![(
                crate::audit::REQUEST_ID_KAFKA_HEADER.to_string(),
                event.id.clone(),
            )],
        };
        w.topic[partition as usize].push((i, message));
        w.sent[i] = Some((partition, offset));
        w.trace(format_args!("sent {} to p{partition}@{offset}", event.id));
        drop(w);
        world.arrived.notify_waiters();
    }
}

/// Commits every live member's stored offsets every `every`, as librdkafka does in the
/// background.
async fn commit_every(world: Arc<World>, every: Duration) {
    loop {
        tokio::time::sleep(every).await;
        let mut w = world.lock();
        let lives: Vec<Life> = w
            .alive
            .iter()
            .filter(|(_, a)| **a)
            .map(|(l, _)| *l)
            .collect();
        for life in lives {
            bus::commit(&mut w, life, None);
        }
    }
}

/// Waits until the group committed every partition to its end, or counts the run stuck.
async fn settle(world: &World, start: Instant) {
    loop {
        {
            let mut w = world.lock();
            if w.violation.is_some() {
                return;
            }
            let ends: Vec<i64> = w.topic.iter().map(|p| p.len() as i64).collect();
            if w.committed == ends {
                return;
            }
            if start.elapsed() > DEADLINE {
                let detail = format!(
                    "committed {:?} of {ends:?}; owners {:?}; alive {:?}",
                    w.committed, w.owner, w.alive
                );
                return w.violated(Invariant::Stuck, detail);
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Every event sent is accounted for: a poison one dead-lettered (once per delivery at most),
/// a valid one not, and each in the audit trail.
fn check_accounting(w: &mut world::State) {
    let plan = Arc::clone(&w.plan);
    for (i, event) in plan.events.iter().enumerate() {
        let Some((p, o)) = w.sent[i] else {
            return w.violated(
                Invariant::Accounting,
                format!("{} was never sent", event.id),
            );
        };
        let of_event: Vec<&world::Published> = w
            .letters
            .iter()
            .filter(|l| world::is_letter_of(l, p, o))
            .collect();
        let letters = of_event.len();
        let whole = of_event.iter().all(|l| l.payload == event.body.as_bytes());
        let deliveries = w.deliveries.get(&(p, o)).copied().unwrap_or(0) as usize;
        let poison = w.updates[i].is_none();
        let why = if deliveries == 0 {
            Some("never delivered".to_string())
        } else if !w.audited.contains(&event.id) {
            Some("no audit record".to_string())
        } else if poison && letters == 0 {
            Some("a poison event not dead-lettered".to_string())
        } else if poison && letters > deliveries {
            Some(format!(
                "{letters} dead letters for {deliveries} deliveries"
            ))
        } else if !whole {
            Some("a dead letter without its event".to_string())
        } else if !poison && letters > 0 {
            Some(format!("a valid event dead-lettered {letters} time(s)"))
        } else {
            None
        };
        if let Some(why) = why {
            let detail = format!("{} (p{p}@{o}, {:?}): {why}", event.id, event.kind);
            return w.violated(Invariant::Accounting, detail);
        }
    }
}

/// Every record is the oracle's fold of its key's events; no other record exists.
fn check_records(w: &mut world::State) {
    let mut keys: Vec<String> = w.oracle.keys().cloned().collect();
    keys.extend(w.table.keys().cloned());
    keys.sort();
    keys.dedup();
    for key in keys {
        if let Err(why) = w.oracle.check_final(&key, w.table.get(&key)) {
            return w.violated(Invariant::FinalRecord, why);
        }
    }
}
