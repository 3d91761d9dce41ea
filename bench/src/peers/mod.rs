//! Ordo's peers in the consume benchmark (issue 34): designs a team would otherwise build,
//! run on the same topic, store and events as Ordo in the same run.
//!
//! - [`keyed`]: a key-ordered parallel consumer in Rust, the KEY ordering mode of Confluent's
//!   Parallel Consumer: one event per key at a time, many keys at once, each event read,
//!   merged and written on its own.
//! - [`quix`]: a Quix Streams application in Python (`bench/peers/quix_app.py`), one
//!   conditional put per message, run as a subprocess and judged by what the table holds.
//!
//! The third peer, the sequential baseline (the original service's design), lives with the
//! benchmark program.

pub mod keyed;
pub mod quix;
