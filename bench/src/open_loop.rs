//! Open-loop load, as latency is measured without coordinated omission: requests offered at
//! a fixed rate whatever the answers do, each remembered with the instant it was due, and the
//! instants their writes landed, as the wire model recorded them.

use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;

use crate::wire::child::ModelProcess;

/// Longest one request may take to be answered.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// A new patient `key`, as the seed's shape.
fn body(key: &str) -> String {
    format!(
        r#"{{"PatientId":"{key}","FirstName":"John","LastName":"Doe","IsPregnant":"False","Sex":"Female","UpdatedAt":"2006-01-02T15:00:00.5+10:00"}}"#
    )
}

/// Nanoseconds since the Unix epoch now: the clock the model stamps landings with.
fn wall_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// One request as sent.
pub struct Request {
    /// The patient it created.
    pub key: String,
    /// When it was due, in Unix-epoch nanoseconds.
    pub due_ns: u64,
    /// Due → answered 202, in microseconds; `None` when refused or unanswered.
    pub acked_us: Option<u64>,
}

/// Offers `rate` requests a second to `url` for `seconds`, each a new patient keyed
/// `<label>-<n>`: request `n` is sent when due (`start + n / rate`), or at once when the
/// sender is late, never held back by an answer; returns them once every one is answered.
pub async fn offer(
    http: &reqwest::Client,
    url: &str,
    label: &str,
    rate: usize,
    seconds: f64,
) -> anyhow::Result<Vec<Request>> {
    let count = ((rate as f64 * seconds).round() as usize).max(1);
    let period = Duration::from_secs_f64(1.0 / rate as f64);
    let (start, start_ns) = (Instant::now(), wall_nanos());
    let mut answers = Vec::with_capacity(count);
    for n in 0..count {
        let offset = period * n as u32;
        tokio::time::sleep_until((start + offset).into()).await;
        let key = format!("{label}-{n}");
        let request = http
            .post(url)
            .header("content-type", "application/json")
            .body(body(&key))
            .timeout(REQUEST_TIMEOUT)
            .send();
        let due = start + offset;
        answers.push((
            key,
            start_ns + offset.as_nanos() as u64,
            tokio::spawn(async move {
                let answered = request.await.ok()?;
                (answered.status().as_u16() == 202).then(|| due.elapsed().as_micros() as u64)
            }),
        ));
    }
    let mut sent = Vec::with_capacity(count);
    for (key, due_ns, answer) in answers {
        sent.push(Request {
            key,
            due_ns,
            acked_us: answer.await.context("a sender task")?,
        });
    }
    Ok(sent)
}

/// The writes read from the model so far: key → Unix-epoch nanoseconds of its first landing.
pub struct Landed {
    /// The table read.
    table: String,
    /// The model's index of the next landing to read.
    from: usize,
    /// First landing per key, since the last [`Landed::clear`].
    at: HashMap<String, u64>,
}

impl Landed {
    /// Nothing read yet of `table`.
    pub fn new(table: &str) -> Self {
        Self {
            table: table.to_string(),
            from: 0,
            at: HashMap::new(),
        }
    }

    /// Reads what landed since the last call.
    async fn read(&mut self, model: &ModelProcess) -> anyhow::Result<()> {
        let page = model.landings(&self.table, self.from).await?;
        self.from = page.next;
        for (key, at) in page.landings {
            self.at.entry(key).or_insert(at);
        }
        Ok(())
    }

    /// Waits until every accepted request of `sent` has landed, or `drain` has passed.
    pub async fn wait(
        &mut self,
        model: &ModelProcess,
        sent: &[Request],
        drain: Duration,
    ) -> anyhow::Result<()> {
        let deadline = Instant::now() + drain;
        loop {
            self.read(model).await?;
            let missing = sent
                .iter()
                .filter(|r| r.acked_us.is_some() && !self.at.contains_key(&r.key))
                .count();
            if missing == 0 || Instant::now() >= deadline {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// When `key` first landed, in Unix-epoch nanoseconds.
    pub fn at(&self, key: &str) -> Option<u64> {
        self.at.get(key).copied()
    }

    /// Forgets the landings read (the keys of one rate are not the next rate's).
    pub fn clear(&mut self) {
        self.at.clear();
    }
}
