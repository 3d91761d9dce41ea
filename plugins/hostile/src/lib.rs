//! A test fixture: a policy plugin that attacks its sandbox when an event asks it to.
//!
//! An event's `attack` field picks the attack, run inside `validate` (so at ingest and before
//! every merge): `loop` spins forever, `alloc` grows memory without end, `trap` panics,
//! `file`, `env`, `clock` and `network` try to reach the outside world and report what they
//! got as a validation error on the field `attack` (the host tests read that report). An event
//! without `attack` is valid. It merges last-writer-wins on the instant of `UpdatedAt` when
//! both the event and the stored record carry one, so a stream of ordinary updates converges
//! as under the patient-profile plugin while attacks are mixed in (the fault suite); otherwise
//! it is written as it is. It validates nothing else, so it fails the patient-profile
//! self-test (a test fixture of its own).
#![deny(missing_docs)]

use ordo_plugin_sdk::{timestamp, Decision, Invalid, Plugin, Record, Value};

/// The plugin.
pub struct Hostile;

/// Runs the attack named `attack`; `Err` carries its report.
pub fn attack(name: &str) -> Result<(), Invalid> {
    let report = |message: String| Err(Invalid::field("attack", message));
    match name {
        "loop" => {
            let mut n: u64 = 0;
            loop {
                n = std::hint::black_box(n.wrapping_add(1));
            }
        }
        "alloc" => {
            let mut hoard: Vec<Vec<u8>> = Vec::new();
            loop {
                hoard.push(std::hint::black_box(vec![1u8; 1 << 20]));
            }
        }
        "trap" => panic!("hostile plugin panics on purpose"),
        "file" => match std::fs::read_to_string("/etc/hostname") {
            Ok(text) => report(format!("file read: {}", text.trim())),
            Err(e) => report(format!("file denied: {e}")),
        },
        "env" => report(format!(
            "env vars: {}, args: {}",
            std::env::vars().count(),
            std::env::args().count()
        )),
        "clock" => {
            let since = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0);
            report(format!("clock secs: {since}"))
        }
        "network" => match std::net::TcpStream::connect("127.0.0.1:9092") {
            Ok(_) => report("network connected".into()),
            Err(e) => report(format!("network denied: {e}")),
        },
        other => report(format!("unknown attack {other:?}")),
    }
}

impl Plugin for Hostile {
    const SCHEMA: &'static str =
        r#"{"type": "object", "properties": {"attack": {"type": "string"}}}"#;

    fn validate(event: &Record) -> Result<(), Invalid> {
        match event.get("attack") {
            Some(Value::String(name)) => attack(name),
            _ => Ok(()),
        }
    }

    fn merge(incoming: Record, stored: Option<Record>) -> Decision {
        let version = |r: &Record| timestamp(r, "UpdatedAt").ok();
        match (version(&incoming), stored.as_ref().and_then(version)) {
            (Some(new), Some(old)) if new <= old => {
                Decision::Skip("the stored UpdatedAt is as new or newer".into())
            }
            _ => Decision::Write(incoming),
        }
    }
}

ordo_plugin_sdk::export_plugin!(Hostile);
