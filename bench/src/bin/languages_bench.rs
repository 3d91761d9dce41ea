//! What a policy's language costs: the last-writer-wins policy natively, as a Rust component,
//! and as the same policy written in Python (componentize-py) and JavaScript
//! (componentize-js), measured in one run.
//!
//! For each component: its size; loading it with nothing cached (compile, link, the `schema`
//! call), the first load with the on-disk cache (compile and store) and a load from the cache
//! (what a restart or a swap back costs); the memory an instance holds after its first call;
//! the fuel of a `merge` call (median, and the costliest, which is what `plugin_fuel` must
//! allow); and the time of a `merge` call the way the consumer makes it
//! (`pipeline::merge_call`), median and p99, against the native rule in the same turns.
//!
//! `cargo run --release -p ordo-bench --bin languages_bench` (part of `make bench`; the
//! plugins must be built: `make plugins`). `ORDO_BENCH_RUNS` rounds (default 5) of
//! `ORDO_BENCH_CALLS` calls (default 2,000) per design; `ORDO_BENCH_LOADS` loads of each kind
//! (default 3).

use std::hint::black_box;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context as _};
use ordo::pipeline::merge_call;
use ordo::plugin::compiled::{self, Cache, Source};
use ordo::plugin::sandbox::{Capabilities, Limits};
use ordo::plugin::wasm::WasmPolicy;
use ordo::plugin::Decision;
use ordo_bench::engine::plugins_dir;
use ordo_bench::{setting, spread};
use ordo_plugin_sdk::run;
use patient_profile_lww::policy::Lww;

const STORED: &str = r#"{"PatientId":"1","FirstName":"John","LastName":"Doe","IsPregnant":"False","Sex":"Female","UpdatedAt":"2006-01-02T15:00:00+10:00"}"#;
const INCOMING: &str = r#"{"PatientId":"1","FirstName":"John","LastName":"Doe","IsPregnant":"True","Sex":"Female","UpdatedAt":"2006-01-02T15:00:00.5+10:00"}"#;

/// The components compared: (language, built file).
const COMPONENTS: [(&str, &str); 3] = [
    ("Rust", "patient_profile_lww.wasm"),
    ("Python", "patient_profile_lww_py.wasm"),
    ("JavaScript", "patient_profile_lww_js.wasm"),
];

/// Limits for every component: the engine's defaults with fuel raised so that no language's
/// first call runs out (the fuel column says what each needed).
fn limits() -> Limits {
    Limits {
        fuel: 100_000_000,
        ..Limits::default()
    }
}

/// Times `load` `times` times; the seconds of each.
fn timed_loads(
    times: usize,
    mut load: impl FnMut() -> anyhow::Result<()>,
) -> anyhow::Result<Vec<f64>> {
    let mut seconds = Vec::with_capacity(times);
    for _ in 0..times {
        let started = Instant::now();
        load()?;
        seconds.push(started.elapsed().as_secs_f64());
    }
    Ok(seconds)
}

/// One component's figures.
struct Row {
    language: &'static str,
    bytes: u64,
    cold: Vec<f64>,
    storing: f64,
    cached: Vec<f64>,
    memory_mib: f64,
    /// Fuel of the first `merge` into a fresh instance.
    first_fuel: u64,
    policy: WasmPolicy,
}

fn main() -> anyhow::Result<()> {
    let loads = setting("ORDO_BENCH_LOADS", 3);
    let rounds = setting("ORDO_BENCH_RUNS", 5);
    let calls = setting("ORDO_BENCH_CALLS", 2_000);
    let limits = limits();
    let entity = patient_profile_lww::policy::patient_entity();
    let load = |file: &str| {
        WasmPolicy::load_configured(
            &plugins_dir().join(file),
            limits,
            Capabilities::default(),
            &ordo_bench::engine::patient_config(),
        )
        .with_context(|| format!("loading {file} (make plugins)"))
    };

    // Nothing cached: the process has no cache until `configure` below.
    let mut rows = Vec::new();
    for (language, file) in COMPONENTS {
        let bytes = std::fs::metadata(plugins_dir().join(file))
            .with_context(|| format!("{file} (make plugins)"))?
            .len();
        let cold = timed_loads(loads, || load(file).map(drop))?;
        rows.push((language, file, bytes, cold));
    }
    let dir = tempfile::tempdir()?;
    let cache = Cache::open(&dir.path().join("compiled")).map_err(anyhow::Error::msg)?;
    compiled::configure(Some(cache));
    let mut measured = Vec::new();
    for (language, file, bytes, cold) in rows {
        let storing = timed_loads(1, || load(file).map(drop))?[0];
        let cached = timed_loads(loads, || {
            let policy = load(file)?;
            ensure!(
                policy.source() == Source::Cached,
                "{file} was not read from the cache"
            );
            Ok(())
        })?;
        let policy = load(file)?;
        policy.take_costliest();
        let decision = merge_call(&policy, INCOMING, Some(STORED))?;
        let first = policy.take_costliest();
        let memory_mib = first.memory_bytes as f64 / f64::from(1 << 20);
        // The same decision in every language, or the comparison means nothing.
        let native = match run::merge::<Lww>(&entity, INCOMING, Some(STORED)) {
            run::Wire::Write(record) => record,
            other => anyhow::bail!("native decided {other:?}"),
        };
        ensure!(
            decision == Decision::Write(native.clone()),
            "{language} decided {decision:?}, native wrote {native}"
        );
        measured.push(Row {
            language,
            bytes,
            cold,
            storing,
            cached,
            memory_mib,
            first_fuel: first.fuel,
            policy,
        });
    }

    // Calls: in each turn every design makes one call, so all run under the same conditions.
    let designs = measured.len() + 1;
    let mut times: Vec<Vec<f64>> = vec![Vec::new(); designs];
    let mut fuel: Vec<Vec<f64>> = vec![Vec::new(); designs];
    let mut round_medians: Vec<Vec<f64>> = vec![Vec::new(); designs];
    let mut round_ratios: Vec<Vec<f64>> = vec![Vec::new(); designs];
    for round in 0..rounds {
        let mut this_round: Vec<Vec<f64>> = vec![Vec::with_capacity(calls); designs];
        let warm_up = if round == 0 { calls / 10 } else { 0 };
        for call in 0..warm_up + calls {
            let started = Instant::now();
            black_box(run::merge::<Lww>(
                &entity,
                black_box(INCOMING),
                black_box(Some(STORED)),
            ));
            let native = started.elapsed();
            let mut turn = vec![native];
            for row in &measured {
                let started = Instant::now();
                black_box(
                    merge_call(&row.policy, black_box(INCOMING), black_box(Some(STORED))).ok(),
                );
                turn.push(started.elapsed());
            }
            for (i, row) in measured.iter().enumerate() {
                let burnt = row.policy.take_costliest().fuel as f64;
                if call >= warm_up {
                    fuel[i + 1].push(burnt);
                }
            }
            if call < warm_up {
                continue;
            }
            for (i, t) in turn.iter().enumerate() {
                this_round[i].push(micros(*t));
            }
        }
        let native_median = spread(&mut this_round[0].clone()).median;
        for (i, samples) in this_round.into_iter().enumerate() {
            let median = spread(&mut samples.clone()).median;
            round_medians[i].push(median);
            round_ratios[i].push(median / native_median);
            times[i].extend(samples);
        }
    }

    println!("| policy | component | load, nothing cached (s) | first load, storing in the cache (s) | load from the cache (s) | memory after the first call (MiB) | fuel: first merge after load | fuel per merge after: median (max) | merge median (µs) | merge p99 (µs) | median / native |");
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    println!(
        "| native Rust | — | — | — | — | — | — | — | {} | {:.1} | 1.0× |",
        spread(&mut round_medians[0]).show(2),
        percentile(&mut times[0], 0.99),
    );
    for (i, row) in measured.iter().enumerate() {
        let i = i + 1;
        let mut fuel_median = fuel[i].clone();
        println!(
            "| {} | {:.2} MB | {} | {:.2} | {} | {:.1} | {} | {:.0} ({:.0}) | {} | {:.1} | {:.1}× |",
            row.language,
            row.bytes as f64 / 1e6,
            spread(&mut row.cold.clone()).show(2),
            row.storing,
            spread(&mut row.cached.clone()).show(3),
            row.memory_mib,
            row.first_fuel,
            spread(&mut fuel_median).median,
            fuel[i].iter().copied().fold(0.0, f64::max),
            spread(&mut round_medians[i]).show(1),
            percentile(&mut times[i], 0.99),
            spread(&mut round_ratios[i]).median,
        );
    }
    println!(
        "\n{rounds} rounds of {calls} calls (a tenth more as warm-up first); the designs take turns call by call; a median is the median of the rounds' medians (their range in brackets), p99 is over every call of every round, and a ratio is the median of the rounds' ratios of medians. Loads: {loads} of each kind, median (range). Every component runs under the engine's default sandbox (no capability, 16 MiB memory) with fuel raised to {} so that none runs out while measured; the fuel columns say what a pipeline must allow (`plugins/README.md`: ten times the costliest call). The costliest call is what `plugin_fuel` must allow; for an interpreter it is not the typical one: the first merge after load (lazy set-up) and, now and then, a later call cost several times the median.",
        limits.fuel
    );
    Ok(())
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// The `q` quantile of `values` (sorted in place).
fn percentile(values: &mut [f64], q: f64) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    values.sort_by(f64::total_cmp);
    let at = ((values.len() as f64 * q).ceil() as usize).clamp(1, values.len()) - 1;
    values[at]
}
