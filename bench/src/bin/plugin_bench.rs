//! The cost of one `merge` call: each patient-profile plugin as a sandboxed component in
//! Ordo's host, against the same rule compiled natively and, for last-writer-wins, the same
//! rule as an Extism plugin hosted by the `extism` crate, measured in one run.
//!
//! Ordo's call goes the way the consumer's does: the plugin loaded as the engine loads it
//! (`plugin::reload::load_checked`), the policy in force taken from its `PolicyHandle` on every
//! call, and `pipeline::merge_call` (the applier's own call, in its tracing span) with the
//! engine's default `info` log filter installed.
//!
//! Both sandboxes get the same limits: fuel, a wall-clock timeout and a 16 MiB memory cap, and
//! no WASI. `cargo run --release -p ordo-bench --features extism --bin plugin_bench` (part
//! of `make bench`; the plugins must be built: `make plugins`). Without the `extism` feature
//! the Extism columns are left out. Prints the median over `ORDO_BENCH_RUNS` rounds of
//! each round's median call time, and the range of the rounds' medians.

use std::hint::black_box;
#[cfg(feature = "extism")]
use std::path::Path;
use std::time::Instant;

#[cfg(feature = "extism")]
use anyhow::Context;
use ordo::pipeline::merge_call;
use ordo::plugin::sandbox::Limits;
use ordo::plugin::PolicyHandle;
use ordo_plugin_sdk::run;
use patient_profile_field_merge::policy::FieldMerge;
use patient_profile_lww::policy::Lww;

use ordo_bench::engine::{lww_policy, policy};
use ordo_bench::{setting, spread};

const STORED: &str = r#"{"PatientId":"1","FirstName":"John","LastName":"Doe","IsPregnant":"False","Sex":"Female","UpdatedAt":"2006-01-02T15:00:00+10:00"}"#;
const INCOMING: &str = r#"{"PatientId":"1","FirstName":"John","LastName":"Doe","IsPregnant":"True","Sex":"Female","UpdatedAt":"2006-01-02T15:00:00.5+10:00"}"#;

/// Times `calls` rounds of every function in `fs`, one call each in turn, so that all of them
/// run under the same conditions on a shared machine; returns each one's median nanoseconds
/// and, per function, the median of its time divided by the first function's in the same turn.
fn interleaved(fs: &mut [&mut dyn FnMut()], calls: usize) -> Vec<(f64, f64)> {
    for f in fs.iter_mut() {
        for _ in 0..calls / 10 {
            f();
        }
    }
    let mut times: Vec<Vec<f64>> = vec![Vec::with_capacity(calls); fs.len()];
    let mut ratios: Vec<Vec<f64>> = vec![Vec::with_capacity(calls); fs.len()];
    for _ in 0..calls {
        let mut turn = Vec::with_capacity(fs.len());
        for f in fs.iter_mut() {
            let start = Instant::now();
            f();
            turn.push(start.elapsed().as_nanos() as f64);
        }
        for (i, t) in turn.iter().enumerate() {
            times[i].push(*t);
            ratios[i].push(t / turn[0]);
        }
    }
    times
        .iter_mut()
        .zip(ratios.iter_mut())
        .map(|(t, r)| (spread(t).median, spread(r).median))
        .collect()
}

/// The LWW rule as an Extism plugin: under the same limits as Ordo's sandbox, or none.
#[cfg(feature = "extism")]
fn extism_plugin(path: &Path, limits: Option<Limits>) -> anyhow::Result<extism::Plugin> {
    let mut manifest = extism::Manifest::new([extism::Wasm::file(path)]);
    let mut builder;
    if let Some(limits) = limits {
        manifest = manifest
            .with_timeout(limits.timeout)
            .with_memory_max((limits.memory_bytes / 65_536) as u32);
        builder = extism::PluginBuilder::new(manifest).with_fuel_limit(limits.fuel);
    } else {
        builder = extism::PluginBuilder::new(manifest);
    }
    builder = builder.with_wasi(false);
    builder.build().context("loading the Extism plugin")
}

fn main() -> anyhow::Result<()> {
    // The engine's default log filter, so the applier's span costs what it costs there.
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new("info"))
        .with_writer(std::io::stderr)
        .init();
    let limits = Limits::default();
    let lww = lww_policy()?;
    let field_merge = policy("patient_profile_field_merge.wasm")?;
    #[cfg(feature = "extism")]
    let (mut extism, mut extism_bare, extism_input) = {
        let file = ordo_bench::engine::plugins_dir().join("extism_lww.wasm");
        let mut extism = extism_plugin(&file, Some(limits))?;
        let extism_bare = extism_plugin(&file, None)?;
        let extism_input = format!("{INCOMING}\0{STORED}");
        // The same decision both ways, or the comparison means nothing.
        let via_extism: Vec<u8> = extism.call("merge", extism_input.as_bytes())?;
        match merge_call(lww.current().as_ref(), INCOMING, Some(STORED))? {
            ordo::plugin::Decision::Write(record) => anyhow::ensure!(
                via_extism.first() == Some(&b'W') && via_extism[1..] == *record.as_bytes(),
                "Extism and Ordo disagree"
            ),
            other => anyhow::bail!("unexpected decision {other:?}"),
        }
        (extism, extism_bare, extism_input)
    };

    println!("| plugin | native Rust (µs) | Ordo component, the consumer's call (µs) | Ordo component, bare call (µs) | Extism, same limits (µs) | Extism, no limits (µs) | Ordo (consumer's call) / native | Ordo (bare) / native | Extism (same limits) / native |");
    println!("|---|---|---|---|---|---|---|---|---|");
    type Native = Box<dyn Fn(&str, Option<&str>) -> run::Wire>;
    let lww_config = patient_profile_lww::policy::patient_entity();
    let field_merge_config = patient_profile_field_merge::policy::patient_profile();
    let rows: [(&str, PolicyHandle, Native, bool); 2] = [
        (
            "patient-profile-lww",
            lww,
            Box::new(move |i, s| run::merge::<Lww>(&lww_config, i, s)),
            true,
        ),
        (
            "patient-profile-field-merge",
            field_merge,
            Box::new(move |i, s| run::merge::<FieldMerge>(&field_merge_config, i, s)),
            false,
        ),
    ];
    let calls = setting("ORDO_BENCH_CALLS", 20_000);
    for (name, component, native, with_extism) in rows {
        let with_extism = with_extism && cfg!(feature = "extism");
        let mut call_native = || {
            black_box(native(black_box(INCOMING), black_box(Some(STORED))));
        };
        let mut call_component = || {
            black_box(
                merge_call(
                    component.current().as_ref(),
                    black_box(INCOMING),
                    black_box(Some(STORED)),
                )
                .ok(),
            );
        };
        // The same policy called directly: no handle, no tracing span.
        let in_force = component.current();
        let mut call_bare = || {
            black_box(
                in_force
                    .merge(black_box(INCOMING), black_box(Some(STORED)))
                    .ok(),
            );
        };
        #[cfg(feature = "extism")]
        let mut call_extism = || {
            let out: Result<Vec<u8>, _> = extism.call("merge", black_box(extism_input.as_bytes()));
            black_box(out.ok());
        };
        #[cfg(feature = "extism")]
        let mut call_extism_bare = || {
            let out: Result<Vec<u8>, _> =
                extism_bare.call("merge", black_box(extism_input.as_bytes()));
            black_box(out.ok());
        };
        // Per round: (median ns, median ratio to native) of each design.
        let mut per_round: Vec<Vec<(f64, f64)>> = Vec::new();
        for _ in 0..setting("ORDO_BENCH_RUNS", 7) {
            let mut fs: Vec<&mut dyn FnMut()> =
                vec![&mut call_native, &mut call_component, &mut call_bare];
            #[cfg(feature = "extism")]
            if with_extism {
                fs.push(&mut call_extism);
                fs.push(&mut call_extism_bare);
            }
            per_round.push(interleaved(&mut fs, calls));
        }
        let column = |i: usize, ratio: bool| {
            let mut v: Vec<f64> = per_round
                .iter()
                .map(|r| if ratio { r[i].1 } else { r[i].0 / 1e3 })
                .collect();
            spread(&mut v)
        };
        let (e, bare, e_ratio) = if with_extism {
            (
                column(3, false).show(2),
                column(4, false).show(2),
                format!("{:.1}×", column(3, true).median),
            )
        } else {
            ("—".into(), "—".into(), "—".into())
        };
        println!(
            "| {name} | {} | {} | {} | {e} | {bare} | {:.1}× | {:.1}× | {e_ratio} |",
            column(0, false).show(2),
            column(1, false).show(2),
            column(2, false).show(2),
            column(1, true).median,
            column(2, true).median,
        );
    }
    if !cfg!(feature = "extism") {
        println!(
            "\nExtism was left out: this build has no `extism` feature (`make bench` turns it on)."
        );
    }
    println!(
        "\nMedian of {} rounds of {} calls each (range of the rounds' medians in brackets); in a round the designs take turns call by call, and a ratio is the median of the per-turn ratios. The consumer's call is `pipeline::merge_call` through the `PolicyHandle`, inside the applier's `plugin.merge` tracing span with the engine's default `info` filter; the bare call is the policy's `merge` alone. Both sandboxes: fuel {} per call, {} ms timeout, {} MiB memory, no WASI (Extism enforces its timeout with a timer thread, told about every call); \"no limits\" is Extism without fuel, timeout or memory cap. The Extism plugin is the same Rust rule (`plugins/extism-lww`) behind Extism's one-buffer-in, one-buffer-out ABI.",
        setting("ORDO_BENCH_RUNS", 7),
        setting("ORDO_BENCH_CALLS", 20_000),
        limits.fuel,
        limits.timeout.as_millis(),
        limits.memory_bytes >> 20,
    );
    Ok(())
}
