//! Runs a policy component under wasmtime, with instances reused from a pool.
//!
//! The component is compiled once and linked once (`instantiate_pre`). A call takes an idle
//! instance (or makes one, up to the plugin's cap on live instances), refills its fuel, sets
//! its deadline, and returns it to the pool when the call succeeds. An instance whose call
//! failed (trap, fuel, time or memory) is dropped, so the next call starts clean; an instance
//! is also retired after [`RECYCLE_AFTER`] calls, which bounds whatever a guest accumulates in
//! its memory.
//!
//! Every instance is configured before its first call: a component implementing
//! `ordo:plugin@0.2.0` gets the pipeline's `plugin_config` through `configure`, whenever the
//! pool makes an instance (at load, on demand, after a failed call or a retirement).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Instant;

use sha2::{Digest, Sha256};
use wasmtime::component::Linker;
use wasmtime::{Store, Trap, WasmBacktrace};

use super::bindings::{Bound, Contract, Pre};
use super::budget::WALL_CAP_FACTOR;
use super::limiter::LimitHit;
use super::sandbox::{self, Capabilities, GuestState, Limits};
use super::{bounded, compiled, imports, Decision, FieldError, PluginError, Policy};
use crate::metrics::PluginMetrics;

/// Longest schema a plugin may export, in bytes; a longer one is refused at load.
pub const MAX_SCHEMA: usize = 256 << 10;
/// The configuration of a pipeline without `plugin_config`.
pub const EMPTY_CONFIG: &str = "{}";
/// Calls an instance serves before it is retired.
pub const RECYCLE_AFTER: u32 = 10_000;
/// Idle instances kept per plugin at most; more are dropped when returned.
const MAX_IDLE: usize = 32;
/// Guest memory all live instances of one plugin may hold together, at most: the cap on live
/// instances is this over the pipeline's `plugin_memory_mib`, within
/// [`MIN_LIVE`]..=[`MAX_LIVE`].
pub const LIVE_MEMORY: usize = 1 << 30;
/// Live instances a plugin may always have, whatever its memory.
pub const MIN_LIVE: usize = 4;
/// Live instances a plugin may have at most.
pub const MAX_LIVE: usize = 256;

/// The cap on live instances of a plugin whose instances may hold `memory_bytes` each.
pub fn live_cap(memory_bytes: usize) -> usize {
    (LIVE_MEMORY / memory_bytes.max(1)).clamp(MIN_LIVE, MAX_LIVE)
}

/// The instances of a plugin.
#[derive(Default)]
struct Pool {
    /// Ready for a call.
    idle: Vec<Instance>,
    /// Alive: idle or in a call.
    alive: usize,
}

/// One instance with its own store (and so its own memory, fuel and limits).
struct Instance {
    store: Store<GuestState>,
    plugin: Bound,
    calls: u32,
}

/// A compiled, linked policy component and its pool of instances.
pub struct WasmPolicy {
    /// The component with its imports resolved, ready to instantiate cheaply.
    pre: Pre,
    /// The version of the contract the component implements.
    contract: Contract,
    /// The configuration every new instance is handed (a JSON object, as text).
    config: String,
    /// The fields its schema requires (`required`), read once at load.
    required: Vec<String>,
    /// Limits applied to every call.
    limits: Limits,
    /// `sha256:<hex>` of the file's bytes.
    id: String,
    /// Instances ready for a call, and how many are alive.
    pool: Mutex<Pool>,
    /// Signalled when an instance goes back to the pool or is dropped.
    returned: Condvar,
    /// Most instances alive at once ([`live_cap`]).
    live_cap: usize,
    /// Where call latency and fuel are counted.
    metrics: PluginMetrics,
    /// The most fuel a call has burnt, for `ordo plugin test` and the benchmarks (atomics:
    /// this is on every call's path).
    most_fuel: AtomicU64,
    /// The most linear memory an instance has held after a call.
    most_memory: AtomicUsize,
    /// Whether the component was compiled at load or read from the on-disk cache.
    source: compiled::Source,
}

/// A plugin's `configure` answered `err`: its reason, bounded.
#[derive(Debug)]
struct Refused(String);

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "the plugin refused its configuration: {}", self.0)
    }
}

impl std::error::Error for Refused {}

/// What a plugin's calls needed at most: what its limits must leave room for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Cost {
    /// Fuel the costliest call burnt.
    pub fuel: u64,
    /// Linear memory an instance held after a call, at most (instantiation included).
    pub memory_bytes: usize,
}

/// `sha256:<hex>` of `bytes`: the identity of a plugin file, written on each record.
pub fn content_id(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

impl WasmPolicy {
    /// Reads, compiles and links the component at `path`, configures an instance with `{}`,
    /// then calls `schema` once to prove it implements the contract.
    pub fn load(path: &Path, limits: Limits, caps: Capabilities) -> Result<Self, PluginError> {
        Self::load_configured(path, limits, caps, EMPTY_CONFIG)
    }

    /// As [`WasmPolicy::load`], every instance configured with `config` (a JSON object, as
    /// text: a pipeline's `plugin_config`).
    pub fn load_configured(
        path: &Path,
        limits: Limits,
        caps: Capabilities,
        config: &str,
    ) -> Result<Self, PluginError> {
        let bytes = std::fs::read(path).map_err(|source| PluginError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_bytes(path, &bytes, limits, caps, config)
    }

    /// As [`WasmPolicy::load_configured`], from bytes already read; `path` is for messages.
    pub fn from_bytes(
        path: &Path,
        bytes: &[u8],
        limits: Limits,
        caps: Capabilities,
        config: &str,
    ) -> Result<Self, PluginError> {
        let refused = |reason: String| PluginError::Config {
            path: PathBuf::from(path),
            reason,
        };
        let empty = match serde_json::from_str::<serde_json::Value>(config) {
            Ok(serde_json::Value::Object(map)) => map.is_empty(),
            _ => return Err(refused("the configuration is not a JSON object".into())),
        };
        let load_error = |e: wasmtime::Error| PluginError::Load {
            path: PathBuf::from(path),
            reason: format!("{e:#}"),
        };
        if !bytes.starts_with(b"\0asm") {
            return Err(PluginError::Load {
                path: PathBuf::from(path),
                reason: "not a WebAssembly file (it does not start with `\\0asm`); build the plugin with `make plugins` or `cargo build --target wasm32-wasip2`".into(),
            });
        }
        let engine = sandbox::engine().map_err(load_error)?;
        let started = Instant::now();
        let id = content_id(bytes);
        let (component, source) = compiled::component(engine, bytes, &id).map_err(load_error)?;
        tracing::debug!(plugin = %path.display(), ?source, elapsed = ?started.elapsed(), "plugin compiled");
        let mut linker = Linker::<GuestState>::new(engine);
        imports::link(&mut linker, engine, &component, caps).map_err(|reason| {
            PluginError::Load {
                path: PathBuf::from(path),
                reason,
            }
        })?;
        let contract = Contract::of(&component, engine).map_err(|reason| PluginError::Load {
            path: PathBuf::from(path),
            reason,
        })?;
        if contract == Contract::V0_1 && !empty {
            return Err(refused(format!(
                "it implements {}, which takes no configuration; remove plugin_config or rebuild it against {}",
                contract.name(),
                Contract::V0_2.name()
            )));
        }
        let instance_pre = linker.instantiate_pre(&component).map_err(load_error)?;
        let pre = Pre::new(contract, instance_pre).map_err(load_error)?;
        let mut policy = Self {
            pre,
            contract,
            config: config.to_string(),
            required: Vec::new(),
            limits,
            id,
            pool: Mutex::new(Pool::default()),
            returned: Condvar::new(),
            live_cap: live_cap(limits.memory_bytes),
            metrics: PluginMetrics::default(),
            most_fuel: AtomicU64::new(0),
            most_memory: AtomicUsize::new(0),
            source,
        };
        policy.first_instance(path)?;
        let schema = policy.schema().map_err(|e| PluginError::Load {
            path: PathBuf::from(path),
            reason: e.to_string(),
        })?;
        if schema.len() > MAX_SCHEMA {
            return Err(PluginError::Load {
                path: PathBuf::from(path),
                reason: format!(
                    "its `schema` export returned {} bytes; a schema may have at most {MAX_SCHEMA} (it is served in every `/docs` page)",
                    schema.len()
                ),
            });
        }
        let Some(schema) = serde_json::from_str::<serde_json::Value>(&schema)
            .ok()
            .filter(serde_json::Value::is_object)
        else {
            return Err(PluginError::Load {
                path: PathBuf::from(path),
                reason: "its `schema` export did not return a JSON object".into(),
            });
        };
        policy.required = schema["required"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|f| f.as_str().map(String::from))
            .collect();
        Ok(policy)
    }

    /// Counts calls into `metrics` from now on (a swapped-in plugin keeps its pipeline's).
    pub fn with_metrics(mut self, metrics: PluginMetrics) -> Self {
        self.metrics = metrics;
        self
    }

    /// Whether the component was compiled at load or read from the on-disk cache.
    pub fn source(&self) -> compiled::Source {
        self.source
    }

    /// The version of the contract the component implements.
    pub fn contract(&self) -> Contract {
        self.contract
    }

    /// Makes and configures the first instance and puts it in the pool: a plugin that
    /// refuses its configuration, or fails while taking it, is refused.
    fn first_instance(&self, path: &Path) -> Result<(), PluginError> {
        off_executor(|| {
            self.take()?;
            let made = self.instantiate();
            let out = made
                .as_ref()
                .map(|_| ())
                .map_err(|e| match e.downcast_ref::<Refused>() {
                    Some(Refused(reason)) => PluginError::Config {
                        path: PathBuf::from(path),
                        reason: reason.clone(),
                    },
                    None => PluginError::Load {
                        path: PathBuf::from(path),
                        reason: format!(
                            "instantiating and configuring it failed: {}",
                            bounded(&self.explain(e), super::MAX_TEXT)
                        ),
                    },
                });
            self.give_back(made.ok());
            out
        })
    }

    /// The most fuel a call has burnt and the most memory an instance has held since load or
    /// the last `take_costliest`, which starts counting again.
    pub fn take_costliest(&self) -> Cost {
        Cost {
            fuel: self.most_fuel.swap(0, Ordering::Relaxed),
            memory_bytes: self.most_memory.swap(0, Ordering::Relaxed),
        }
    }

    /// Instances waiting in the pool (tests only).
    #[cfg(any(test, feature = "testing"))]
    pub fn idle_instances(&self) -> usize {
        self.pool().idle.len()
    }

    /// Instances alive, idle or in a call (tests only).
    #[cfg(any(test, feature = "testing"))]
    pub fn live_instances(&self) -> usize {
        self.pool().alive
    }

    /// The cap on live instances.
    pub fn live_cap(&self) -> usize {
        self.live_cap
    }

    fn pool(&self) -> MutexGuard<'_, Pool> {
        self.pool
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The limits every call runs under.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// A new instance in a new store, instantiated under the call limits.
    fn instantiate(&self) -> wasmtime::Result<Instance> {
        let mut store = Store::new(self.pre.engine(), GuestState::new(&self.limits));
        store.limiter(|g| &mut g.limits);
        store.set_max_component_handles(sandbox::MAX_COMPONENT_HANDLES);
        store.set_hostcall_fuel(sandbox::hostcall_bytes(&self.limits));
        store.epoch_deadline_callback(|mut store| Ok(store.data_mut().budget.check()));
        self.arm(&mut store)?;
        let plugin = self.pre.instantiate(&mut store)?;
        // Configuring is part of making the instance: it runs under the same fuel and time as
        // instantiation, before the call's own budget is armed.
        plugin
            .configure(&mut store, &self.config)?
            .map_err(|reason| wasmtime::Error::new(Refused(reason)))?;
        Ok(Instance {
            store,
            plugin,
            calls: 0,
        })
    }

    /// Gives `store` a full fuel tank and a fresh time budget for the next call (or
    /// instantiation); its first time check comes one epoch tick later.
    fn arm(&self, store: &mut Store<GuestState>) -> wasmtime::Result<()> {
        store.set_fuel(self.limits.fuel)?;
        store.data_mut().budget.start();
        store.set_epoch_deadline(1);
        Ok(())
    }

    /// Runs `f` on an instance with a full fuel tank and a fresh deadline, outside the async
    /// executor (see [`off_executor`]).
    fn call<R: Send>(
        &self,
        name: &'static str,
        f: impl FnOnce(&Bound, &mut Store<GuestState>) -> wasmtime::Result<R> + Send,
    ) -> Result<R, PluginError> {
        off_executor(|| self.call_here(name, f))
    }

    fn call_here<R>(
        &self,
        name: &'static str,
        f: impl FnOnce(&Bound, &mut Store<GuestState>) -> wasmtime::Result<R>,
    ) -> Result<R, PluginError> {
        let started = Instant::now();
        let taken = self.take()?;
        let mut burnt = 0;
        let mut memory = 0;
        let mut starved = false;
        let run = |taken: Option<Instance>| -> wasmtime::Result<(R, Instance)> {
            let mut instance = match taken {
                Some(i) => i,
                None => self.instantiate()?,
            };
            self.arm(&mut instance.store)?;
            let out = f(&instance.plugin, &mut instance.store);
            burnt = self
                .limits
                .fuel
                .saturating_sub(instance.store.get_fuel().unwrap_or(0));
            memory = instance.store.data().limits.memory_used();
            starved = instance.store.data().budget.starved();
            Ok((out?, instance))
        };
        let result = run(taken);
        self.metrics.record(name, started.elapsed(), burnt);
        self.most_fuel.fetch_max(burnt, Ordering::Relaxed);
        self.most_memory.fetch_max(memory, Ordering::Relaxed);
        match result {
            Ok((out, mut instance)) => {
                instance.calls += 1;
                self.give_back((instance.calls < RECYCLE_AFTER).then_some(instance));
                Ok(out)
            }
            Err(e) if starved && matches!(e.downcast_ref::<Trap>(), Some(Trap::Interrupt)) => {
                self.give_back(None);
                Err(PluginError::Starved {
                    call: name,
                    waited: self.limits.timeout * WALL_CAP_FACTOR,
                })
            }
            Err(e) => {
                self.give_back(None);
                Err(PluginError::Call {
                    call: name,
                    reason: bounded(&self.explain(&e), super::MAX_TEXT),
                })
            }
        }
    }

    /// An idle instance, or `None` with a slot to make one in; waits while the plugin is at
    /// its cap of live instances, but no longer than a call may take.
    fn take(&self) -> Result<Option<Instance>, PluginError> {
        let wait = self.limits.timeout * WALL_CAP_FACTOR;
        let deadline = Instant::now() + wait;
        let mut pool = self.pool();
        loop {
            if let Some(instance) = pool.idle.pop() {
                return Ok(Some(instance));
            }
            if pool.alive < self.live_cap {
                pool.alive += 1;
                return Ok(None);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(PluginError::Busy {
                    live: self.live_cap,
                    waited: wait,
                });
            }
            pool = self
                .returned
                .wait_timeout(pool, left)
                .map(|(pool, _)| pool)
                .unwrap_or_else(|poisoned| poisoned.into_inner().0);
        }
    }

    /// Puts a used instance back in the pool, or counts it gone (`None`: failed, retired).
    fn give_back(&self, instance: Option<Instance>) {
        let mut pool = self.pool();
        match instance {
            Some(instance) if pool.idle.len() < MAX_IDLE.min(self.live_cap) => {
                pool.idle.push(instance)
            }
            _ => pool.alive = pool.alive.saturating_sub(1),
        }
        self.returned.notify_one();
    }

    /// Says which limit a failed call hit, or what the trap was: its cause first, then the
    /// guest function it happened in (never the whole backtrace, which would crowd out the
    /// cause once the text is cut to [`super::MAX_TEXT`]).
    fn explain(&self, e: &wasmtime::Error) -> String {
        if let Some(Refused(reason)) = e.downcast_ref::<Refused>() {
            return format!("a new instance refused its configuration: {reason}");
        }
        match e.downcast_ref::<Trap>() {
            Some(Trap::OutOfFuel) => format!(
                "ran out of fuel (the limit is {} units per call)",
                self.limits.fuel
            ),
            Some(Trap::Interrupt) => format!(
                "ran past its time limit ({} ms of CPU per call)",
                self.limits.timeout.as_millis()
            ),
            _ => match e.downcast_ref::<LimitHit>() {
                Some(hit @ LimitHit::Memory { .. }) => format!(
                    "ran past its memory limit ({} MiB per instance): {hit}",
                    self.limits.memory_bytes >> 20
                ),
                Some(hit @ LimitHit::Table { .. }) => {
                    format!("ran past its table limit: {hit}")
                }
                None => {
                    let cause = e.root_cause().to_string();
                    let place = e
                        .downcast_ref::<WasmBacktrace>()
                        .and_then(|trace| trace.frames().iter().find_map(|f| f.func_name()))
                        .map(|name| format!(" (in `{}`)", bounded(name, 200)))
                        .unwrap_or_default();
                    format!("trapped: {cause}{place}")
                }
            },
        }
    }
}

/// Runs `f`, a plugin call, without holding up other tasks: a call may use its whole CPU-time
/// budget, or wait for an instance while the plugin is at its cap of live ones. On a
/// multi-threaded runtime it runs in `block_in_place`; elsewhere (a current-thread runtime in
/// tests, or no runtime) right here. No host function the sandbox provides waits or needs the
/// runtime.
fn off_executor<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(RuntimeFlavor::MultiThread) => tokio::task::block_in_place(f),
        _ => f(),
    }
}

impl Policy for WasmPolicy {
    fn validate(&self, event: &str) -> Result<Result<(), FieldError>, PluginError> {
        self.call("validate", |p, s| p.validate(s, event))
    }

    fn merge(&self, incoming: &str, stored: Option<&str>) -> Result<Decision, PluginError> {
        self.call("merge", |p, s| p.merge(s, incoming, stored))
    }

    fn schema(&self) -> Result<String, PluginError> {
        self.call("schema", |p, s| p.schema(s))
    }

    fn id(&self) -> &str {
        &self.id
    }

    fn requires(&self, field: &str) -> bool {
        self.required.iter().any(|f| f == field)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_that_is_not_webassembly_is_named_as_such() {
        let err = WasmPolicy::from_bytes(
            Path::new("p.wasm"),
            b"garbage",
            Limits::default(),
            Capabilities::default(),
            EMPTY_CONFIG,
        )
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
        assert!(err.contains("not a WebAssembly file"), "{err}");
    }

    #[test]
    fn content_id_is_sha256_hex() {
        assert_eq!(
            content_id(b"abc"),
            "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
