//! `ordo load <pipeline> <file|->`: a backfill. Reads events, one JSON object per line,
//! checks each as ingest does (the pipeline's plugin validates it; the version is stamped
//! when absent), and produces the good ones keyed by their key with every line in flight up
//! to a window, acknowledged by the broker. A rejected line goes to a side file with its
//! reason and never holds back the others.
//!
//! Resuming: the load reports the first line not yet acknowledged when it stops (an error,
//! Ctrl-C); `--from-line N` starts there. Lines after it may have been produced already; a
//! line produced twice is harmless, since the replica's writes are conditional and a merge
//! of the same event changes nothing (the second copy is skipped as stale).

use std::collections::BTreeSet;
use std::future::Future;
use std::io::{BufRead as _, Read, Write};
use std::time::Duration;

use futures::stream::{FuturesUnordered, StreamExt as _};
use serde_json::{json, Value};
use tokio::sync::mpsc;

use crate::audit;
use crate::bus::{BusError, Delivery, Publisher};
use crate::config::Pipeline;
use crate::plugin::Policy;

/// Events in flight at most by default: enough that the broker, not the wait for acks, sets
/// the pace (1,000 reached 0.65× of rdkafka with every message in flight and the same header
/// in `make bench` on 2026-12-02; issue 34).
pub const DEFAULT_IN_FLIGHT: usize = 50_000;
/// Bytes of events in flight at most, whatever `--in-flight` says: a file of large events
/// does not hold gigabytes in memory.
pub const MAX_BYTES_IN_FLIGHT: usize = 64 << 20;
/// How long the producer keeps trying one event before the load stops: the engine's own
/// (librdkafka's default). A shorter one expires batches while a slow broker catches up, and
/// an expired batch makes librdkafka bump the idempotent producer's epoch, which tansu 0.6
/// does not survive.
pub const DELIVERY_TIMEOUT: Duration = crate::bus::kafka::DEFAULT_DELIVERY_TIMEOUT;
/// How long a load waits for its topic's metadata before the first line: the topics were
/// just checked on the same brokers, so this only runs out when they went away since.
pub const READY_TIMEOUT: Duration = Duration::from_secs(10);
/// Chunks of lines read ahead of the one being checked.
const READ_AHEAD: usize = 16;
/// Lines handed over from the reading thread at once (one wake-up per chunk, not per line).
const CHUNK: usize = 256;
/// The reading thread's buffer.
const READ_BUFFER: usize = 1 << 20;
/// The principal named on the audit records of loaded events.
pub const PRINCIPAL: &str = "ordo-load";

/// How a load runs.
#[derive(Debug, Clone)]
pub struct Options {
    /// The first line to load (1-based); earlier lines are read and passed over.
    pub from_line: u64,
    /// Events in flight at most.
    pub in_flight: usize,
    /// Names this run in the events' request ids (`<run>.<line>`).
    pub run: String,
    /// Lines the side file lists already (a resumed load does not list them twice).
    pub reported: BTreeSet<u64>,
}

/// Where a load stands, for a progress display.
#[derive(Debug, Clone, Copy, Default)]
pub struct Progress {
    /// Lines read (including passed-over and blank ones).
    pub lines: u64,
    /// Bytes read.
    pub bytes: u64,
    /// Events acknowledged.
    pub produced: u64,
    /// Lines rejected.
    pub rejected: u64,
}

/// What a load did.
#[derive(Debug, Clone, Copy, Default)]
pub struct Summary {
    /// Where it ended.
    pub progress: Progress,
    /// The first line not acknowledged, when the load stopped before the end: resume there.
    pub resume_from: Option<u64>,
}

/// Why a load stopped early; `resume_from` says where to start again.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The input or the side file failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The broker did not acknowledge an event within the delivery timeout.
    #[error("line {line}: {source}; resume with --from-line {resume_from}")]
    Produce {
        /// The line not acknowledged.
        line: u64,
        /// Why.
        source: BusError,
        /// The first line not acknowledged.
        resume_from: u64,
    },
}

/// The acknowledged lines, as a resume point: the first line not acknowledged yet.
#[derive(Debug)]
struct Acknowledged {
    /// Every line up to here (exclusive) is acknowledged or needs none.
    next: u64,
    /// Lines acknowledged beyond `next`.
    beyond: BTreeSet<u64>,
}

impl Acknowledged {
    fn done(&mut self, line: u64) {
        self.beyond.insert(line);
        while self.beyond.remove(&self.next) {
            self.next += 1;
        }
    }
}

/// The lines a side file lists, to pass over when a load resumes into it.
pub fn reported(side_file: &str) -> BTreeSet<u64> {
    side_file
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok()?["line"].as_u64())
        .collect()
}

/// Lines as [`read_lines`] hands them over: a chunk at a time, an error ending the input.
pub type Lines = mpsc::Receiver<std::io::Result<Vec<Vec<u8>>>>;

/// Reads `input` on a thread of its own, in chunks of lines, so that a load can stop (Ctrl-C)
/// while its input is silent, and acknowledgements are taken while lines are being read. A
/// chunk is handed over when it is full or when what was read is used up (the next read may
/// wait for input that is not coming yet: a pipe left open must not hold lines back).
pub fn read_lines(input: impl Read + Send + 'static) -> Lines {
    let (chunks, rx) = mpsc::channel(READ_AHEAD);
    std::thread::spawn(move || {
        let mut reader = std::io::BufReader::with_capacity(READ_BUFFER, input);
        let mut chunk = Vec::with_capacity(CHUNK);
        loop {
            let mut line = Vec::new();
            match reader.read_until(b'\n', &mut line) {
                Ok(0) => break,
                Ok(_) => {
                    if line.last() == Some(&b'\n') {
                        line.pop();
                    }
                    chunk.push(line);
                }
                Err(e) => {
                    let _ = chunks.blocking_send(Ok(std::mem::take(&mut chunk)));
                    let _ = chunks.blocking_send(Err(e));
                    return;
                }
            }
            if chunk.len() == CHUNK || reader.buffer().is_empty() {
                let full = std::mem::replace(&mut chunk, Vec::with_capacity(CHUNK));
                if chunks.blocking_send(Ok(full)).is_err() {
                    return;
                }
            }
        }
        if !chunk.is_empty() {
            let _ = chunks.blocking_send(Ok(chunk));
        }
    });
    rx
}

/// Loads the `lines` (see [`read_lines`]) into `pipeline`'s topic through `publisher`,
/// checking each with `policy`; rejected lines go to `rejects` (as JSON lines: line, status,
/// field, reason, event). Stops reading when `stop` completes, waits for the events in flight,
/// and reports through `progress`.
#[allow(clippy::too_many_arguments)]
pub async fn load<P: Publisher>(
    pipeline: &Pipeline,
    policy: &dyn Policy,
    publisher: &P,
    mut lines: Lines,
    rejects: &mut impl Write,
    options: &Options,
    stop: impl Future<Output = ()>,
    mut progress: impl FnMut(Progress),
) -> Result<Summary, LoadError> {
    let mut at = Progress::default();
    let mut acked = Acknowledged {
        next: options.from_line.max(1),
        beyond: BTreeSet::new(),
    };
    let mut flying = FuturesUnordered::new();
    let mut flying_bytes = 0usize;
    let mut failure: Option<(u64, BusError)> = None;
    let mut stop = std::pin::pin!(stop);
    let mut stopped = false;
    let mut pending = std::collections::VecDeque::new();
    let mut input_done = false;
    while failure.is_none() {
        let room = room(flying.len(), flying_bytes, options.in_flight);
        if room && pending.is_empty() && !input_done {
            tokio::select! {
                biased;
                () = &mut stop => {
                    stopped = true;
                    break;
                }
                Some(done) = flying.next(), if !flying.is_empty() => {
                    settle(done, &mut flying_bytes, &mut acked, &mut at, &mut failure);
                }
                chunk = lines.recv() => match chunk {
                    Some(chunk) => pending.extend(chunk?),
                    None => input_done = true,
                },
            }
            continue;
        }
        if !room {
            tokio::select! {
                biased;
                () = &mut stop => {
                    stopped = true;
                    break;
                }
                Some(done) = flying.next() => settle(done, &mut flying_bytes, &mut acked, &mut at, &mut failure),
            }
            continue;
        }
        let Some(mut text) = pending.pop_front() else {
            break;
        };
        at.lines += 1;
        at.bytes += text.len() as u64 + 1;
        let number = at.lines;
        if number < options.from_line {
            continue;
        }
        if text.last() == Some(&b'\r') {
            text.pop();
        }
        if text.iter().all(u8::is_ascii_whitespace) {
            acked.done(number);
            continue;
        }
        let checked = serde_json::from_slice::<Value>(&text)
            .map_err(|e| (400, String::new(), format!("not valid JSON: {e}")))
            .and_then(|value| {
                crate::ingest::prepare(pipeline, policy, value)
                    .map_err(|p| (p.status, p.field.unwrap_or_default(), p.detail))
            });
        match checked {
            Ok(event) => {
                let id = format!("{}.{number}", options.run);
                let size = text.len();
                flying_bytes += size;
                flying.push(async move {
                    // The principal is read only by the audit trail: without one it is left
                    // out (each header costs the broker; the request id names the line).
                    let principal = (audit::PRINCIPAL_KAFKA_HEADER, PRINCIPAL);
                    let request = (audit::REQUEST_ID_KAFKA_HEADER, id.as_str());
                    // The signature only with an audit trail to read it (a profile of a load
                    // without one found SHA-256 in 3 % of its samples).
                    let mac = match pipeline.audit_topic {
                        Some(_) => crate::vouch::sign(
                            PRINCIPAL,
                            event.key.as_bytes(),
                            event.text.as_bytes(),
                        ),
                        None => String::new(),
                    };
                    let signed = (crate::vouch::MAC_KAFKA_HEADER, mac.as_str());
                    let audited = [request, principal, signed];
                    let headers = if pipeline.audit_topic.is_some() {
                        &audited[..]
                    } else {
                        &audited[..1]
                    };
                    let sent = publisher
                        .publish(&pipeline.topic, &event.key, event.text.as_bytes(), headers)
                        .await;
                    if let (Ok(_), Some(topic)) = (&sent, pipeline.audit_topic.as_deref()) {
                        let mut record =
                            audit::Record::new(audit::Action::Ingest, &pipeline.name, "accepted");
                        record.principal = Some(PRINCIPAL);
                        record.key = Some(&event.key);
                        record.request_id = Some(&id);
                        if let Err(e) = audit::write(publisher, topic, &record).await {
                            return (number, size, Err(e));
                        }
                    }
                    (number, size, sent)
                });
            }
            Err(_) if options.reported.contains(&number) => {
                at.rejected += 1;
                acked.done(number);
            }
            Err((status, field, reason)) => {
                let letter = json!({
                    "line": number,
                    "status": status,
                    "field": field,
                    "reason": reason,
                    "event": String::from_utf8_lossy(&text),
                });
                writeln!(rejects, "{letter}")?;
                at.rejected += 1;
                acked.done(number);
            }
        }
        if number % 1000 == 0 {
            progress(at);
        }
    }
    while let Some(done) = flying.next().await {
        settle(done, &mut flying_bytes, &mut acked, &mut at, &mut failure);
    }
    rejects.flush()?;
    progress(at);
    if let Some((line, source)) = failure {
        return Err(LoadError::Produce {
            line,
            source,
            resume_from: acked.next,
        });
    }
    Ok(Summary {
        progress: at,
        resume_from: stopped.then_some(acked.next),
    })
}

/// Whether another event may go out with `events` of `bytes` in flight: fewer than
/// `in_flight` events and [`MAX_BYTES_IN_FLIGHT`] bytes, and always one.
fn room(events: usize, bytes: usize, in_flight: usize) -> bool {
    events == 0 || (events < in_flight.max(1) && bytes < MAX_BYTES_IN_FLIGHT)
}

/// Records one event's acknowledgement, or the first failure.
fn settle(
    (line, size, sent): (u64, usize, Result<Delivery, BusError>),
    flying_bytes: &mut usize,
    acked: &mut Acknowledged,
    at: &mut Progress,
    failure: &mut Option<(u64, BusError)>,
) {
    *flying_bytes = flying_bytes.saturating_sub(size);
    match sent {
        Ok(_) => {
            at.produced += 1;
            acked.done(line);
        }
        Err(source) => {
            if failure.is_none() {
                *failure = Some((line, source));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugin::PolicyHandle;
    use crate::testing::{pipeline, MaxV, MemoryBus};

    #[test]
    fn events_in_flight_are_bounded_by_count_and_by_bytes() {
        assert!(room(0, usize::MAX, 1), "one always goes");
        assert!(room(999, 1 << 20, 1_000));
        assert!(!room(1_000, 1 << 20, 1_000));
        assert!(
            !room(10, MAX_BYTES_IN_FLIGHT, DEFAULT_IN_FLIGHT),
            "large events"
        );
    }

    fn options() -> Options {
        Options {
            from_line: 1,
            in_flight: 3,
            run: "t".into(),
            reported: BTreeSet::new(),
        }
    }

    async fn run(input: &str, options: &Options, bus: &MemoryBus) -> (Summary, String) {
        let mut p = pipeline("p");
        p.key_field = "k".into();
        p.audit_topic = Some("p.audit".into());
        let policy = PolicyHandle::new(std::sync::Arc::new(MaxV));
        let mut rejects = Vec::new();
        let summary = load(
            &p,
            policy.current().as_ref(),
            bus,
            read_lines(std::io::Cursor::new(input.to_string())),
            &mut rejects,
            options,
            std::future::pending(),
            |_| {},
        )
        .await
        .expect("loaded");
        (summary, String::from_utf8(rejects).expect("UTF-8"))
    }

    #[tokio::test]
    async fn good_lines_are_produced_keyed_and_bad_ones_set_aside_with_their_reason() {
        let bus = MemoryBus::new(2);
        let input = "{\"k\":\"a\",\"v\":1}\nnot json\n\n{\"k\":\"b\"}\n{\"k\":\"c\",\"v\":3}\n";
        let (summary, rejects) = run(input, &options(), &bus).await;
        assert_eq!(summary.progress.produced, 2);
        assert_eq!(summary.progress.rejected, 2);
        assert_eq!(summary.resume_from, None, "it ran to the end");
        let events = bus.published("p.events");
        let mut keys: Vec<&str> = events.iter().map(|e| e.key.as_str()).collect();
        keys.sort_unstable();
        assert_eq!(keys, ["a", "c"]);
        assert!(events
            .iter()
            .all(|e| e.header("ordo-principal") == Some(PRINCIPAL)));
        let rejected: Vec<Value> = rejects
            .lines()
            .map(|l| serde_json::from_str(l).expect("JSON"))
            .collect();
        assert_eq!(rejected[0]["line"], 2);
        assert!(rejected[0]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("not valid JSON")));
        assert_eq!(rejected[1]["line"], 4);
        assert_eq!(rejected[1]["field"], "v");
        assert_eq!(rejected[1]["event"], "{\"k\":\"b\"}");
        assert_eq!(bus.published("p.audit").len(), 2, "one record per event");
    }

    #[tokio::test]
    async fn a_resumed_load_starts_at_its_line() {
        let bus = MemoryBus::new(1);
        let input = "{\"k\":\"a\",\"v\":1}\n{\"k\":\"b\",\"v\":2}\n{\"k\":\"c\",\"v\":3}\n";
        let from_two = Options {
            from_line: 2,
            ..options()
        };
        let (summary, _) = run(input, &from_two, &bus).await;
        assert_eq!(summary.progress.produced, 2);
        let keys: Vec<String> = bus
            .published("p.events")
            .iter()
            .map(|e| e.key.clone())
            .collect();
        assert_eq!(keys, ["b", "c"]);
    }

    #[tokio::test]
    async fn a_load_stopped_while_its_input_is_silent_says_where_to_resume() {
        let bus = MemoryBus::new(1);
        let mut p = pipeline("p");
        p.key_field = "k".into();
        let policy = PolicyHandle::new(std::sync::Arc::new(MaxV));
        let (input, lines) = mpsc::channel(8);
        let chunk = ["{\"k\":\"a\",\"v\":1}", "{\"k\":\"b\",\"v\":2}"]
            .map(|line| line.as_bytes().to_vec())
            .to_vec();
        input.send(Ok(chunk)).await.expect("sent");
        // Stop once both are produced; the input stays open and says nothing more.
        let stop = async {
            while bus.published("p.events").len() < 2 {
                tokio::task::yield_now().await;
            }
        };
        let summary = load(
            &p,
            policy.current().as_ref(),
            &bus,
            lines,
            &mut Vec::new(),
            &options(),
            stop,
            |_| {},
        )
        .await
        .expect("stopped");
        assert_eq!(summary.progress.produced, 2);
        assert_eq!(summary.resume_from, Some(3));
        drop(input);
    }

    #[tokio::test]
    async fn lines_read_so_far_are_handed_over_while_the_input_stays_open() {
        // A pipe whose writer sent three lines and then waits: a partial chunk must come out.
        let (reader, mut writer) = std::io::pipe().expect("pipe");
        writer.write_all(b"a\nb\nc\n").expect("written");
        let mut lines = read_lines(reader);
        let chunk = lines.recv().await.expect("a chunk").expect("read");
        assert_eq!(chunk, [b"a".to_vec(), b"b".to_vec(), b"c".to_vec()]);
        drop(writer);
        assert!(
            lines.recv().await.is_none(),
            "the end of the input ends the lines"
        );
    }

    #[test]
    fn the_resume_point_is_the_first_line_not_acknowledged() {
        let mut acked = Acknowledged {
            next: 1,
            beyond: BTreeSet::new(),
        };
        acked.done(2);
        acked.done(3);
        assert_eq!(acked.next, 1);
        acked.done(1);
        assert_eq!(acked.next, 4);
    }
}
