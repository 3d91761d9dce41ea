//! One seed → one plan: the world's shape, the events the producer sends, and the faults the
//! nemesis injects, all drawn before the run starts.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, FixedOffset, SecondsFormat};
use serde_json::{json, Map, Value};

/// The fields of a patient profile besides its key and version.
pub const FIELDS: [&str; 4] = ["FirstName", "LastName", "IsPregnant", "Sex"];
/// The key field.
pub const KEY: &str = "PatientId";
/// The version field.
pub const VERSION: &str = "UpdatedAt";
/// 2006-01-02T05:00:00Z, the first instant events carry (nanoseconds since the epoch).
const FIRST_INSTANT: i128 = 1_136_178_000 * 1_000_000_000;

/// Which policy is in force.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    /// Whole-record last-writer-wins (`plugins/patient-profile-lww`).
    Lww,
    /// Per-field last-writer-wins (`plugins/patient-profile-field-merge`).
    FieldMerge,
}

/// What an event is, as the oracle knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// A valid update: its instant, and the fields it sets with their values.
    Valid {
        /// Nanoseconds since the epoch; unique among the events of its key.
        instant: i128,
        /// The fields it sets (the version's text included under [`VERSION`]).
        fields: BTreeMap<String, String>,
    },
    /// An event no policy may apply; it belongs in the dead-letter topic.
    Poison(&'static str),
}

/// One event the producer sends.
#[derive(Debug, Clone)]
pub struct Event {
    /// Its request id (`ordo-request-id` header), which the audit trail must name.
    pub id: String,
    /// The entity it updates (for a poison event: the key it pretends to).
    pub key: String,
    /// The Kafka message key.
    pub message_key: String,
    /// The body.
    pub body: String,
    /// What the oracle expects of it.
    pub kind: Kind,
    /// Sent only once the field-merge policy is in force everywhere (a partial update).
    pub after_swap: bool,
    /// Virtual time to wait before sending it.
    pub gap: Duration,
}

/// A fault the nemesis injects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// Every store call fails at once, as a refused connection does.
    StoreDown(Duration),
    /// Store calls fail, time out or take effect unseen (ambiguous writes), with this
    /// probability in percent.
    StoreFlaky(Duration, u32),
    /// Store calls take up to 800 ms.
    StoreSlow(Duration),
    /// Half the store calls are throttled.
    StoreThrottled(Duration),
    /// Publishes (dead letters, audit records) are not acknowledged.
    BusDown(Duration),
    /// The plugin answers "busy" (a transient failure of the host).
    PluginBusy(Duration),
    /// Partitions move between the two members (a rebalance), mid-batch.
    Rebalance,
    /// A member dies (no more effects of any kind) and restarts after this long.
    Crash(usize, Duration),
    /// A member is stopped (SIGTERM: it drains, commits and leaves) and restarts after this
    /// long.
    Leave(usize, Duration),
    /// The next plugin calls panic.
    Panic(u32),
    /// The field-merge policy replaces the last-writer-wins one.
    Swap,
}

/// Everything one seed decides.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The seed.
    pub seed: u64,
    /// Partitions of the topic.
    pub partitions: i32,
    /// Members of the consumer group.
    pub members: usize,
    /// The pipeline's `concurrency`.
    pub concurrency: usize,
    /// The pipeline's `cache_records`.
    pub cache_records: usize,
    /// The policy in force at the start.
    pub policy: Policy,
    /// The events, in the order they are sent.
    pub events: Vec<Event>,
    /// Faults, at virtual times from the start.
    pub faults: Vec<(Duration, Fault)>,
    /// How often stored offsets are committed in the background.
    pub commit_every: Duration,
    /// How long a dead member keeps its partitions before the group moves them.
    pub session_timeout: Duration,
}

impl Plan {
    /// The plan of `seed`.
    pub fn new(seed: u64) -> Self {
        let mut rng = fastrand::Rng::with_seed(seed);
        let partitions = rng.i32(1..=4);
        let members = if rng.u32(0..10) < 8 { 2 } else { 1 };
        let policy = if rng.u32(0..10) < 7 {
            Policy::Lww
        } else {
            Policy::FieldMerge
        };
        let swap = policy == Policy::Lww && rng.bool();
        let partials = policy == Policy::FieldMerge || swap;
        let keys: Vec<String> = (0..rng.usize(1..=6)).map(|k| format!("p{k}")).collect();
        let mut events = Events::new(&mut rng, &keys);
        for key in &keys {
            for _ in 0..rng.usize(1..=6) {
                events.valid(&mut rng, key, true, false);
            }
        }
        for _ in 0..rng.usize(0..=4) {
            events.poison(&mut rng, &keys);
        }
        rng.shuffle(&mut events.list);
        if partials {
            // Partial updates, and whole ones among them, older and newer than those before.
            let first = events.list.len();
            for key in &keys {
                for _ in 0..rng.usize(0..=6) {
                    let whole = rng.u32(0..4) == 0;
                    events.valid(&mut rng, key, whole, policy == Policy::Lww);
                }
            }
            rng.shuffle(&mut events.list[first..]);
        }
        let mut events = events.list;
        for event in &mut events {
            event.gap = Duration::from_millis(if rng.u32(0..4) == 0 {
                0
            } else {
                rng.u64(1..60)
            });
        }
        let sending: Duration = events.iter().map(|e| e.gap).sum();
        let mut faults = Vec::new();
        for _ in 0..rng.usize(0..=8) {
            let at = Duration::from_millis(rng.u64(0..=sending.as_millis() as u64 + 2_000));
            let lasting = Duration::from_millis(rng.u64(100..5_000));
            let fault = match rng.u32(0..100) {
                0..=11 => Fault::StoreDown(lasting),
                12..=29 => Fault::StoreFlaky(lasting, rng.u32(10..=60)),
                30..=37 => Fault::StoreSlow(lasting),
                38..=45 => Fault::StoreThrottled(lasting),
                46..=53 => Fault::BusDown(lasting),
                54..=58 => Fault::PluginBusy(lasting),
                59..=77 => Fault::Rebalance,
                78..=85 => Fault::Crash(
                    rng.usize(0..members),
                    Duration::from_millis(rng.u64(0..15_000)),
                ),
                86..=89 => Fault::Leave(
                    rng.usize(0..members),
                    Duration::from_millis(rng.u64(0..5_000)),
                ),
                _ => Fault::Panic(rng.u32(1..=3)),
            };
            faults.push((at, fault));
        }
        if swap {
            let at = Duration::from_millis(rng.u64(0..=sending.as_millis() as u64 / 2 + 1));
            faults.push((at, Fault::Swap));
        }
        faults.sort_by_key(|(at, _)| *at);
        Self {
            seed,
            partitions,
            members,
            concurrency: rng.usize(1..=8),
            cache_records: if rng.bool() {
                0
            } else {
                crate::store::cache::DEFAULT_CAPACITY
            },
            policy,
            events,
            faults,
            commit_every: Duration::from_millis(rng.u64(20..=1_000)),
            session_timeout: Duration::from_secs(10),
        }
    }

    /// The partition a message key goes to (FNV-1a, as stable as the seed).
    pub fn partition_of(&self, message_key: &str) -> i32 {
        let hash = message_key.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        });
        (hash % self.partitions as u64) as i32
    }
}

/// Events being drawn.
struct Events {
    /// Drawn so far.
    list: Vec<Event>,
    /// Per key, the instants not drawn yet (each key's instants are distinct).
    instants: BTreeMap<String, Vec<i128>>,
}

impl Events {
    fn new(rng: &mut fastrand::Rng, keys: &[String]) -> Self {
        let instants = keys
            .iter()
            .map(|k| {
                let mut steps: Vec<i128> = (0..64).collect();
                rng.shuffle(&mut steps);
                let instants = steps
                    .into_iter()
                    .map(|s| FIRST_INSTANT + s * 1_000_000 + i128::from(rng.u32(0..1_000_000)))
                    .collect();
                (k.clone(), instants)
            })
            .collect();
        Self {
            list: Vec::new(),
            instants,
        }
    }

    /// A valid event of `key`: every field (`whole`) or some.
    fn valid(&mut self, rng: &mut fastrand::Rng, key: &str, whole: bool, after_swap: bool) {
        let n = self.list.len();
        let instant = self
            .instants
            .get_mut(key)
            .and_then(Vec::pop)
            .unwrap_or(FIRST_INSTANT - n as i128);
        let mut fields = BTreeMap::new();
        let mask = if whole { 0b1111 } else { rng.u32(1..0b1111) };
        for (bit, field) in FIELDS.iter().enumerate() {
            if mask & (1 << bit) != 0 {
                fields.insert(field.to_string(), format!("{field}-{n}"));
            }
        }
        fields.insert(VERSION.into(), instant_text(rng, instant));
        let mut body = Map::new();
        body.insert(KEY.into(), key.into());
        for (field, value) in &fields {
            body.insert(field.clone(), value.clone().into());
        }
        self.list.push(Event {
            id: format!("e{n}"),
            key: key.to_string(),
            message_key: key.to_string(),
            body: Value::Object(body).to_string(),
            kind: Kind::Valid { instant, fields },
            after_swap,
            gap: Duration::ZERO,
        });
    }

    /// An event no policy may apply, of one of `keys`.
    fn poison(&mut self, rng: &mut fastrand::Rng, keys: &[String]) {
        let n = self.list.len();
        let key = keys[rng.usize(..keys.len())].clone();
        let at = "2006-01-02T05:00:00Z";
        let (message_key, body, why) = match rng.u32(0..6) {
            0 => (
                key.clone(),
                format!("{{\"{KEY}\":\"{key}\",").into(),
                "not JSON",
            ),
            // No key anywhere: the body lacks it and the message has none to lend it.
            1 => (
                String::new(),
                json!({"FirstName": "nobody", VERSION: at}),
                "no key",
            ),
            2 => (
                key.clone(),
                json!({KEY: key, VERSION: "yesterday"}),
                "no instant",
            ),
            3 => (
                key.clone(),
                json!({KEY: key, "IsPregnant": true, VERSION: at}),
                "not a string",
            ),
            4 => (
                format!("{key}-other"),
                json!({KEY: key, VERSION: at}),
                "message key differs",
            ),
            _ => (
                key.clone(),
                json!({KEY: key, VERSION: "2999-01-01T00:00:00Z"}),
                "from the future",
            ),
        };
        let body = match body {
            Value::String(text) => text,
            other => other.to_string(),
        };
        self.list.push(Event {
            id: format!("e{n}"),
            key,
            message_key,
            body,
            kind: Kind::Poison(why),
            after_swap: false,
            gap: Duration::ZERO,
        });
    }
}

/// `instant` as RFC 3339 text, in one of three offsets: the policies order by instant, never
/// by text.
fn instant_text(rng: &mut fastrand::Rng, instant: i128) -> String {
    let offset = [(0, 0), (10, 0), (-5, -30)][rng.usize(0..3)];
    let Ok(nanos) = i64::try_from(instant) else {
        return String::new();
    };
    FixedOffset::east_opt(offset.0 * 3600 + offset.1 * 60)
        .map(|o| {
            DateTime::from_timestamp_nanos(nanos)
                .with_timezone(&o)
                .to_rfc3339_opts(SecondsFormat::AutoSi, true)
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seed_is_one_plan_and_instants_are_distinct_per_key() {
        let (a, b) = (Plan::new(7), Plan::new(7));
        assert_eq!(format!("{a:?}"), format!("{b:?}"));
        for seed in 0..200 {
            let plan = Plan::new(seed);
            let mut seen = std::collections::BTreeSet::new();
            for e in &plan.events {
                if let Kind::Valid { instant, fields } = &e.kind {
                    assert!(seen.insert((e.key.clone(), *instant)), "seed {seed}");
                    assert!(!fields[VERSION].is_empty());
                }
            }
        }
    }
}
