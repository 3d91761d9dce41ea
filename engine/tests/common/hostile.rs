//! The hostile test plugin's attacks, one per class, with what the engine must say of each
//! (see `plugins/hostile/src/lib.rs`), and an engine running it.

use super::{hostile_plugin, Engine, Names};

/// The CPU-time limit per call the hostile pipelines run under.
pub const LIMIT_MS: u64 = 50;

/// Attacks run in `validate`, and what their refusal (a 422 at ingest, a dead letter from the
/// topic) must say: holding the thread, growing, reaching out, flooding.
pub const VALIDATE_ATTACKS: [(&str, &str); 13] = [
    ("loop", "time limit (50 ms"),
    ("alloc", "memory limit (16 MiB"),
    ("trap", "trapped"),
    ("sleep", "does not provide `wasi:clocks/monotonic-clock"),
    ("poll", "#subscribe-duration"),
    ("recurse", "trapped"),
    ("random", "at most 1048576"),
    ("stdout", "does not provide `wasi:cli/stdout"),
    ("file", "does not provide `wasi:filesystem/"),
    ("network", "does not provide `wasi:sockets/"),
    ("env", "env vars: 0, args: 0"),
    ("clock", "clock secs: 0"),
    ("huge-field-error", "[cut from 2097152 bytes]"),
];

/// Attacks run in `merge` (the event passes validation, so ingest accepts it), and what its
/// dead letter must say.
pub const MERGE_ATTACKS: [(&str, &str); 2] = [
    ("huge-record", "an item holds at most 409600"),
    ("huge-reason", "[cut from 2097152 bytes]"),
];

/// An event of `key` asking for `attack`.
pub fn attack_event(key: &str, attack: &str) -> String {
    format!(r#"{{"PatientId":"{key}","attack":"{attack}"}}"#)
}

/// An event of `key` so large (about 999 KB) that its dead letter cannot also carry a 1 KiB
/// reason under the broker's 1 MB message limit; its merge rejects it with a 2 MB reason.
pub fn letter_too_large_event(key: &str) -> String {
    let padding = "p".repeat(999_000);
    format!(r#"{{"PatientId":"{key}","attack":"huge-reason","Padding":"{padding}"}}"#)
}

/// An engine running the hostile plugin with fuel to spare, so the time limit (CPU time) and
/// the memory cap are what stop the attacks that run guest code.
pub fn hostile_engine(label: &str) -> Engine {
    Engine::builder(Names::unique(label))
        .plugin(&hostile_plugin())
        .extra(&format!(
            "plugin_fuel = 100000000000\nplugin_timeout_ms = {LIMIT_MS}\nplugin_memory_mib = 16"
        ))
        .start()
}
