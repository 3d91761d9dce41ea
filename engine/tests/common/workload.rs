//! Workloads: shuffled updates of many patients, and the check that the replica holds each
//! patient's newest update.

use std::collections::HashMap;
use std::time::{SystemTime, UNIX_EPOCH};

use super::dynamo::{dynamodb, get_item, s};
use super::engine::Engine;

/// A small deterministic generator, so a failing shuffle can be replayed from its seed.
pub struct Rng(u64);

impl Rng {
    /// Seeded from `ORDO_TEST_SEED` or the clock; the seed is printed.
    pub fn from_env() -> Self {
        let seed = std::env::var("ORDO_TEST_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map(|d| d.as_nanos() as u64)
                    .unwrap_or(1)
            });
        println!("ORDO_TEST_SEED={seed}");
        Self(seed | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            items.swap(i, self.below(i + 1));
        }
    }
}

/// Updates of many patients, each with distinct `UpdatedAt` instants written in mixed UTC
/// offsets; `FirstName` says which update it is.
pub struct Workload {
    /// (patient id, JSON body), in generation order.
    pub events: Vec<(String, String)>,
    /// Per patient, the `FirstName` of its newest update.
    pub newest: HashMap<String, String>,
}

impl Workload {
    pub fn new(rng: &mut Rng, prefix: &str, patients: usize, updates: usize) -> Self {
        use chrono::{DateTime, FixedOffset, SecondsFormat};
        let offsets = [(0, 0), (10, 0), (-5, -30), (5, 45)];
        let base = 1_136_214_000_000_000_000i128; // 2006-01-02T15:00:00Z
        let mut events = Vec::new();
        let mut newest = HashMap::new();
        for p in 0..patients {
            let id = format!("{prefix}-{p}");
            // Distinct instants per patient, in random order of generation.
            let mut steps: Vec<i128> = (0..updates as i128).collect();
            rng.shuffle(&mut steps);
            let newest_step = updates as i128 - 1;
            for step in steps {
                let (h, m) = offsets[rng.below(offsets.len())];
                let offset = FixedOffset::east_opt(h * 3600 + m * 60).expect("offset");
                let nanos = i64::try_from(base + step * 1_000_000 + 123).expect("instant");
                let stamp = DateTime::from_timestamp_nanos(nanos)
                    .with_timezone(&offset)
                    .to_rfc3339_opts(SecondsFormat::Nanos, true);
                let name = format!("v{step}");
                if step == newest_step {
                    newest.insert(id.clone(), name.clone());
                }
                let body = serde_json::json!({
                    "PatientId": id, "FirstName": name, "LastName": "Doe",
                    "IsPregnant": if step % 2 == 0 { "False" } else { "True" }, "UpdatedAt": stamp
                });
                events.push((id.clone(), body.to_string()));
            }
        }
        rng.shuffle(&mut events);
        Self { events, newest }
    }
}

/// Every 500th line is bad, in one of three ways.
fn bad_line(n: usize) -> Option<&'static str> {
    match n % 1500 {
        0 => Some("{not json"),
        500 => Some(r#"{"FirstName":"no key","UpdatedAt":"2006-01-02T15:00:00Z"}"#),
        1000 => Some(r#"{"PatientId":"bad","IsPregnant":true}"#),
        _ => None,
    }
}

/// `events` as NDJSON with a bad line every 500th, and the bad lines' numbers (1-based).
pub fn ndjson_with_bad_lines(events: &[(String, String)]) -> (String, Vec<usize>) {
    let mut text = String::new();
    let mut bad = Vec::new();
    let mut events = events.iter();
    let mut n = 0;
    loop {
        n += 1;
        if let Some(line) = bad_line(n) {
            text.push_str(line);
            bad.push(n);
        } else {
            let Some((_, body)) = events.next() else {
                break;
            };
            text.push_str(body);
        }
        text.push('\n');
    }
    (text, bad)
}

/// Asserts the table holds each patient's newest update.
pub async fn assert_newest(engine: &Engine, newest: &HashMap<String, String>) {
    let client = dynamodb().await;
    let mut wrong = Vec::new();
    for (id, name) in newest {
        match get_item(&client, &engine.names.table, id).await {
            Some(item) if s(&item, "FirstName") == name => {}
            Some(item) => wrong.push(format!("{id}: {} instead of {name}", s(&item, "FirstName"))),
            None => wrong.push(format!("{id}: missing")),
        }
    }
    assert!(
        wrong.is_empty(),
        "{} of {} records wrong: {wrong:?}\nengine log:\n{}",
        wrong.len(),
        newest.len(),
        engine.log()
    );
}
