//! The store seam, simulated: DynamoDB's conditional writes over the world's table, with
//! latency and faults drawn from the world's dice: calls that fail, time out, are throttled,
//! or (writes) take effect while the caller sees an error. Every write that reaches the table
//! is checked: by the partition's owner, one revision up, never older.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use super::plan::KEY;
use super::world::{Invariant, Life, State, World};
use crate::store::{
    Precondition, PutOutcome, Record, Store, StoreError, META_ATTRIBUTE, META_REVISION,
};

/// The table's name in errors.
const TABLE: &str = "sim";

/// One member's store client in one life.
pub struct SimStore {
    /// The world.
    pub world: Arc<World>,
    /// Whose.
    pub life: Life,
}

/// How a call ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fate {
    /// As asked.
    Done,
    /// Refused at once.
    Refused,
    /// No answer until the client's timeout.
    TimedOut,
    /// DynamoDB asks to slow down.
    Throttled,
    /// The write takes effect; the answer is lost.
    Ambiguous,
}

impl SimStore {
    /// The call's latency before and after it takes effect, and its fate.
    fn fate(&self, write: bool) -> (Duration, Duration, Fate) {
        let mut w = self.world.lock();
        let slow = State::during(w.faults.store_slow);
        let latency = |w: &mut State| {
            Duration::from_micros(if slow {
                w.rng.u64(50_000..800_000)
            } else {
                w.rng.u64(200..8_000)
            })
        };
        let (before, after) = (latency(&mut w), latency(&mut w));
        let roll = w.rng.u32(0..1_000);
        let fate = if State::during(w.faults.store_down) {
            Fate::Refused
        } else if State::during(w.faults.store_throttled) && roll < 500 {
            Fate::Throttled
        } else if let Some(percent) = w
            .faults
            .store_flaky
            .filter(|(u, _)| State::during(Some(*u)))
            .map(|(_, p)| p)
        {
            let roll = w.rng.u32(0..300);
            match roll {
                r if r >= percent * 3 => Fate::Done,
                r if r < percent => Fate::Refused,
                r if r < percent * 2 => Fate::TimedOut,
                _ if write => Fate::Ambiguous,
                _ => Fate::Refused,
            }
        } else {
            match roll {
                0..=4 => Fate::Refused,
                5..=7 if write => Fate::Ambiguous,
                8..=9 => Fate::TimedOut,
                _ => Fate::Done,
            }
        };
        w.saw(match fate {
            Fate::Done => "store call answered",
            Fate::Refused => "store call refused",
            Fate::TimedOut => "store call timed out",
            Fate::Throttled => "store call throttled",
            Fate::Ambiguous => "ambiguous write",
        });
        if fate == Fate::TimedOut {
            let timeout = Duration::from_millis(w.rng.u64(1_000..3_000));
            return (before, timeout, fate);
        }
        (before, after, fate)
    }

    /// Waits `delay`, then never returns if this member died meanwhile.
    async fn wait(&self, delay: Duration) {
        tokio::time::sleep(delay).await;
        if !self.world.lock().is_alive(self.life) {
            std::future::pending::<()>().await;
        }
    }

    fn error(&self, operation: &'static str, fate: Fate) -> StoreError {
        let (table, reason) = (TABLE.to_string(), format!("simulated: {fate:?}"));
        match fate {
            Fate::Throttled => StoreError::Throttled {
                operation,
                table,
                reason: "ProvisionedThroughputExceededException".into(),
            },
            _ => StoreError::Request {
                operation,
                table,
                reason,
            },
        }
    }

    /// Writes `record` if `precondition` holds, checking the write.
    fn write(&self, record: &Record, precondition: &Precondition) -> PutOutcome {
        let mut w = self.world.lock();
        let key = record
            .get(KEY)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let partition = w.plan.partition_of(&key);
        let owner = w.owner[partition as usize];
        if owner != Some(self.life) {
            let detail = format!(
                "{:?} wrote key {key} while partition {partition} belongs to {owner:?}",
                self.life
            );
            w.violated(Invariant::TwoOwners, detail);
        }
        let existing = w.table.get(&key).cloned();
        let existing = existing.as_ref();
        let holds = match (precondition, existing) {
            (Precondition::Absent, None) => true,
            (Precondition::Revision(n), Some(r)) => revision(r) == Some(*n),
            (Precondition::Unrevised, Some(r)) => !r.contains_key(META_ATTRIBUTE),
            _ => false,
        };
        if !holds {
            w.conflicts += 1;
            w.saw("conditional write refused");
            w.trace(format_args!(
                "{:?} put {key} {precondition:?}: conflict",
                self.life
            ));
            return PutOutcome::Conflict;
        }
        let before = existing.and_then(revision).unwrap_or(0);
        let after = revision(record).unwrap_or(0);
        if after != before + 1 {
            let detail = format!("key {key}: a write took revision {before} to {after}");
            w.violated(Invariant::Revisions, detail);
        }
        if let Err(why) = w.oracle.never_older(&key, existing, record) {
            w.violated(
                Invariant::Revisions,
                format!("a write made the record older: {why}"),
            );
        }
        w.writes += 1;
        w.trace(format_args!("{:?} put {key} r{after}", self.life));
        w.table.insert(key, record.clone());
        PutOutcome::Written
    }
}

/// The revision `record` carries.
fn revision(record: &Record) -> Option<u64> {
    record
        .get(META_ATTRIBUTE)
        .and_then(|m| m.get(META_REVISION))
        .and_then(Value::as_u64)
}

impl Store for SimStore {
    async fn get(&self, key: &str) -> Result<Option<Record>, StoreError> {
        let (before, after, fate) = self.fate(false);
        self.wait(before).await;
        match fate {
            Fate::Done => {
                let record = self.world.lock().table.get(key).cloned();
                self.wait(after).await;
                Ok(record)
            }
            Fate::TimedOut => {
                self.wait(after).await;
                Err(self.error("GetItem", fate))
            }
            _ => Err(self.error("GetItem", fate)),
        }
    }

    async fn put(
        &self,
        record: &Record,
        precondition: &Precondition,
    ) -> Result<PutOutcome, StoreError> {
        let (before, after, fate) = self.fate(true);
        self.wait(before).await;
        match fate {
            Fate::Done | Fate::Ambiguous => {
                let outcome = self.write(record, precondition);
                self.wait(after).await;
                if fate == Fate::Ambiguous {
                    return Err(self.error("PutItem", fate));
                }
                Ok(outcome)
            }
            Fate::TimedOut => {
                self.wait(after).await;
                Err(self.error("PutItem", fate))
            }
            Fate::Refused | Fate::Throttled => Err(self.error("PutItem", fate)),
        }
    }

    async fn check(&self) -> Result<(), StoreError> {
        Ok(())
    }
}
