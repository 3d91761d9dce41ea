//! The consume benchmark's main table: each design's figures over the runs, as medians with
//! their range, and each run's raw figures as CSV (`ordo_bench::results`).

use ordo_bench::results::Table;
use ordo_bench::{spread, Spread};

use crate::designs::{Design, Run, StoreKind};

/// The report's header (the table's first two lines).
pub const HEADER: &str = "| store | workload | events | design | events/s, median (range) | writes/event, median (range) | requests/event, median (range) | stale records at the end, median (range) | vs baseline | vs no-op ceiling |\n|---|---|---|---|---|---|---|---|---|---|";

/// One design's figures over the runs.
#[derive(Default)]
pub struct Figures {
    /// Events per run (the same every run).
    events: usize,
    /// Events per second, one per run.
    rates: Vec<f64>,
    /// Conditional writes that went through, per event, one per run.
    writes: Vec<f64>,
    /// Reads and writes tried, per event, one per run.
    requests: Vec<f64>,
    /// Stale records at the end, one per audited run.
    stale: Vec<f64>,
}

impl Figures {
    /// Adds one run's figures.
    pub fn add(&mut self, run: &Run) {
        self.events = run.events;
        self.rates.push(run.rate);
        if let Some(c) = run.counts {
            let per_event = |x: u64| x as f64 / run.events as f64;
            self.writes.push(per_event(c.written));
            self.requests.push(per_event(c.requests()));
        }
        if let Some(a) = run.audit {
            self.stale.push(a.stale as f64);
        }
    }

    /// Whether any run was measured.
    pub fn measured(&self) -> bool {
        !self.rates.is_empty()
    }

    /// The rates' median and range.
    pub fn rate(&mut self) -> Spread {
        spread(&mut self.rates)
    }

    /// A column's median and range, or "—" when it has no figures.
    fn cell(values: &mut [f64], decimals: usize) -> String {
        if values.is_empty() {
            "—".into()
        } else {
            spread(values).show(decimals)
        }
    }

    /// (writes/event, requests/event, stale records) as the table shows them.
    fn cells(&mut self) -> [String; 3] {
        [
            Self::cell(&mut self.writes, 2),
            Self::cell(&mut self.requests, 2),
            Self::cell(&mut self.stale, 0),
        ]
    }
}

/// Each run's raw figures: `consume_bench-designs.csv`.
pub fn raw_table() -> Table {
    Table::new(
        "consume_bench-designs",
        &[
            "store",
            "workload",
            "run",
            "position_in_run",
            "design",
            "events",
            "events_per_s",
            "gets",
            "puts",
            "written",
            "stale",
            "missing",
        ],
    )
}

/// Appends one run of one design to `table`.
pub fn raw_row(
    table: &Table,
    store: StoreKind,
    shape: &str,
    (run, position): (usize, usize),
    design: Design,
    r: &Run,
) -> anyhow::Result<()> {
    let opt = |x: Option<u64>| x.map_or(String::new(), |x| x.to_string());
    let c = r.counts;
    table.row(&[
        store.word().into(),
        shape.into(),
        run.to_string(),
        position.to_string(),
        design.word().into(),
        r.events.to_string(),
        format!("{:.1}", r.rate),
        opt(c.map(|c| c.gets)),
        opt(c.map(|c| c.puts)),
        opt(c.map(|c| c.written)),
        opt(r.audit.map(|a| a.stale as u64)),
        opt(r.audit.map(|a| a.missing as u64)),
    ])
}

/// Prints the rows of one store and shape, every design in the report's order; returns the
/// medians of (the baseline, Ordo, the ceiling when measured).
pub fn rows(
    store: &str,
    shape: &str,
    figures: &mut [(Design, Figures)],
) -> (f64, f64, Option<f64>) {
    let median = |figures: &mut [(Design, Figures)], d: Design| {
        figures
            .iter_mut()
            .find(|(x, f)| *x == d && f.measured())
            .map(|(_, f)| f.rate().median)
    };
    let base = median(figures, Design::Sequential).unwrap_or(f64::NAN);
    let ordo = median(figures, Design::Ordo).unwrap_or(f64::NAN);
    let ceiling = median(figures, Design::NoOp);
    let vs_ceiling = |x: f64| ceiling.map_or("—".to_string(), |c| format!("{:.2}×", x / c));
    for design in Design::ALL {
        let Some((_, f)) = figures.iter_mut().find(|(d, _)| *d == design) else {
            continue;
        };
        let rate = f.rate();
        let vs_base = rate.median / base;
        if design == Design::NoOp {
            println!(
                "| — (reads only) | {shape} | {} | {} | {} | — | — | — | {vs_base:.1}× | 1.00× |",
                f.events,
                design.label(),
                rate.show(0),
            );
            continue;
        }
        let [writes, requests, stale] = f.cells();
        println!(
            "| {store} | {shape} | {} | {} | {} | {writes} | {requests} | {stale} | {vs_base:.1}× | {} |",
            f.events,
            design.label(),
            rate.show(0),
            vs_ceiling(rate.median)
        );
    }
    (base, ordo, ceiling)
}
