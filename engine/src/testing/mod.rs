//! In-memory stand-ins for the seams, so the engine's own logic (the apply loop, ingest,
//! readiness) is tested without servers: [`MemoryBus`] for the bus, [`MemoryStore`] for the
//! store, [`oracle`] for what patient-profile records must be, [`MaxV`] for a plugin ([`BusyFirst`] for one at its cap), and [`pipeline()`] for a checked pipeline. What Kafka,
//! DynamoDB and the WebAssembly host really do is tested end to end in `engine/tests/` against
//! the local stack. `sim` (test builds only) is a deterministic simulation of the apply path
//! over simulated seams.

mod bus;
pub mod oracle;
mod pipeline;
mod policy;
#[cfg(test)]
mod sim;
mod store;

pub use bus::{MemoryBus, MemoryConsumer, Published};
pub use pipeline::pipeline;
pub use policy::{BusyFirst, MaxV};
pub use store::MemoryStore;
