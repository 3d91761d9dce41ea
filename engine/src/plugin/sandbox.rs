//! What a plugin may do: the limits of one call and the WASI capabilities it is granted.
//!
//! By default a guest gets nothing from the outside world. std in a `wasm32-wasip2` guest
//! still imports WASI, so the imports are linked, but to a context with no files, no
//! environment, no arguments and no network, a clock frozen at the Unix epoch and a random
//! source that returns zeros. A pipeline may grant the real clocks and real randomness; files,
//! network and environment cannot be granted.

use std::sync::OnceLock;
use std::time::Duration;

use wasmtime::component::ResourceTable;
use wasmtime::{Config, Engine, StoreLimits, StoreLimitsBuilder};
use wasmtime_wasi::{
    Deterministic, HostMonotonicClock, HostWallClock, WasiCtx, WasiCtxView, WasiView,
};

use super::budget::{CallBudget, EPOCH_TICK};

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
    /// Bytes of linear memory one instance may hold.
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

/// State a guest's store holds: its WASI context, resource table and memory limiter.
pub(crate) struct GuestState {
    /// WASI with only the granted capabilities.
    wasi: WasiCtx,
    /// Resources WASI hands to the guest (streams).
    table: ResourceTable,
    /// Enforces [`Limits::memory_bytes`].
    pub(crate) limits: StoreLimits,
    /// Enforces [`Limits::timeout`] on the call in progress.
    pub(crate) budget: CallBudget,
}

impl GuestState {
    /// A fresh state for one instance.
    pub(crate) fn new(limits: &Limits, caps: Capabilities) -> Self {
        let mut wasi = WasiCtx::builder();
        if !caps.clocks {
            wasi.wall_clock(FrozenClock).monotonic_clock(FrozenClock);
        }
        if !caps.random {
            wasi.secure_random(Deterministic::new(vec![0]))
                .insecure_random(Deterministic::new(vec![0]))
                .insecure_random_seed(0);
        }
        Self {
            wasi: wasi.build(),
            table: ResourceTable::new(),
            limits: StoreLimitsBuilder::new()
                .memory_size(limits.memory_bytes)
                .instances(4)
                .trap_on_grow_failure(true)
                .build(),
            budget: CallBudget::new(limits.timeout),
        }
    }
}

impl WasiView for GuestState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// A clock that always says the Unix epoch: time is not a capability a policy gets by default,
/// so that replaying the same events always gives the same records.
struct FrozenClock;

impl HostWallClock for FrozenClock {
    fn resolution(&self) -> Duration {
        Duration::from_secs(1)
    }

    fn now(&self) -> Duration {
        Duration::ZERO
    }
}

impl HostMonotonicClock for FrozenClock {
    fn resolution(&self) -> u64 {
        1_000_000_000
    }

    fn now(&self) -> u64 {
        0
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
