//! Benchmark only: the rule of `patient-profile-lww` as an Extism plugin (built for
//! `wasm32-unknown-unknown`), so `make bench` can compare one `merge` call through Ordo's
//! component host with the same call through the `extism` crate, on the same machine.
//!
//! Extism passes one byte buffer each way, so the framing is kept as cheap as it gets:
//! in, `incoming` JSON, a NUL byte and the stored JSON (nothing after the NUL for a new key);
//! out, one tag byte (`W`rite, `S`kip, `R`eject) followed by the record or the reason.
#![allow(missing_docs)] // `#[plugin_fn]` generates an undocumented export

use extism_pdk::{plugin_fn, FnResult};
use ordo_plugin_sdk::run::{self, Wire};
use patient_profile_lww::policy::{patient_entity, Lww};

/// The patient profile's configuration, read once per instance (Extism has no configure step
/// of Ordo's; the benchmark compares the merge call alone).
fn entity() -> &'static ordo_plugin_sdk::entity::Entity {
    static ENTITY: std::sync::OnceLock<ordo_plugin_sdk::entity::Entity> =
        std::sync::OnceLock::new();
    ENTITY.get_or_init(patient_entity)
}

/// `merge(incoming \0 stored?)` → tag byte + record or reason.
#[plugin_fn]
pub fn merge(input: Vec<u8>) -> FnResult<Vec<u8>> {
    let text = String::from_utf8_lossy(&input);
    let (incoming, stored) = match text.split_once('\0') {
        Some((incoming, "")) => (incoming, None),
        Some((incoming, stored)) => (incoming, Some(stored)),
        None => (text.as_ref(), None),
    };
    let (tag, body) = match run::merge::<Lww>(entity(), incoming, stored) {
        Wire::Write(record) => (b'W', record),
        Wire::Skip(why) => (b'S', why),
        Wire::Reject(why) => (b'R', why),
    };
    let mut out = Vec::with_capacity(body.len() + 1);
    out.push(tag);
    out.extend_from_slice(body.as_bytes());
    Ok(out)
}
