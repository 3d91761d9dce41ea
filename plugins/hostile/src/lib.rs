//! A test fixture: a policy plugin that attacks its sandbox when an event asks it to.
//!
//! An event's `attack` field picks the attack. Run inside `validate` (so at ingest and before
//! every merge):
//! - holding the engine: `loop` spins forever, `sleep` sleeps an hour, `poll` waits on a clock
//!   subscription, `recurse` recurses without end;
//! - growing: `alloc` grows memory without end, `random` asks the host for a terabyte of
//!   random bytes, `stdout` writes to stdout (which would make the host create streams);
//! - reaching out: `file`, `env`, `clock` and `network` try the outside world and report what
//!   they got as a validation error on the field `attack` (the host tests read that report);
//! - flooding: `huge-field-error` fails validation with a 2 MB message;
//! - `trap` panics;
//! - `config` reports the configuration the instance holds.
//!
//! A configuration with an `attack` (`plugin_config = { attack = "loop" }`) runs that attack
//! inside `configure`, when each instance is made; any other configuration is taken and
//! ignored, so the plugin can stand in for any other in a swap.
//!
//! Run inside `merge`: `huge-record` writes a record of 500 KB (past DynamoDB's item limit),
//! `huge-reason` rejects with a 2 MB reason, `echo` rejects with a reason that quotes the
//! event's `FirstName` (as a careless plugin would: the engine must not log it). The schema's description tries to break out of
//! the script of the page that shows it.
//!
//! An event without `attack` is valid. It merges last-writer-wins on the instant of
//! `UpdatedAt` when both the event and the stored record carry one, so a stream of ordinary
//! updates converges as under the patient-profile plugin while attacks are mixed in (the fault
//! suite); otherwise it is written as it is. It validates nothing else, so it fails the
//! patient-profile self-test (a test fixture of its own).
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
        "sleep" => {
            std::thread::sleep(std::time::Duration::from_secs(3600));
            report("slept an hour".into())
        }
        "poll" => wait_on_clock(),
        "recurse" => report(format!("recursed {}", recurse(0))),
        "random" => flood_random(),
        "stdout" => {
            for _ in 0..1000 {
                println!("hostile plugin writes to stdout");
            }
            report("wrote to stdout".into())
        }
        "huge-field-error" => report("x".repeat(2 << 20)),
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

/// Recurses without end (the stack runs out): the stop condition is one
/// the optimiser cannot see through and that never holds.
#[inline(never)]
fn recurse(depth: u64) -> u64 {
    let frame = std::hint::black_box([depth; 64]);
    if std::hint::black_box(depth) == u64::MAX {
        return frame[0];
    }
    recurse(frame[depth as usize % 64] + 1) + frame[0]
}

/// Waits ten minutes on a monotonic-clock subscription.
#[cfg(all(target_arch = "wasm32", target_os = "wasi"))]
fn wait_on_clock() -> Result<(), Invalid> {
    wasi::clocks::monotonic_clock::subscribe_duration(600_000_000_000).block();
    Err(Invalid::field("attack", "waited ten minutes"))
}

/// Asks the host for a terabyte of random bytes.
#[cfg(all(target_arch = "wasm32", target_os = "wasi"))]
fn flood_random() -> Result<(), Invalid> {
    let bytes = wasi::random::random::get_random_bytes(1 << 40);
    Err(Invalid::field(
        "attack",
        format!("got {} random bytes", bytes.len()),
    ))
}

#[cfg(not(all(target_arch = "wasm32", target_os = "wasi")))]
fn wait_on_clock() -> Result<(), Invalid> {
    Err(Invalid::field("attack", "no clock to wait on natively"))
}

#[cfg(not(all(target_arch = "wasm32", target_os = "wasi")))]
fn flood_random() -> Result<(), Invalid> {
    Err(Invalid::field("attack", "no host to flood natively"))
}

/// The schema: its description tries to break out of the page that shows it.
pub const SCHEMA: &str = r#"{"type": "object", "description": "</script><script>window.ordoPwned = true</script><!--", "properties": {"attack": {"type": "string", "example": "</script><img src=x onerror=alert(1)>"}}}"#;

impl Plugin for Hostile {
    type Config = Record;

    /// Takes any configuration (so it can stand in for any plugin in a swap); one with an
    /// `attack` runs that attack while being configured, and refuses with its report.
    fn configure(config: &Record) -> Result<Record, String> {
        if let Some(Value::String(name)) = config.get("attack") {
            attack(name).map_err(|e| e.message)?;
        }
        Ok(config.clone())
    }

    fn schema(_: &Record) -> String {
        SCHEMA.into()
    }

    fn validate(config: &Record, event: &Record) -> Result<(), Invalid> {
        match event.get("attack") {
            // Reports the configuration this instance holds (the host tests check that every
            // instance, even one made after a trap, was configured).
            Some(Value::String(name)) if name == "config" => Err(Invalid::field(
                "attack",
                format!("configured with {}", Value::Object(config.clone())),
            )),
            // Attacks of `merge`: the event must get there.
            Some(Value::String(name))
                if ["huge-record", "huge-reason", "echo"].contains(&name.as_str()) =>
            {
                Ok(())
            }
            Some(Value::String(name)) => attack(name),
            _ => Ok(()),
        }
    }

    fn merge(_: &Record, incoming: Record, stored: Option<Record>) -> Decision {
        match incoming.get("attack").and_then(Value::as_str) {
            Some("huge-record") => {
                let mut record = incoming;
                record.insert("Padding".into(), Value::String("x".repeat(500 << 10)));
                return Decision::Write(record);
            }
            Some("huge-reason") => return Decision::Reject("y".repeat(2 << 20)),
            Some("echo") => {
                let name = incoming.get("FirstName").map(Value::to_string);
                return Decision::Reject(format!(
                    "`FirstName` {} is not a name we accept",
                    name.unwrap_or_default()
                ));
            }
            _ => {}
        }
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
