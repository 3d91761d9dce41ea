//! Hot swap: putting a new plugin file in force without a restart.
//!
//! A reload reads the pipeline's plugin file, compiles and links it on a blocking thread (off
//! the event path), checks the contract (`schema` answers a JSON object), runs the pipeline's
//! self-test file when it names one, and only then replaces the policy in the pipeline's
//! [`PolicyHandle`]. Calls already holding the old policy finish on it. A file that fails any
//! step is refused with its reason and the old policy keeps serving.
//!
//! Three things trigger a reload: the file changing on disk ([`Reloader::watch`] polls its
//! size, modification time and inode), SIGHUP, and `POST /admin/pipelines/{name}/reload`.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use tracing::{error, info};

use super::sandbox::{Capabilities, Limits};
use super::wasm::WasmPolicy;
use super::{selftest, PluginError, Policy, PolicyHandle};
use crate::metrics::PluginMetrics;
use crate::shutdown::Shutdown;
use crate::watch::{stamp, Stamp};

/// How often the watcher looks at plugin files. A change is acted on once it has looked the
/// same twice, so a file being written is not read half-way: within about 0.5 s.
pub const WATCH_INTERVAL: Duration = Duration::from_millis(250);

/// Everything needed to load a pipeline's plugin.
#[derive(Clone)]
pub struct PluginSpec {
    /// The plugin file.
    pub path: PathBuf,
    /// Per-call limits.
    pub limits: Limits,
    /// WASI capabilities granted.
    pub capabilities: Capabilities,
    /// JSON Lines of sample events the plugin must pass before it is put in force.
    pub self_test: Option<PathBuf>,
    /// The pipeline's key field, to key the self-test's records.
    pub key_field: String,
    /// The pipeline's `plugin_config`, as JSON text (an object; `{}` when it has none):
    /// handed to every instance before its first call.
    pub config: String,
}

/// Without the configuration's text: a spec may reach a log line, its configuration never.
impl std::fmt::Debug for PluginSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginSpec")
            .field("path", &self.path)
            .field("limits", &self.limits)
            .field("capabilities", &self.capabilities)
            .field("self_test", &self.self_test)
            .field("key_field", &self.key_field)
            .field("config", &format_args!("<{} bytes>", self.config.len()))
            .finish()
    }
}

/// Loads the plugin `spec` names, configured with its `config`, and runs its self-test.
/// Blocking: compiles the component.
/// The self-test's calls are not counted in any pipeline's metrics.
pub fn load_checked(spec: &PluginSpec) -> Result<WasmPolicy, PluginError> {
    let policy =
        WasmPolicy::load_configured(&spec.path, spec.limits, spec.capabilities, &spec.config)?;
    if let Some(test) = &spec.self_test {
        let refused = |reason: String| PluginError::Load {
            path: spec.path.clone(),
            reason,
        };
        let input = std::fs::read_to_string(test)
            .map_err(|e| refused(format!("cannot read its self-test {}: {e}", test.display())))?;
        let report = selftest::run(&policy, &spec.key_field, &input)
            .map_err(|e| refused(format!("self-test {}: {e}", test.display())))?;
        if let Some(failures) = report.failure_summary() {
            return Err(refused(format!(
                "it fails its self-test {}: {failures}",
                test.display()
            )));
        }
    }
    Ok(policy)
}

/// What a reload did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reloaded {
    /// A different plugin is now in force.
    Swapped {
        /// The id of the plugin replaced.
        from: String,
        /// The id of the plugin now in force.
        to: String,
    },
    /// The file holds the plugin already in force.
    Unchanged {
        /// Its id.
        id: String,
    },
}

/// Why a reload did not happen.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// No pipeline has this name.
    #[error("no pipeline is named `{0}`")]
    UnknownPipeline(String),
    /// The new file was refused; the old plugin keeps serving.
    #[error("pipeline `{pipeline}`: new plugin refused, the old one keeps serving: {source}")]
    Refused {
        /// The pipeline.
        pipeline: String,
        /// Why.
        source: PluginError,
    },
}

/// How the last reload of a pipeline ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReloadOutcome {
    /// A different plugin was put in force.
    Swapped,
    /// The file held the plugin already in force.
    Unchanged,
    /// The file was refused; the plugin in force stayed.
    Refused,
}

impl ReloadOutcome {
    /// `swapped`, `unchanged` or `refused`, as the reload counters label them.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Swapped => "swapped",
            Self::Unchanged => "unchanged",
            Self::Refused => "refused",
        }
    }
}

/// The last reload of a pipeline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LastReload {
    /// When it ended.
    pub at: SystemTime,
    /// How.
    pub outcome: ReloadOutcome,
    /// Why a refused file was refused.
    pub detail: Option<String>,
}

/// A pipeline's plugin: the one in force, since when, and how the last reload went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginStatus {
    /// The pipeline.
    pub pipeline: String,
    /// `sha256:<hex>` of the plugin in force.
    pub plugin: String,
    /// The file the pipeline watches.
    pub file: PathBuf,
    /// When the plugin in force was put in force (at start-up or by a reload).
    pub loaded_at: SystemTime,
    /// The last reload, if any happened since start-up.
    pub last_reload: Option<LastReload>,
}

/// When a slot's plugin was put in force, and its last reload.
#[derive(Debug, Clone)]
struct History {
    loaded_at: SystemTime,
    last_reload: Option<LastReload>,
}

/// One pipeline's plugin slot.
pub struct Slot {
    /// The pipeline.
    pipeline: String,
    /// What its plugin is loaded from.
    spec: PluginSpec,
    /// The policy in force, shared with ingest and the consumer.
    handle: PolicyHandle,
    /// Where the pipeline's plugin calls, the plugin in force and reloads are counted.
    metrics: PluginMetrics,
    /// Serialises reloads of this pipeline.
    busy: tokio::sync::Mutex<()>,
    /// The file's stamp when it was last loaded or refused.
    loaded: Mutex<Option<Stamp>>,
    /// Since when its plugin is in force, and the last reload.
    history: Mutex<History>,
}

impl Slot {
    /// Loads `spec`'s plugin (compiling it: blocking) and runs its self-test: the slot of
    /// `pipeline`, with that plugin in force and counted in `metrics`.
    pub fn load(
        pipeline: &str,
        spec: PluginSpec,
        metrics: PluginMetrics,
    ) -> Result<Self, PluginError> {
        let loaded = load_checked(&spec)?.with_metrics(metrics.clone());
        metrics.in_force(loaded.id());
        info!(pipeline, plugin = %spec.path.display(), id = %loaded.id(), "Plugin loaded.");
        Ok(Self {
            pipeline: pipeline.to_string(),
            loaded: Mutex::new(stamp(&spec.path)),
            handle: PolicyHandle::new(Arc::new(loaded)),
            spec,
            metrics,
            busy: tokio::sync::Mutex::new(()),
            history: Mutex::new(History {
                loaded_at: SystemTime::now(),
                last_reload: None,
            }),
        })
    }

    /// Records how a reload ended (and, when it swapped, that the new plugin is in force now).
    fn reloaded(&self, outcome: ReloadOutcome, detail: Option<String>) {
        if let Ok(mut history) = self.history.lock() {
            let at = SystemTime::now();
            if outcome == ReloadOutcome::Swapped {
                history.loaded_at = at;
            }
            history.last_reload = Some(LastReload {
                at,
                outcome,
                detail,
            });
        }
    }

    /// The handle every user of the pipeline's policy shares.
    pub fn handle(&self) -> &PolicyHandle {
        &self.handle
    }
}

/// The plugins of every pipeline, and the means to reload them.
pub struct Reloader {
    /// One per pipeline, in the file's order.
    slots: Vec<Slot>,
}

impl std::fmt::Debug for Reloader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reloader")
            .field("plugins", &self.plugins())
            .finish()
    }
}

impl Reloader {
    /// A reloader of `slots`, each holding the plugin it loaded at start-up.
    pub fn new(slots: Vec<Slot>) -> Self {
        Self { slots }
    }

    /// Every pipeline's plugin: the one in force, since when, and the last reload.
    pub fn plugins(&self) -> Vec<PluginStatus> {
        self.slots
            .iter()
            .map(|s| {
                let history = s.history.lock().map(|h| h.clone()).ok();
                PluginStatus {
                    pipeline: s.pipeline.clone(),
                    plugin: s.handle.current().id().to_string(),
                    file: s.spec.path.clone(),
                    loaded_at: history
                        .as_ref()
                        .map_or(SystemTime::UNIX_EPOCH, |h| h.loaded_at),
                    last_reload: history.and_then(|h| h.last_reload),
                }
            })
            .collect()
    }

    /// Reloads `pipeline`'s plugin from its file.
    pub async fn reload(&self, pipeline: &str) -> Result<Reloaded, ReloadError> {
        let slot = self
            .slots
            .iter()
            .find(|s| s.pipeline == pipeline)
            .ok_or_else(|| ReloadError::UnknownPipeline(pipeline.to_string()))?;
        self.reload_slot(slot).await
    }

    /// Reloads every pipeline, logging each result (for SIGHUP).
    pub async fn reload_all(&self) {
        for slot in &self.slots {
            let _ = self.reload_slot(slot).await;
        }
    }

    async fn reload_slot(&self, slot: &Slot) -> Result<Reloaded, ReloadError> {
        let _busy = slot.busy.lock().await;
        let seen = stamp(&slot.spec.path);
        // A file holding the plugin in force is not compiled again: reloading it does no work.
        let current_id = slot.handle.current().id().to_string();
        if let Ok(bytes) = tokio::fs::read(&slot.spec.path).await {
            if super::wasm::content_id(&bytes) == current_id {
                if let Ok(mut last) = slot.loaded.lock() {
                    *last = seen;
                }
                slot.reloaded(ReloadOutcome::Unchanged, None);
                return Ok(Reloaded::Unchanged { id: current_id });
            }
        }
        let spec = slot.spec.clone();
        let loaded = tokio::task::spawn_blocking(move || load_checked(&spec))
            .await
            .unwrap_or_else(|e| {
                Err(PluginError::Load {
                    path: slot.spec.path.clone(),
                    reason: format!("the loader panicked: {e}"),
                })
            });
        if let Ok(mut last) = slot.loaded.lock() {
            *last = seen;
        }
        let policy = match loaded {
            Ok(policy) => policy.with_metrics(slot.metrics.clone()),
            Err(source) => {
                slot.metrics.refused();
                slot.reloaded(
                    ReloadOutcome::Refused,
                    Some(super::bounded(&source.to_string(), super::MAX_REASON)),
                );
                // A refused configuration's reason is the plugin's text (it may quote the
                // configuration): the log names the kind, the reload's answer and the
                // pipeline's status carry the reason.
                match &source {
                    PluginError::Config { .. } => {
                        error!(pipeline = %slot.pipeline, plugin = %slot.spec.path.display(),
                        error = source.kind(), "New plugin refused; the old one keeps serving.")
                    }
                    _ => {
                        error!(pipeline = %slot.pipeline, plugin = %slot.spec.path.display(), error = %source,
                        "New plugin refused; the old one keeps serving.")
                    }
                }
                return Err(ReloadError::Refused {
                    pipeline: slot.pipeline.clone(),
                    source,
                });
            }
        };
        let current = slot.handle.current();
        if current.id() == policy.id() {
            slot.reloaded(ReloadOutcome::Unchanged, None);
            return Ok(Reloaded::Unchanged {
                id: current.id().to_string(),
            });
        }
        let to = policy.id().to_string();
        let old = slot.handle.replace(Arc::new(policy));
        slot.metrics.in_force(&to);
        slot.metrics.swapped();
        slot.reloaded(ReloadOutcome::Swapped, None);
        info!(pipeline = %slot.pipeline, from = %old.id(), to = %to, "Plugin swapped.");
        Ok(Reloaded::Swapped {
            from: old.id().to_string(),
            to,
        })
    }

    /// Watches for what triggers a reload until `shutdown`: the files (see
    /// [`Reloader::watch`]) and SIGHUP, which reloads every pipeline.
    pub fn spawn_triggers(self: &Arc<Self>, shutdown: &Shutdown) {
        tokio::spawn(Arc::clone(self).watch(shutdown.clone()));
        #[cfg(unix)]
        tokio::spawn(Arc::clone(self).on_hangup(shutdown.clone()));
    }

    /// Reloads every pipeline's plugin on each SIGHUP, until `shutdown`.
    #[cfg(unix)]
    async fn on_hangup(self: Arc<Self>, mut shutdown: Shutdown) {
        use tokio::signal::unix::{signal, SignalKind};
        let mut hangup = match signal(SignalKind::hangup()) {
            Ok(h) => h,
            Err(e) => {
                error!(error = %e, "Cannot listen for SIGHUP; reload through the file or the admin endpoint.");
                return;
            }
        };
        loop {
            tokio::select! {
                _ = shutdown.wait() => return,
                got = hangup.recv() => {
                    if got.is_none() { return; }
                    info!("SIGHUP: reloading every plugin.");
                    self.reload_all().await;
                }
            }
        }
    }

    /// Polls every plugin file until `shutdown`, reloading one that changed and then held
    /// still for one interval.
    pub async fn watch(self: Arc<Self>, mut shutdown: Shutdown) {
        let mut previous: Vec<Option<Stamp>> =
            self.slots.iter().map(|s| stamp(&s.spec.path)).collect();
        loop {
            tokio::select! {
                _ = shutdown.wait() => return,
                _ = tokio::time::sleep(WATCH_INTERVAL) => {}
            }
            for (i, slot) in self.slots.iter().enumerate() {
                let now = stamp(&slot.spec.path);
                let settled = now.is_some() && now == previous[i];
                let changed = slot.loaded.lock().map(|l| *l != now).unwrap_or(false);
                previous[i] = now;
                if settled && changed {
                    let _ = self.reload_slot(slot).await;
                }
            }
        }
    }
}
