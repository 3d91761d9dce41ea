//! Host bindings generated from `plugins/wit/` (the contract, `ordo:plugin@0.2.0`) and from
//! `plugins/wit/legacy/0.1.0/` (the contract before `configure`), converted to engine types
//! at this border. [`Contract`] says which one a component implements; [`Pre`] and
//! [`Bound`] hide the difference from the rest of the host.

use wasmtime::component::types::ComponentItem;
use wasmtime::component::{Component, InstancePre};
use wasmtime::Engine;

use super::sandbox::GuestState;
use super::{bounded, Decision, FieldError, MAX_FIELD, MAX_TEXT};

/// The current contract.
mod v0_2 {
    wasmtime::component::bindgen!({
        path: "../plugins/wit",
        world: "policy-plugin",
    });
}

/// The contract before `configure`: its plugins still run, without configuration.
mod v0_1 {
    wasmtime::component::bindgen!({
        path: "../plugins/wit/legacy/0.1.0",
        world: "policy-plugin",
    });
}

/// The export a `0.2.0` policy component has.
const EXPORT_0_2: &str = "ordo:plugin/policy@0.2.0";
/// The export a `0.1.0` policy component has.
const EXPORT_0_1: &str = "ordo:plugin/policy@0.1.0";

/// Which version of the contract a component implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Contract {
    /// `ordo:plugin@0.1.0`: no `configure`.
    V0_1,
    /// `ordo:plugin@0.2.0`: configured once per instance.
    V0_2,
}

impl Contract {
    /// The contract `component` exports (the newest when it exports several), or why it is
    /// no policy.
    pub fn of(component: &Component, engine: &Engine) -> Result<Self, String> {
        let ty = component.component_type();
        let exported = |name: &str| {
            ty.exports(engine).any(|(n, item)| {
                n == name && matches!(item.ty, ComponentItem::ComponentInstance(_))
            })
        };
        if exported(EXPORT_0_2) {
            Ok(Self::V0_2)
        } else if exported(EXPORT_0_1) {
            Ok(Self::V0_1)
        } else {
            Err(format!(
                "it exports neither `{EXPORT_0_2}` nor `{EXPORT_0_1}` (build it against plugins/wit)"
            ))
        }
    }

    /// `ordo:plugin@<version>`, for messages.
    pub fn name(self) -> &'static str {
        match self {
            Self::V0_1 => "ordo:plugin@0.1.0",
            Self::V0_2 => "ordo:plugin@0.2.0",
        }
    }
}

/// A linked component, ready to instantiate, under the contract it implements.
pub enum Pre {
    /// A `0.1.0` component.
    V0_1(v0_1::PolicyPluginPre<GuestState>),
    /// A `0.2.0` component.
    V0_2(v0_2::PolicyPluginPre<GuestState>),
}

impl Pre {
    /// Binds `instance_pre` as `contract` says.
    pub fn new(
        contract: Contract,
        instance_pre: InstancePre<GuestState>,
    ) -> wasmtime::Result<Self> {
        Ok(match contract {
            Contract::V0_1 => Self::V0_1(v0_1::PolicyPluginPre::new(instance_pre)?),
            Contract::V0_2 => Self::V0_2(v0_2::PolicyPluginPre::new(instance_pre)?),
        })
    }

    /// The engine the component was compiled by.
    pub fn engine(&self) -> &Engine {
        match self {
            Self::V0_1(pre) => pre.engine(),
            Self::V0_2(pre) => pre.engine(),
        }
    }

    /// A new instance in `store`.
    pub fn instantiate(&self, store: &mut wasmtime::Store<GuestState>) -> wasmtime::Result<Bound> {
        Ok(match self {
            Self::V0_1(pre) => Bound::V0_1(pre.instantiate(store)?),
            Self::V0_2(pre) => Bound::V0_2(pre.instantiate(store)?),
        })
    }
}

/// One instance's exports, under the contract it implements.
pub enum Bound {
    /// A `0.1.0` instance.
    V0_1(v0_1::PolicyPlugin),
    /// A `0.2.0` instance.
    V0_2(v0_2::PolicyPlugin),
}

type Store<'a> = &'a mut wasmtime::Store<GuestState>;

impl Bound {
    /// Hands the instance its configuration (JSON text); `Ok(Err(reason))` when the plugin
    /// refuses it, its reason bounded. A `0.1.0` instance takes none: only `{}` reaches it,
    /// and it is not called.
    pub fn configure(
        &self,
        store: Store<'_>,
        config: &str,
    ) -> wasmtime::Result<Result<(), String>> {
        match self {
            Self::V0_1(_) => Ok(Ok(())),
            Self::V0_2(p) => Ok(p
                .ordo_plugin_policy()
                .call_configure(store, config)?
                .map_err(|why| bounded(&why, MAX_TEXT))),
        }
    }

    /// `validate`, its error's texts bounded (they reach 422 answers and log lines).
    pub fn validate(
        &self,
        store: Store<'_>,
        event: &str,
    ) -> wasmtime::Result<Result<(), FieldError>> {
        let field_error = |field: &str, message: &str| FieldError {
            field: bounded(field, MAX_FIELD),
            message: bounded(message, MAX_TEXT),
        };
        Ok(match self {
            Self::V0_1(p) => p
                .ordo_plugin_policy()
                .call_validate(store, event)?
                .map_err(|e| field_error(&e.field, &e.message)),
            Self::V0_2(p) => p
                .ordo_plugin_policy()
                .call_validate(store, event)?
                .map_err(|e| field_error(&e.field, &e.message)),
        })
    }

    /// `merge`, its reason bounded (it reaches log lines and dead-letter headers); a
    /// record's size is the store's to judge.
    pub fn merge(
        &self,
        store: Store<'_>,
        incoming: &str,
        stored: Option<&str>,
    ) -> wasmtime::Result<Decision> {
        use v0_1::exports::ordo::plugin::policy::Decision as D1;
        use v0_2::exports::ordo::plugin::policy::Decision as D2;
        Ok(match self {
            Self::V0_1(p) => match p.ordo_plugin_policy().call_merge(store, incoming, stored)? {
                D1::Write(record) => Decision::Write(record),
                D1::Skip(why) => Decision::Skip(bounded(&why, MAX_TEXT)),
                D1::Reject(why) => Decision::Reject(bounded(&why, MAX_TEXT)),
            },
            Self::V0_2(p) => match p.ordo_plugin_policy().call_merge(store, incoming, stored)? {
                D2::Write(record) => Decision::Write(record),
                D2::Skip(why) => Decision::Skip(bounded(&why, MAX_TEXT)),
                D2::Reject(why) => Decision::Reject(bounded(&why, MAX_TEXT)),
            },
        })
    }

    /// `schema`.
    pub fn schema(&self, store: Store<'_>) -> wasmtime::Result<String> {
        match self {
            Self::V0_1(p) => p.ordo_plugin_policy().call_schema(store),
            Self::V0_2(p) => p.ordo_plugin_policy().call_schema(store),
        }
    }
}
