//! The policy seam, simulated: the two patient-profile plugins' own Rust code, run natively
//! (their crates are plain Rust; `make plugins` builds the same code as components), with the
//! world's faults: calls that panic, and calls the host is too busy to take.

use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use ordo_plugin_sdk::run::{self, Wire};
use ordo_plugin_sdk::Plugin;

use super::plan;
use super::world::{State, World};
use crate::plugin::{Decision, FieldError, PluginError, Policy};

/// A plugin crate's policy as the engine calls it, configured for the patient profile.
pub struct Native<P: Plugin> {
    /// What the plugin made of the patient profile's configuration.
    config: P::Config,
    /// The world, for its faults.
    world: Arc<World>,
    /// The id records name.
    id: &'static str,
    /// The plugin.
    plugin: PhantomData<fn() -> P>,
}

/// The policy `which`, as a new member or a swap puts it in force.
pub fn policy(world: &Arc<World>, which: plan::Policy) -> Arc<dyn Policy> {
    match which {
        plan::Policy::Lww => Arc::new(Native::<patient_profile_lww::policy::Lww> {
            config: patient_profile_lww::policy::patient_entity(),
            world: Arc::clone(world),
            id: "sim:lww",
            plugin: PhantomData,
        }),
        plan::Policy::FieldMerge => {
            Arc::new(Native::<patient_profile_field_merge::policy::FieldMerge> {
                config: patient_profile_field_merge::policy::patient_profile(),
                world: Arc::clone(world),
                id: "sim:field-merge",
                plugin: PhantomData,
            })
        }
    }
}

impl<P: Plugin> Native<P> {
    /// Panics or answers busy when the world says so.
    fn faults(&self, call: &'static str) -> Result<(), PluginError> {
        let mut w = self.world.lock();
        if w.faults.panics > 0 {
            w.faults.panics -= 1;
            w.trace(format_args!("plugin {call} panics"));
            w.saw("worker panic");
            drop(w);
            panic!("a planned panic of the simulation");
        }
        if State::during(w.faults.plugin_busy) {
            w.saw("plugin busy");
            return Err(PluginError::Busy {
                live: 1,
                waited: Duration::from_secs(1),
            });
        }
        Ok(())
    }
}

impl<P: Plugin + 'static> Policy for Native<P> {
    fn validate(&self, event: &str) -> Result<Result<(), FieldError>, PluginError> {
        self.faults("validate")?;
        Ok(
            run::validate::<P>(&self.config, event).map_err(|e| FieldError {
                field: e.field,
                message: e.message,
            }),
        )
    }

    fn merge(&self, incoming: &str, stored: Option<&str>) -> Result<Decision, PluginError> {
        self.faults("merge")?;
        Ok(match run::merge::<P>(&self.config, incoming, stored) {
            Wire::Write(record) => Decision::Write(record),
            Wire::Skip(why) => Decision::Skip(why),
            Wire::Reject(why) => Decision::Reject(why),
        })
    }

    fn schema(&self) -> Result<String, PluginError> {
        Ok(run::schema::<P>(&self.config))
    }

    fn id(&self) -> &str {
        self.id
    }
}
