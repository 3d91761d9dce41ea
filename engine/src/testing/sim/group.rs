//! The consumer group as the simulation drives it: members in their lives, which partition
//! each owns, and the coordinator's moves: assignment, revocation (fenced, as the Kafka
//! member revokes), crashes, SIGTERMs, restarts and the faults the plan injects.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::bus::{self, SimConsumer, SimPublisher};
use super::plan::{self, Fault, Plan};
use super::policy;
use super::store::SimStore;
use super::world::{Invariant, Life, World};
use super::{AUDIT_TOPIC, TOPIC};
use crate::bus::{Fence, Revoker};
use crate::metrics::ConsumerMetrics;
use crate::pipeline::{consume, Applier, Waits};
use crate::plugin::PolicyHandle;
use crate::shutdown::Trigger;

/// What the driver does next.
#[derive(Debug)]
pub enum Action {
    /// A planned fault.
    Fault(Fault),
    /// A dead member starts again.
    Restart(usize),
    /// A dead life's session expires: the group takes its partitions.
    Expire(Life),
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
pub struct Group {
    /// The world.
    world: Arc<World>,
    /// The plan.
    plan: Arc<Plan>,
    /// Each member's current life (`None` before its first).
    members: Vec<Option<Member>>,
    /// Each member's lives so far.
    lives: Vec<u32>,
    /// Dead lives, kept so that their tasks stay as they were (never stopped, never heard).
    graveyard: Vec<Member>,
}

impl Group {
    /// The plan's members, started, with the partitions shared among them.
    pub fn start(world: &Arc<World>) -> Self {
        let plan = Arc::clone(&world.lock().plan);
        let mut group = Self {
            world: Arc::clone(world),
            members: (0..plan.members).map(|_| None).collect(),
            lives: vec![0; plan.members],
            graveyard: Vec::new(),
            plan,
        };
        for m in 0..group.plan.members {
            group.start_member(m);
        }
        group.balance();
        group
    }

    /// Starts member `m` in a new life, with no partitions yet.
    fn start_member(&mut self, m: usize) {
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
        // The strict source: the plan's events keyed apart from their body are poison.
        pipeline.key_source = crate::config::KeySource::Message;
        let applier = Applier::new(
            SimStore {
                world: Arc::clone(&self.world),
                life,
            },
            policy.clone(),
            &pipeline.key_field,
        )
        .with_key_source(pipeline.key_source)
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
    pub async fn act(&mut self, action: Action, actions: &mut Vec<(Instant, Action)>) {
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
                self.start_member(m);
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
    pub async fn stop(&mut self) {
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
