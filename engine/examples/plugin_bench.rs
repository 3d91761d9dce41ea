//! The cost of one `merge` call: each patient-profile plugin as a sandboxed component, against
//! the same rule compiled natively, measured in one run.
//!
//! `cargo run --release -p ordo --example plugin_bench` (part of `make bench`). Prints the
//! median over `ROUNDS` rounds of the median call time of each round, and the spread.

use std::hint::black_box;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use ordo::plugin::sandbox::{Capabilities, Limits};
use ordo::plugin::wasm::WasmPolicy;
use ordo::plugin::Policy;
use ordo_plugin_sdk::run;
use patient_profile_field_merge::policy::FieldMerge;
use patient_profile_lww::policy::Lww;

/// Rounds (`ORDO_BENCH_RUNS`, default 7) and calls per round (`ORDO_BENCH_CALLS`, 20,000).
fn setting(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
        .max(1)
}

const STORED: &str = r#"{"PatientId":"1","FirstName":"John","LastName":"Doe","IsPregnant":"False","Sex":"Female","UpdatedAt":"2006-01-02T15:00:00+10:00"}"#;
const INCOMING: &str = r#"{"PatientId":"1","FirstName":"John","LastName":"Doe","IsPregnant":"True","Sex":"Female","UpdatedAt":"2006-01-02T15:00:00.5+10:00"}"#;

/// Median nanoseconds of one call of `f`, over `ORDO_BENCH_CALLS` calls.
fn median_ns(mut f: impl FnMut()) -> f64 {
    let calls = setting("ORDO_BENCH_CALLS", 20_000);
    for _ in 0..calls / 10 {
        f();
    }
    let mut samples: Vec<u64> = (0..calls)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed().as_nanos() as u64
        })
        .collect();
    samples.sort_unstable();
    samples[samples.len() / 2] as f64
}

/// (median, min, max) of per-round medians.
fn rounds(mut f: impl FnMut() -> f64) -> (f64, f64, f64) {
    let rounds = setting("ORDO_BENCH_RUNS", 7);
    let mut medians: Vec<f64> = (0..rounds).map(|_| f()).collect();
    medians.sort_by(f64::total_cmp);
    (medians[rounds / 2], medians[0], medians[rounds - 1])
}

fn main() -> anyhow::Result<()> {
    let build = Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugins/build");
    let load = |name: &str| {
        WasmPolicy::load(
            &build.join(name),
            Limits::default(),
            Capabilities::default(),
        )
    };
    let lww = Arc::new(load("patient_profile_lww.wasm")?);
    let field_merge = Arc::new(load("patient_profile_field_merge.wasm")?);
    let runtime = tokio::runtime::Runtime::new()?;

    println!("| plugin | native Rust (µs) | component (µs) | component on an async worker (µs) | component / native |");
    println!("|---|---|---|---|---|");
    type Native = fn(&str, Option<&str>) -> run::Wire;
    let rows: [(&str, Arc<WasmPolicy>, Native); 2] = [
        ("patient-profile-lww", lww, run::merge::<Lww>),
        (
            "patient-profile-field-merge",
            field_merge,
            run::merge::<FieldMerge>,
        ),
    ];
    for (name, component, native) in rows {
        let n = rounds(|| {
            median_ns(|| {
                black_box(native(black_box(INCOMING), black_box(Some(STORED))));
            })
        });
        let c = rounds(|| {
            median_ns(|| {
                black_box(
                    component
                        .merge(black_box(INCOMING), black_box(Some(STORED)))
                        .ok(),
                );
            })
        });
        let a = rounds(|| {
            let component = Arc::clone(&component);
            runtime.block_on(async {
                tokio::spawn(async move {
                    median_ns(|| {
                        black_box(component.merge(INCOMING, Some(STORED)).ok());
                    })
                })
                .await
                .unwrap_or(f64::NAN)
            })
        });
        let us = |(m, lo, hi): (f64, f64, f64)| {
            format!("{:.1} ({:.1}–{:.1})", m / 1e3, lo / 1e3, hi / 1e3)
        };
        println!(
            "| {name} | {} | {} | {} | {:.1}× |",
            us(n),
            us(c),
            us(a),
            c.0 / n.0
        );
    }
    println!(
        "\nMedian of {} rounds of {} calls each (range of the rounds' medians in brackets).",
        setting("ORDO_BENCH_RUNS", 7),
        setting("ORDO_BENCH_CALLS", 20_000)
    );
    Ok(())
}
