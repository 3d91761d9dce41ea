//! The one-shot commands, each doing one job against a pipeline and returning: check a file
//! ([`validate`]), re-apply a topic's events ([`replay`]), re-drive dead letters
//! ([`redrive`]), watch the plugin's decisions ([`tap`]), backfill from a file ([`load`]), watch a running engine ([`top`]). They build their Kafka clients with
//! the engine's [`crate::bus::kafka::KafkaConfig`] and read with its bounded reader.

use std::path::Path;

use crate::config::{self, Pipeline, Problems};
use crate::plugin::reload::load_checked;
use crate::plugin::wasm::WasmPolicy;
use crate::plugin::PluginError;
use crate::store::dynamo::{self, DynamoStore};

pub mod load;
pub mod redrive;
pub mod replay;
pub mod tap;
pub mod top;
pub mod validate;

/// Why a command could not find its pipeline.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// The file is wrong.
    #[error(transparent)]
    Config(#[from] Problems),
    /// The file has no pipeline by that name.
    #[error("{file} has no pipeline `{name}` (it has: {known})")]
    Unknown {
        /// The pipelines file.
        file: String,
        /// The name asked for.
        name: String,
        /// The names it has.
        known: String,
    },
}

/// A pipeline's plugin could not be loaded (or failed its self-test).
#[derive(Debug, thiserror::Error)]
#[error("pipeline `{pipeline}`: {source}")]
pub struct PluginLoadError {
    /// The pipeline.
    pub pipeline: String,
    /// Why.
    pub source: PluginError,
}

/// `pipeline`'s plugin, loaded and self-tested as the engine would, and its table: what a
/// command that works beside the engine needs to decide as it would.
pub async fn plugin_and_table(
    pipeline: &Pipeline,
) -> Result<(WasmPolicy, DynamoStore), PluginLoadError> {
    let policy = load_checked(&pipeline.plugin_spec()).map_err(|source| PluginLoadError {
        pipeline: pipeline.name.clone(),
        source,
    })?;
    let store = DynamoStore::new(dynamo::client().await, &pipeline.table, &pipeline.key_field);
    Ok((policy, store))
}

/// The pipeline named `name` in the file at `path`.
pub fn pipeline_named(
    path: &Path,
    name: &str,
) -> Result<(Pipeline, config::kafka::KafkaProperties), PipelineError> {
    let config::Config {
        pipelines, kafka, ..
    } = config::load(path)?;
    let known = pipelines
        .iter()
        .map(|p| p.name.as_str())
        .collect::<Vec<_>>()
        .join(", ");
    pipelines
        .into_iter()
        .find(|p| p.name == name)
        .map(|p| (p, kafka))
        .ok_or_else(|| PipelineError::Unknown {
            file: path.display().to_string(),
            name: name.to_string(),
            known,
        })
}
