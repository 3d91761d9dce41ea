//! Runs a policy component under wasmtime, sandboxed on every call.
//!
//! The engine and the component are compiled once and linked once (`instantiate_pre`); each
//! call gets a fresh `Store` with an empty WASI context (no preopened files, no environment,
//! no arguments, no network), a fuel budget and a memory cap. A trap, running out of fuel or
//! hitting the memory cap ends only that call, as a [`PluginError`].

use std::path::Path;

use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::{Config, Engine, Store, StoreLimits, StoreLimitsBuilder};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::bindings::{PolicyPlugin, PolicyPluginPre};
use super::{Decision, FieldError, PluginError, Policy};

/// Fuel for one call: a few milliseconds of guest work on this class of machine.
pub const DEFAULT_FUEL: u64 = 50_000_000;
/// Linear memory one instance may grow to.
pub const DEFAULT_MEMORY_BYTES: usize = 16 << 20;

/// Per-call limits of the sandbox.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Fuel units one call may burn before it traps.
    pub fuel: u64,
    /// Bytes of linear memory one instance may hold.
    pub memory_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            fuel: DEFAULT_FUEL,
            memory_bytes: DEFAULT_MEMORY_BYTES,
        }
    }
}

/// State a guest sees: an empty WASI context and its resource table, plus the memory cap.
struct Guest {
    /// WASI with no capabilities granted; std in the guest still links against it.
    wasi: WasiCtx,
    /// Resources WASI hands to the guest (streams), owned per call.
    table: ResourceTable,
    /// Enforces [`Limits::memory_bytes`].
    limits: StoreLimits,
}

impl WasiView for Guest {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// A compiled, linked policy component.
pub struct WasmPolicy {
    /// Shared compiler and runtime settings (fuel metering on).
    engine: Engine,
    /// The component with its imports resolved, ready to instantiate cheaply.
    pre: PolicyPluginPre<Guest>,
    /// Limits applied to every call.
    limits: Limits,
}

impl WasmPolicy {
    /// Compiles and links the component at `path`.
    pub fn load(path: &Path, limits: Limits) -> Result<Self, PluginError> {
        let bytes = std::fs::read(path).map_err(|source| PluginError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let load_error = |e: wasmtime::Error| PluginError::Load {
            path: path.to_path_buf(),
            reason: format!("{e:#}"),
        };
        let mut config = Config::new();
        config.consume_fuel(true);
        let engine = Engine::new(&config).map_err(load_error)?;
        let component = Component::new(&engine, &bytes).map_err(load_error)?;
        let mut linker = Linker::<Guest>::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker).map_err(load_error)?;
        let instance_pre = linker.instantiate_pre(&component).map_err(load_error)?;
        let pre = PolicyPluginPre::new(instance_pre).map_err(load_error)?;
        let policy = Self {
            engine,
            pre,
            limits,
        };
        // Prove the contract once at load time rather than on the first event.
        policy.schema().map_err(|e| PluginError::Load {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        Ok(policy)
    }

    /// Runs `f` against a fresh, limited instance.
    fn call<R>(
        &self,
        name: &'static str,
        f: impl FnOnce(&PolicyPlugin, &mut Store<Guest>) -> wasmtime::Result<R>,
    ) -> Result<R, PluginError> {
        let guest = Guest {
            wasi: WasiCtx::builder().build(),
            table: ResourceTable::new(),
            limits: StoreLimitsBuilder::new()
                .memory_size(self.limits.memory_bytes)
                .instances(4)
                .build(),
        };
        let mut store = Store::new(&self.engine, guest);
        store.limiter(|g| &mut g.limits);
        let run = |store: &mut Store<Guest>| -> wasmtime::Result<R> {
            store.set_fuel(self.limits.fuel)?;
            let plugin = self.pre.instantiate(&mut *store)?;
            f(&plugin, store)
        };
        run(&mut store).map_err(|e| PluginError::Call {
            call: name,
            reason: format!("{e:#}"),
        })
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
}
