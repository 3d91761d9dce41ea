//! What a plugin may do: the limits of one call and the capabilities it is granted.
//!
//! By default a guest gets nothing from the outside world: a clock frozen at the Unix epoch,
//! randomness that is all zeros, an empty environment, and no files, network or stdio (see
//! [`super::imports`] for how each WASI import is satisfied). A pipeline may grant the real
//! clocks and real randomness; files, network and environment cannot be granted.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use wasmtime::{Config, Engine};

use super::budget::{CallBudget, EPOCH_TICK};
use super::limiter::SandboxLimiter;

/// Fuel for one call by default: about 5 ms of guest work on this class of machine (the
/// patient-profile plugins use under 0.1% of it per merge).
pub const DEFAULT_FUEL: u64 = 10_000_000;
/// CPU time one call may use by default, a backstop to fuel (host calls burn no fuel).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_millis(50);
/// Linear memory one instance may hold by default.
pub const DEFAULT_MEMORY_BYTES: usize = 16 << 20;

/// Per-call limits of the sandbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Fuel units one call may burn before it traps.
    pub fuel: u64,
    /// CPU time one call may use before it traps, counted on its own thread (see
    /// [`super::budget`]), checked every millisecond.
    pub timeout: Duration,
    /// Bytes of linear memory one instance may hold, over all its memories.
    pub memory_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            fuel: DEFAULT_FUEL,
            timeout: DEFAULT_TIMEOUT,
            memory_bytes: DEFAULT_MEMORY_BYTES,
        }
    }
}

/// WASI capabilities a pipeline may grant its plugin. Everything else stays denied.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Capabilities {
    /// The host's wall and monotonic clocks instead of a clock frozen at the epoch.
    pub clocks: bool,
    /// The host's random sources instead of zeros.
    pub random: bool,
}

impl Capabilities {
    /// The names `pipelines.toml` accepts in `plugin_capabilities`.
    pub const NAMES: [&'static str; 2] = ["clocks", "random"];

    /// Parses capability names; the error names the first unknown one.
    pub fn parse<'a>(names: impl IntoIterator<Item = &'a str>) -> Result<Self, String> {
        let mut caps = Self::default();
        for name in names {
            match name {
                "clocks" => caps.clocks = true,
                "random" => caps.random = true,
                other => {
                    return Err(format!(
                        "has unknown capability {other:?} (known: {}; files, network and environment cannot be granted)",
                        Self::NAMES.join(", ")
                    ))
                }
            }
        }
        Ok(caps)
    }
}

/// The process-wide wasmtime engine: fuel metering and epoch interruption on, with one thread
/// advancing the epoch every [`EPOCH_TICK`]. Shared by every plugin, so hot swaps reuse it.
pub(crate) fn engine() -> Result<&'static Engine, wasmtime::Error> {
    static ENGINE: OnceLock<Engine> = OnceLock::new();
    if let Some(engine) = ENGINE.get() {
        return Ok(engine);
    }
    let mut config = Config::new();
    config.consume_fuel(true);
    config.epoch_interruption(true);
    let engine = Engine::new(&config)?;
    let engine = ENGINE.get_or_init(|| engine);
    let ticker = engine.weak();
    std::thread::Builder::new()
        .name("ordo-plugin-epoch".into())
        .spawn(move || {
            while let Some(engine) = ticker.upgrade() {
                engine.increment_epoch();
                drop(engine);
                std::thread::sleep(EPOCH_TICK);
            }
        })
        .map_err(wasmtime::Error::from)?;
    Ok(engine)
}

/// Component-model handles one instance may hold at once (the policy contract uses none; a
/// guest's own resources need a few).
pub const MAX_COMPONENT_HANDLES: usize = 1_000;
/// Bytes wasmtime may copy out of the guest in one transfer (a call's result, a host call's
/// arguments): the instance's memory budget, at least [`MIN_HOSTCALL_BYTES`]. A guest cannot
/// hold more than its memory, but a list of many small items costs the host several times
/// its size; this bounds that.
pub fn hostcall_bytes(limits: &Limits) -> usize {
    limits.memory_bytes.max(MIN_HOSTCALL_BYTES)
}
/// The least [`hostcall_bytes`] allows, whatever the memory budget.
pub const MIN_HOSTCALL_BYTES: usize = 4 << 20;

/// State a guest's store holds: what it was granted, its limits, and its time budget.
pub(crate) struct GuestState {
    /// Enforces [`Limits::memory_bytes`] over all memories, and the table and instance caps.
    pub(crate) limits: SandboxLimiter,
    /// Enforces [`Limits::timeout`] on the call in progress.
    pub(crate) budget: CallBudget,
    /// When the instance was made: the origin of its monotonic clock when `clocks` is granted.
    pub(crate) started: Instant,
}

impl GuestState {
    /// A fresh state for one instance.
    pub(crate) fn new(limits: &Limits) -> Self {
        Self {
            limits: SandboxLimiter::new(limits.memory_bytes),
            budget: CallBudget::new(limits.timeout),
            started: Instant::now(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capabilities_parse_and_name_the_unknown_one() {
        assert_eq!(
            Capabilities::parse(["clocks"]),
            Ok(Capabilities {
                clocks: true,
                random: false
            })
        );
        let err = Capabilities::parse(["random", "files"]).expect_err("files cannot be granted");
        assert!(err.contains("\"files\""), "{err}");
    }
}
