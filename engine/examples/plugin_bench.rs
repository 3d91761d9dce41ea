//! The cost of one `merge` call: each patient-profile plugin as a sandboxed component in
//! Ordo's host, against the same rule compiled natively and, for last-writer-wins, the same
//! rule as an Extism plugin hosted by the `extism` crate, measured in one run.
//!
//! Both sandboxes get the same limits: fuel, a wall-clock timeout and a 16 MiB memory cap, and
//! no WASI. `cargo run --release -p ordo --example plugin_bench` (part of `make bench`; the
//! plugins must be built: `make plugins`). Prints the median over `ORDO_BENCH_RUNS` rounds of
//! each round's median call time, and the range of the rounds' medians.

use std::hint::black_box;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use ordo::plugin::sandbox::{Capabilities, Limits};
use ordo::plugin::wasm::WasmPolicy;
use ordo::plugin::Policy;
use ordo_plugin_sdk::run;
use patient_profile_field_merge::policy::FieldMerge;
use patient_profile_lww::policy::Lww;

#[path = "support/mod.rs"]
mod support;
use support::{setting, spread, Spread};

const STORED: &str = r#"{"PatientId":"1","FirstName":"John","LastName":"Doe","IsPregnant":"False","Sex":"Female","UpdatedAt":"2006-01-02T15:00:00+10:00"}"#;
const INCOMING: &str = r#"{"PatientId":"1","FirstName":"John","LastName":"Doe","IsPregnant":"True","Sex":"Female","UpdatedAt":"2006-01-02T15:00:00.5+10:00"}"#;

/// Median nanoseconds of one call of `f`, over `ORDO_BENCH_CALLS` calls (default 20,000).
fn median_ns(mut f: impl FnMut()) -> f64 {
    let calls = setting("ORDO_BENCH_CALLS", 20_000);
    for _ in 0..calls / 10 {
        f();
    }
    let mut samples: Vec<f64> = (0..calls)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed().as_nanos() as f64
        })
        .collect();
    spread(&mut samples).median
}

/// Per-round medians over `ORDO_BENCH_RUNS` rounds (default 7).
fn rounds(mut f: impl FnMut() -> f64) -> Spread {
    let mut medians: Vec<f64> = (0..setting("ORDO_BENCH_RUNS", 7)).map(|_| f()).collect();
    spread(&mut medians)
}

/// The LWW rule as an Extism plugin, under the same limits as Ordo's sandbox.
fn extism_plugin(path: &Path, limits: Limits) -> anyhow::Result<extism::Plugin> {
    let manifest = extism::Manifest::new([extism::Wasm::file(path)])
        .with_timeout(limits.timeout)
        .with_memory_max((limits.memory_bytes / 65_536) as u32);
    let plugin = extism::PluginBuilder::new(manifest)
        .with_wasi(false)
        .with_fuel_limit(limits.fuel)
        .build()
        .context("loading the Extism plugin")?;
    Ok(plugin)
}

fn main() -> anyhow::Result<()> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugins/build");
    let limits = Limits::default();
    let load = |name: &str| WasmPolicy::load(&root.join(name), limits, Capabilities::default());
    let lww = Arc::new(load("patient_profile_lww.wasm")?);
    let field_merge = Arc::new(load("patient_profile_field_merge.wasm")?);
    let mut extism = extism_plugin(&root.join("extism_lww.wasm"), limits)?;
    let extism_input = format!("{INCOMING}\0{STORED}");
    // The same decision both ways, or the comparison means nothing.
    let via_extism: Vec<u8> = extism.call("merge", extism_input.as_bytes())?;
    match lww.merge(INCOMING, Some(STORED))? {
        ordo::plugin::Decision::Write(record) => anyhow::ensure!(
            via_extism.first() == Some(&b'W') && via_extism[1..] == *record.as_bytes(),
            "Extism and Ordo disagree"
        ),
        other => anyhow::bail!("unexpected decision {other:?}"),
    }

    println!("| plugin | native Rust (µs) | Ordo component (µs) | Extism plugin (µs) | Ordo / native | Extism / native |");
    println!("|---|---|---|---|---|---|");
    type Native = fn(&str, Option<&str>) -> run::Wire;
    let rows: [(&str, Arc<WasmPolicy>, Native, bool); 2] = [
        ("patient-profile-lww", lww, run::merge::<Lww>, true),
        (
            "patient-profile-field-merge",
            field_merge,
            run::merge::<FieldMerge>,
            false,
        ),
    ];
    let us = |s: Spread| {
        Spread {
            median: s.median / 1e3,
            min: s.min / 1e3,
            max: s.max / 1e3,
        }
        .show(2)
    };
    for (name, component, native, with_extism) in rows {
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
        let (e, e_ratio) = if with_extism {
            let e = rounds(|| {
                median_ns(|| {
                    let out: Result<Vec<u8>, _> =
                        extism.call("merge", black_box(extism_input.as_bytes()));
                    black_box(out.ok());
                })
            });
            (us(e), format!("{:.1}×", e.median / n.median))
        } else {
            ("—".into(), "—".into())
        };
        println!(
            "| {name} | {} | {} | {e} | {:.1}× | {e_ratio} |",
            us(n),
            us(c),
            c.median / n.median,
        );
    }
    println!(
        "\nMedian of {} rounds of {} calls each (range of the rounds' medians in brackets). Both sandboxes: fuel {} per call, {} ms timeout, {} MiB memory, no WASI. The Extism plugin is the same Rust rule (`plugins/extism-lww`) behind Extism's one-buffer-in, one-buffer-out ABI.",
        setting("ORDO_BENCH_RUNS", 7),
        setting("ORDO_BENCH_CALLS", 20_000),
        limits.fuel,
        limits.timeout.as_millis(),
        limits.memory_bytes >> 20,
    );
    Ok(())
}
