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

use self::bus::{SimConsumer, SimPublisher};
use self::plan::{Fault, Plan};
use self::store::SimStore;
use self::world::{Invariant, Life, Violation, World};
use crate::bus::{Fence, Message, Revoker};
use crate::metrics::ConsumerMetrics;
use crate::mistakes::Mistake;
use crate::pipeline::{consume, Applier, Waits};
use crate::plugin::PolicyHandle;
use crate::shutdown::Trigger;

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

/// What the driver does next.
#[derive(Debug)]
enum Action {
    /// A planned fault.
    Fault(Fault),
    /// A dead member starts again.
    Restart(usize),
    /// A dead life's session expires: the group takes its partitions.
    Expire(Life),
}

/// Runs one seed to the end and checks it.
async fn drive(seed: u64, verbose: bool) -> Report {
    let plan = Arc::new(Plan::new(seed));
    let world = World::new(Arc::clone(&plan), verbose);
    let start = Instant::now();
    let mut group = Group {
        world: Arc::clone(&world),
        plan: Arc::clone(&plan),
        members: (0..plan.members).map(|_| None).collect(),
        lives: vec![0; plan.members],
        graveyard: Vec::new(),
    };
    for m in 0..plan.members {
        group.start(m);
    }
    group.balance();
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

/// One member in one life, as the group sees it.
struct Member {
    /// Which life.
    life: Life,
    /// Its policy slot, for swaps.
    policy: PolicyHandle,
    /// Stops it.
    trigger: Trigger,
    /// Fences its revoked partitions and tells its apply loop.
    revoker: Revoker,
    /// Its leases.
    fence: Fence,
    /// Its apply loop.
    task: tokio::task::JoinHandle<()>,
}

/// The consumer group and its coordinator: who owns which partition, lives and deaths.
struct Group {
    world: Arc<World>,
    plan: Arc<Plan>,
    /// Each member's current life (`None` before its first).
    members: Vec<Option<Member>>,
    /// Each member's lives so far.
    lives: Vec<u32>,
    /// Dead lives, kept so that their tasks stay as they were (never stopped, never heard).
    graveyard: Vec<Member>,
}

impl Group {
    /// Starts member `m` in a new life, with no partitions yet.
    fn start(&mut self, m: usize) {
        self.lives[m] += 1;
        let life = (m, self.lives[m]);
        let which = {
            let mut w = self.world.lock();
            w.alive.insert(life, true);
            w.consumers.insert(life, Default::default());
            w.trace(format_args!("{life:?} starts"));
            w.policy
        };
        let (revoker, revocations) = crate::bus::revocations();
        let fence = revocations.fence.clone();
        let policy = PolicyHandle::new(policy::policy(&self.world, which));
        let mut pipeline = crate::testing::pipeline("sim");
        pipeline.topic = TOPIC.into();
        pipeline.dead_letter_topic = format!("{TOPIC}.dlq");
        pipeline.audit_topic = Some(AUDIT_TOPIC.into());
        pipeline.concurrency = self.plan.concurrency;
        pipeline.max_attempts = 0;
        let applier = Applier::new(
            SimStore {
                world: Arc::clone(&self.world),
                life,
            },
            policy.clone(),
            &pipeline.key_field,
        )
        .with_cache(self.plan.cache_records)
        .with_version_skew(&pipeline.version_field, pipeline.max_version_skew);
        let metrics = ConsumerMetrics::default();
        let (trigger, shutdown) = crate::shutdown::channel();
        let task = tokio::spawn(consume::run(
            SimConsumer {
                world: Arc::clone(&self.world),
                life,
            },
            revocations,
            Arc::new(pipeline),
            Arc::new(applier),
            Arc::new(SimPublisher {
                world: Arc::clone(&self.world),
                life,
            }),
            metrics.clone(),
            Waits::new("sim", metrics),
            shutdown,
        ));
        self.members[m] = Some(Member {
            life,
            policy,
            trigger,
            revoker,
            fence,
            task,
        });
    }

    /// The live members' lives.
    fn live(&self) -> Vec<Life> {
        let w = self.world.lock();
        self.members
            .iter()
            .flatten()
            .map(|m| m.life)
            .filter(|l| w.is_alive(*l))
            .collect()
    }

    /// Gives every partition no one holds to the live member holding fewest.
    fn balance(&mut self) {
        let live = self.live();
        if live.is_empty() {
            return;
        }
        for p in 0..self.plan.partitions {
            let w = self.world.lock();
            if w.owner[p as usize].is_some() {
                continue;
            }
            let held = |l: &Life| w.owner.iter().filter(|o| **o == Some(*l)).count();
            let fewest = live.iter().min_by_key(|l| (held(l), **l)).copied();
            drop(w);
            if let Some(to) = fewest {
                self.assign(p, to);
            }
        }
    }

    /// Takes `p` from its live owner, as a rebalance does: fetching stops, the apply loop is
    /// told and its workers fenced; once they let go (at most the engine's revoke wait), the
    /// stored offset is committed and the partition is no one's.
    async fn revoke(&mut self, p: i32) {
        let Some(from) = self.world.lock().owner[p as usize] else {
            return;
        };
        let Some(member) = self.members[from.0].as_ref().filter(|m| m.life == from) else {
            return;
        };
        {
            let mut w = self.world.lock();
            if let Some(c) = w.consumers.get_mut(&from) {
                c.revoking.insert(p);
            }
            w.trace(format_args!("{from:?} revoking p{p}"));
        }
        member.revoker.revoke_now(&[p]);
        let waited = Instant::now();
        while member.fence.held(&[p]) > 0 && waited.elapsed() < crate::bus::kafka::REVOKE_WAIT {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let mut w = self.world.lock();
        if w.is_alive(from) {
            bus::commit(&mut w, from, Some(p));
        }
        if let Some(c) = w.consumers.get_mut(&from) {
            c.owned.remove(&p);
            c.revoking.remove(&p);
            c.stored.remove(&p);
            c.positions.remove(&p);
        }
        w.owner[p as usize] = None;
        w.trace(format_args!("{from:?} revoked p{p}"));
    }

    /// Gives `p` to `to`, which reads it from the committed offset.
    fn assign(&mut self, p: i32, to: Life) {
        let mut w = self.world.lock();
        let from = w.committed[p as usize];
        w.owner[p as usize] = Some(to);
        if let Some(c) = w.consumers.get_mut(&to) {
            c.owned.insert(p);
            c.positions.insert(p, from);
        }
        w.trace(format_args!("{to:?} assigned p{p} from {from}"));
        drop(w);
        self.world.arrived.notify_waiters();
    }

    /// Moves a random non-empty set of live-owned partitions to another live member (or back
    /// to the same one, when it is alone: it replays them from the last commit).
    async fn rebalance(&mut self) {
        let live = self.live();
        let owned: Vec<(i32, Life)> = {
            let w = self.world.lock();
            (0..self.plan.partitions)
                .filter_map(|p| {
                    w.owner[p as usize]
                        .filter(|o| live.contains(o))
                        .map(|o| (p, o))
                })
                .collect()
        };
        let mut moving = Vec::new();
        for (p, from) in owned {
            let mut w = self.world.lock();
            if w.rng.bool() || moving.is_empty() && p == self.plan.partitions - 1 {
                let others: Vec<Life> = live.iter().filter(|l| **l != from).copied().collect();
                let to = if others.is_empty() {
                    from
                } else {
                    others[w.rng.usize(..others.len())]
                };
                moving.push((p, to));
            }
        }
        for (p, to) in moving {
            self.world.lock().saw("partition moved");
            self.revoke(p).await;
            self.assign(p, to);
        }
        self.balance();
    }

    /// Does `action`; follow-ups go into `actions`.
    async fn act(&mut self, action: Action, actions: &mut Vec<(Instant, Action)>) {
        let now = Instant::now();
        let until = |d: Duration| Some(now + d);
        let world = Arc::clone(&self.world);
        match action {
            Action::Fault(fault) => {
                world.lock().trace(format_args!("fault {fault:?}"));
                let mut w = world.lock();
                match fault {
                    Fault::StoreDown(d) => w.faults.store_down = until(d),
                    Fault::StoreFlaky(d, percent) => {
                        w.faults.store_flaky = Some((now + d, percent))
                    }
                    Fault::StoreSlow(d) => w.faults.store_slow = until(d),
                    Fault::StoreThrottled(d) => w.faults.store_throttled = until(d),
                    Fault::BusDown(d) => w.faults.bus_down = until(d),
                    Fault::PluginBusy(d) => w.faults.plugin_busy = until(d),
                    Fault::Panic(n) => w.faults.panics += n,
                    Fault::Swap => {
                        w.saw("policy swapped");
                        w.policy = plan::Policy::FieldMerge;
                        w.swapped = true;
                        drop(w);
                        for member in self.members.iter().flatten() {
                            member
                                .policy
                                .replace(policy::policy(&world, plan::Policy::FieldMerge));
                        }
                    }
                    Fault::Rebalance => {
                        drop(w);
                        self.rebalance().await;
                    }
                    Fault::Leave(m, after) => {
                        drop(w);
                        self.leave(m, after, actions).await;
                    }
                    Fault::Crash(m, after) => {
                        let life = self.members[m].as_ref().map(|m| m.life);
                        if let Some(life) = life.filter(|l| w.is_alive(*l)) {
                            w.alive.insert(life, false);
                            w.saw("crash");
                            w.trace(format_args!("{life:?} dies"));
                            actions.push((now + self.plan.session_timeout, Action::Expire(life)));
                            actions.push((now + after, Action::Restart(m)));
                        }
                    }
                }
            }
            Action::Expire(life) => {
                {
                    let mut w = world.lock();
                    for owner in w.owner.iter_mut().filter(|o| **o == Some(life)) {
                        *owner = None;
                    }
                    w.consumers.remove(&life);
                    w.trace(format_args!("{life:?} expires"));
                }
                self.balance();
            }
            Action::Restart(m) => {
                let alive = self.members[m]
                    .as_ref()
                    .is_some_and(|m| world.lock().is_alive(m.life));
                if alive {
                    return;
                }
                if let Some(dead) = self.members[m].take() {
                    self.graveyard.push(dead);
                }
                self.start(m);
                // A joining member gets a share: about half of the others' partitions.
                let me = self.members[m].as_ref().map(|m| m.life);
                let taken: Vec<i32> = {
                    let mut w = world.lock();
                    let live: Vec<Life> = w
                        .alive
                        .iter()
                        .filter(|(_, a)| **a)
                        .map(|(l, _)| *l)
                        .collect();
                    let held: Vec<i32> = (0..self.plan.partitions)
                        .filter(|p| w.owner[*p as usize].is_some_and(|o| live.contains(&o)))
                        .collect();
                    held.into_iter().filter(|_| w.rng.bool()).collect()
                };
                if let Some(me) = me {
                    for p in taken {
                        self.revoke(p).await;
                        self.assign(p, me);
                    }
                }
                self.balance();
            }
        }
    }

    /// Stops member `m` as SIGTERM does: it drains and commits, the process ends (whatever
    /// it left running ends with it), and the group takes its partitions at once; it starts
    /// again `after` that.
    async fn leave(&mut self, m: usize, after: Duration, actions: &mut Vec<(Instant, Action)>) {
        let Some(member) = self.members[m].as_mut() else {
            return;
        };
        let life = member.life;
        if !self.world.lock().is_alive(life) {
            return;
        }
        self.world.lock().trace(format_args!("{life:?} stops"));
        member.trigger.fire();
        if tokio::time::timeout(Duration::from_secs(60), &mut member.task)
            .await
            .is_err()
        {
            let detail = format!("{life:?} did not stop within 60 s of SIGTERM");
            self.world.lock().violated(Invariant::Stuck, detail);
        }
        {
            let mut w = self.world.lock();
            w.alive.insert(life, false);
            w.saw("graceful stop");
            for owner in w.owner.iter_mut().filter(|o| **o == Some(life)) {
                *owner = None;
            }
            w.consumers.remove(&life);
            w.trace(format_args!("{life:?} left"));
        }
        self.balance();
        actions.push((Instant::now() + after, Action::Restart(m)));
    }

    /// Stops every live member (each drains and commits), as at the end of a run.
    async fn stop(&mut self) {
        for member in self.members.iter_mut().flatten() {
            if !self.world.lock().is_alive(member.life) {
                continue;
            }
            member.trigger.fire();
            let stopped = tokio::time::timeout(Duration::from_secs(60), &mut member.task).await;
            if stopped.is_err() {
                let detail = format!("{:?} did not stop within 60 s of shutdown", member.life);
                self.world.lock().violated(Invariant::Stuck, detail);
            }
        }
    }
}
