//! Runs a policy component under wasmtime, with instances reused from a pool.
//!
//! The component is compiled once and linked once (`instantiate_pre`). A call takes an idle
//! instance (or makes one), refills its fuel, sets its deadline, and returns it to the pool
//! when the call succeeds. An instance whose call failed (trap, fuel, time or memory) is
//! dropped, so the next call starts clean; an instance is also retired after
//! [`RECYCLE_AFTER`] calls, which bounds whatever a guest accumulates in its memory.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Instant;

use sha2::{Digest, Sha256};
use wasmtime::component::{Component, Linker};
use wasmtime::{Store, Trap};

use super::bindings::{PolicyPlugin, PolicyPluginPre};
use super::sandbox::{self, Capabilities, GuestState, Limits};
use super::{Decision, FieldError, PluginError, Policy};
use crate::metrics::PluginMetrics;

/// Calls an instance serves before it is retired.
pub const RECYCLE_AFTER: u32 = 10_000;
/// Idle instances kept per plugin; more are dropped when returned.
const MAX_IDLE: usize = 32;

/// One instance with its own store (and so its own memory, fuel and limits).
struct Instance {
    store: Store<GuestState>,
    plugin: PolicyPlugin,
    calls: u32,
}

/// A compiled, linked policy component and its pool of instances.
pub struct WasmPolicy {
    /// The component with its imports resolved, ready to instantiate cheaply.
    pre: PolicyPluginPre<GuestState>,
    /// Limits applied to every call.
    limits: Limits,
    /// Capabilities granted to every instance.
    caps: Capabilities,
    /// `sha256:<hex>` of the file's bytes.
    id: String,
    /// Instances ready for a call.
    idle: Mutex<Vec<Instance>>,
    /// Where call latency and fuel are counted.
    metrics: PluginMetrics,
}

/// `sha256:<hex>` of `bytes`: the identity of a plugin file, written on each record.
pub fn content_id(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

impl WasmPolicy {
    /// Reads, compiles and links the component at `path`, then calls `schema` once to prove
    /// it implements the contract.
    pub fn load(path: &Path, limits: Limits, caps: Capabilities) -> Result<Self, PluginError> {
        let bytes = std::fs::read(path).map_err(|source| PluginError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_bytes(path, &bytes, limits, caps)
    }

    /// As [`WasmPolicy::load`], from bytes already read; `path` is for messages.
    pub fn from_bytes(
        path: &Path,
        bytes: &[u8],
        limits: Limits,
        caps: Capabilities,
    ) -> Result<Self, PluginError> {
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
        let component = Component::from_binary(engine, bytes).map_err(load_error)?;
        let mut linker = Linker::<GuestState>::new(engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker).map_err(load_error)?;
        let instance_pre = linker.instantiate_pre(&component).map_err(load_error)?;
        let pre = PolicyPluginPre::new(instance_pre).map_err(load_error)?;
        let policy = Self {
            pre,
            limits,
            caps,
            id: content_id(bytes),
            idle: Mutex::new(Vec::new()),
            metrics: PluginMetrics::default(),
        };
        let schema = policy.schema().map_err(|e| PluginError::Load {
            path: PathBuf::from(path),
            reason: e.to_string(),
        })?;
        if !serde_json::from_str::<serde_json::Value>(&schema).is_ok_and(|s| s.is_object()) {
            return Err(PluginError::Load {
                path: PathBuf::from(path),
                reason: "its `schema` export did not return a JSON object".into(),
            });
        }
        Ok(policy)
    }

    /// Counts calls into `metrics` from now on (a swapped-in plugin keeps its pipeline's).
    pub fn with_metrics(mut self, metrics: PluginMetrics) -> Self {
        self.metrics = metrics;
        self
    }

    /// Instances waiting in the pool (for tests and metrics).
    pub fn idle_instances(&self) -> usize {
        self.idle.lock().map(|i| i.len()).unwrap_or(0)
    }

    /// The limits every call runs under.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// A new instance in a new store, instantiated under the call limits.
    fn instantiate(&self) -> wasmtime::Result<Instance> {
        let mut store = Store::new(self.pre.engine(), GuestState::new(&self.limits, self.caps));
        store.limiter(|g| &mut g.limits);
        store.epoch_deadline_callback(|mut store| Ok(store.data_mut().budget.check()));
        self.arm(&mut store)?;
        let plugin = self.pre.instantiate(&mut store)?;
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
        f: impl FnOnce(&PolicyPlugin, &mut Store<GuestState>) -> wasmtime::Result<R> + Send,
    ) -> Result<R, PluginError> {
        off_executor(|| self.call_here(name, f))
    }

    fn call_here<R>(
        &self,
        name: &'static str,
        f: impl FnOnce(&PolicyPlugin, &mut Store<GuestState>) -> wasmtime::Result<R>,
    ) -> Result<R, PluginError> {
        let idle = self.idle.lock().ok().and_then(|mut idle| idle.pop());
        let started = Instant::now();
        let mut burnt = 0;
        let run = |instance: Option<Instance>| -> wasmtime::Result<(R, Instance)> {
            let mut instance = match instance {
                Some(i) => i,
                None => self.instantiate()?,
            };
            self.arm(&mut instance.store)?;
            let out = f(&instance.plugin, &mut instance.store);
            burnt = self
                .limits
                .fuel
                .saturating_sub(instance.store.get_fuel().unwrap_or(0));
            Ok((out?, instance))
        };
        let result = run(idle);
        self.metrics.record(name, started.elapsed(), burnt);
        match result {
            Ok((out, mut instance)) => {
                instance.calls += 1;
                if instance.calls < RECYCLE_AFTER {
                    if let Ok(mut idle) = self.idle.lock() {
                        if idle.len() < MAX_IDLE {
                            idle.push(instance);
                        }
                    }
                }
                Ok(out)
            }
            Err(e) => Err(PluginError::Call {
                call: name,
                reason: self.explain(&e),
            }),
        }
    }

    /// Says which limit a failed call hit, or what the trap was.
    fn explain(&self, e: &wasmtime::Error) -> String {
        let full = format!("{e:#}");
        match e.downcast_ref::<Trap>() {
            Some(Trap::OutOfFuel) => format!(
                "ran out of fuel (the limit is {} units per call)",
                self.limits.fuel
            ),
            Some(Trap::Interrupt) => format!(
                "ran past its time limit ({} ms of CPU per call)",
                self.limits.timeout.as_millis()
            ),
            _ if full.contains("forcing trap when growing memory") => format!(
                "ran past its memory limit ({} MiB per instance): {full}",
                self.limits.memory_bytes >> 20
            ),
            _ => format!("trapped: {full}"),
        }
    }
}

/// Runs `f` where wasmtime-wasi's synchronous host functions may block on their own: they
/// drive their I/O with `Handle::block_on`, which panics on a thread that is running async
/// tasks. A guest reaches them by writing to stdout or stderr (a Rust panic message does) or by
/// sleeping. On a multi-threaded runtime the call runs in `block_in_place`; on a
/// current-thread runtime, on a scoped thread of its own; outside any runtime, right here.
fn off_executor<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(RuntimeFlavor::MultiThread) => tokio::task::block_in_place(f),
        Ok(_) => std::thread::scope(|scope| match scope.spawn(f).join() {
            Ok(out) => out,
            Err(panic) => std::panic::resume_unwind(panic),
        }),
        Err(_) => f(),
    }
}

impl Policy for WasmPolicy {
    fn validate(&self, event: &str) -> Result<Result<(), FieldError>, PluginError> {
        self.call("validate", |p, s| {
            p.ordo_plugin_policy().call_validate(s, event)
        })
        .map(|r| r.map_err(FieldError::from))
    }

    fn merge(&self, incoming: &str, stored: Option<&str>) -> Result<Decision, PluginError> {
        self.call("merge", |p, s| {
            p.ordo_plugin_policy().call_merge(s, incoming, stored)
        })
        .map(Decision::from)
    }

    fn schema(&self) -> Result<String, PluginError> {
        self.call("schema", |p, s| p.ordo_plugin_policy().call_schema(s))
    }

    fn id(&self) -> &str {
        &self.id
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
