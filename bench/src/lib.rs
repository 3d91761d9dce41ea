//! Ordo's benchmarks (`make bench` runs them and writes `BENCHMARKS.md`): each measures a part
//! of the engine against a baseline in the same run. They live in a crate of their own so that
//! their dependencies (Extism and its second wasmtime, for one) are not built by `make test`'s
//! unit and end-to-end run. This library is what the benchmark programs in `examples/` share:
//! settings from the environment, medians with their range, and a process's peak memory.

/// `name` from the environment as a number, or `default`; at least 1.
pub fn setting(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
        .max(1)
}

/// The median of several measurements and their range.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Spread {
    /// The middle value (the upper middle for an even count).
    pub median: f64,
    /// The smallest.
    pub min: f64,
    /// The largest.
    pub max: f64,
}

impl Spread {
    /// `median (min–max)` with `decimals` digits after the point.
    pub fn show(&self, decimals: usize) -> String {
        format!(
            "{:.d$} ({:.d$}–{:.d$})",
            self.median,
            self.min,
            self.max,
            d = decimals
        )
    }
}

/// Median and range of `values` (sorted in place); NaN for none.
pub fn spread(values: &mut [f64]) -> Spread {
    if values.is_empty() {
        return Spread {
            median: f64::NAN,
            min: f64::NAN,
            max: f64::NAN,
        };
    }
    values.sort_by(f64::total_cmp);
    Spread {
        median: values[values.len() / 2],
        min: values[0],
        max: values[values.len() - 1],
    }
}

/// The peak resident set (`VmHWM`) of process `pid`, in KiB; 0 when unknown.
pub fn process_peak_rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}
