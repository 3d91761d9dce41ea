//! A pipeline's data path after the bus: consume → validate → merge → conditional write →
//! dead-letter → store the offset.
//!
//! [`consume::run`] is the apply loop over any [`crate::bus::Consumer`]: it keeps each key's
//! events in order and runs keys in parallel ([`worker`]), and stores an offset only once it
//! and every earlier one are durable ([`offsets`]). [`Applier`] applies a key's events to the
//! store through the plugin, with writes conditioned on the revision merged against. A
//! transient failure is waited out ([`waits`]); throttling lowers the pace ([`pace`]).

mod absence;
pub mod admission;
mod applier;
pub mod changes;
mod climb;
pub mod consume;
mod offsets;
mod pace;
pub mod reason;
mod waits;
mod worker;

pub use applier::{merge_call, Applied, Applier, ApplyError, Change, Event, Failure, Outcome};
pub use reason::{Code, Reason};
pub use waits::Waits;
