//! The simulation's seeds: every invariant over many schedules; one seed, one schedule; and
//! three past mistakes put back, each found.

use std::time::Instant;

use super::world::Invariant;
use super::{run, Bug, Report};
use crate::mistakes::Mistake;

/// Seeds `make test` runs (`ORDO_SIM_SEEDS` to change).
const SEEDS: u64 = 10_000;

fn seeds() -> u64 {
    std::env::var("ORDO_SIM_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(SEEDS)
}

/// Runs `seeds` on every core, with `bug` put back; stops at the first violation when
/// `first`. The failing reports, by seed.
fn sweep(seeds: std::ops::Range<u64>, bug: Option<Bug>, first: bool) -> (Vec<Report>, Totals) {
    let threads = std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .clamp(1, 4) as u64;
    let stop = std::sync::atomic::AtomicU64::new(u64::MAX);
    let results: Vec<(Vec<Report>, Totals)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let (seeds, stop) = (seeds.clone(), &stop);
                scope.spawn(move || {
                    let (mut failed, mut totals) = (Vec::new(), Totals::default());
                    for seed in seeds.filter(|s| s % threads == t) {
                        if seed > stop.load(std::sync::atomic::Ordering::SeqCst) {
                            break;
                        }
                        let report = run(seed, bug, false);
                        totals.add(&report);
                        if report.violation.is_some() {
                            if first {
                                stop.fetch_min(seed, std::sync::atomic::Ordering::SeqCst);
                            }
                            failed.push(report);
                        }
                    }
                    (failed, totals)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_default())
            .collect()
    });
    let mut failed = Vec::new();
    let mut totals = Totals::default();
    for (f, t) in results {
        failed.extend(f);
        totals.merge(&t);
    }
    failed.sort_by_key(|r| r.seed);
    (failed, totals)
}

/// What a sweep did, summed.
#[derive(Debug, Default)]
struct Totals {
    seeds: u64,
    events: usize,
    deliveries: u64,
    writes: u64,
    conflicts: u64,
    letters: usize,
    faults: usize,
    virtual_s: u128,
    seen: std::collections::BTreeMap<&'static str, u64>,
}

impl Totals {
    fn add(&mut self, r: &Report) {
        self.seeds += 1;
        self.events += r.events;
        self.deliveries += u64::from(r.deliveries);
        self.writes += r.writes;
        self.conflicts += r.conflicts;
        self.letters += r.letters;
        self.faults += r.faults;
        self.virtual_s += r.virtual_ms / 1000;
        for (what, n) in &r.seen {
            *self.seen.entry(what).or_default() += n;
        }
    }

    fn merge(&mut self, o: &Totals) {
        self.seeds += o.seeds;
        self.events += o.events;
        self.deliveries += o.deliveries;
        self.writes += o.writes;
        self.conflicts += o.conflicts;
        self.letters += o.letters;
        self.faults += o.faults;
        self.virtual_s += o.virtual_s;
        for (what, n) in &o.seen {
            *self.seen.entry(what).or_default() += n;
        }
    }
}

/// A failing report as a reader needs it: the seed, the invariant, and how to replay it.
fn describe(r: &Report, bug: Option<Bug>) -> String {
    let with = bug
        .map(|b| format!("ORDO_SIM_BUG={} ", b.name()))
        .unwrap_or_default();
    match &r.violation {
        Some(v) => format!(
            "seed {}: {:?} at {} ms: {}\n  replay: {with}ORDO_SIM_SEED={} cargo test -p ordo --lib testing::sim::tests::every -- --nocapture",
            r.seed, v.invariant, v.at_ms, v.detail, r.seed
        ),
        None => format!("seed {}: no violation", r.seed),
    }
}

#[test]
fn every_invariant_holds_on_every_seed() {
    if let Some(seed) = std::env::var("ORDO_SIM_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        // One seed, its trace line by line, with the bug `ORDO_SIM_BUG` names put back.
        let bug = std::env::var("ORDO_SIM_BUG").ok().map(|name| {
            Bug::named(&name).unwrap_or_else(|| {
                panic!(
                    "ORDO_SIM_BUG: no bug {name:?}; one of {:?}",
                    Bug::ALL.map(|(n, _)| n)
                )
            })
        });
        let report = run(seed, bug, true);
        for line in report.lines.iter().flatten() {
            println!("{line}");
        }
        assert!(report.violation.is_none(), "{}", describe(&report, bug));
        return;
    }
    let started = Instant::now();
    let (failed, totals) = sweep(0..seeds(), None, false);
    println!(
        "simulation: {} seeds in {:.1} s: {} events, {} deliveries, {} writes, {} conflicts, {} dead letters, {} faults, {} s of virtual time",
        totals.seeds,
        started.elapsed().as_secs_f64(),
        totals.events,
        totals.deliveries,
        totals.writes,
        totals.conflicts,
        totals.letters,
        totals.faults,
        totals.virtual_s
    );
    for (what, n) in &totals.seen {
        println!("  {what}: {n}");
    }
    let described: Vec<String> = failed.iter().map(|r| describe(r, None)).collect();
    assert!(
        failed.is_empty(),
        "{} failing seeds:\n{}",
        failed.len(),
        described.join("\n")
    );
}

#[test]
fn one_seed_is_one_schedule() {
    for seed in 0..40 {
        let (a, b) = (run(seed, None, false), run(seed, None, false));
        assert_eq!(
            (a.trace, a.writes, a.deliveries, a.virtual_ms),
            (b.trace, b.writes, b.deliveries, b.virtual_ms),
            "seed {seed} ran two ways"
        );
    }
}

/// Runs the seeds `make test` runs with `bug` put back until one breaks `invariant` in a way
/// `detail` accepts; the seed that did.
fn finds(bug: Bug, invariant: Invariant, detail: impl Fn(&str) -> bool) -> u64 {
    let (failed, totals) = sweep(0..seeds(), Some(bug), true);
    let Some(first) = failed.first() else {
        panic!("{bug:?} went unnoticed in {} seeds", totals.seeds);
    };
    let v = first
        .violation
        .as_ref()
        .map(|v| (v.invariant, v.detail.clone()));
    let described = describe(first, Some(bug));
    assert_eq!(v.as_ref().map(|v| v.0), Some(invariant), "{described}");
    assert!(v.is_some_and(|v| detail(&v.1)), "{described}");
    println!("{} found: {described}", bug.name());
    first.seed
}

#[test]
fn it_finds_offsets_committed_before_their_write_is_durable() {
    finds(
        Bug::Engine(Mistake::CommitBeforeDurable),
        Invariant::CommitBeforeDurable,
        |_| true,
    );
}

#[test]
fn it_finds_a_revoked_partitions_worker_writing_on() {
    finds(
        Bug::Engine(Mistake::WritesAfterRevocation),
        Invariant::TwoOwners,
        |_| true,
    );
}

#[test]
fn it_finds_the_field_merge_instant_mistake() {
    // A value the oracle disagrees with, not only the instants kept beside it.
    finds(Bug::FieldMergeInstant, Invariant::FinalRecord, |detail| {
        super::plan::FIELDS
            .iter()
            .any(|f| detail.contains(&format!("`{f}` is")))
    });
}
