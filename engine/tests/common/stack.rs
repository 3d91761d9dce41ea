//! The local stack as the tests find it: its cache folder, the plugins `make plugins` built,
//! the environment the engine gets, and process helpers.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::kafka::brokers;

/// Environment for the engine and the test's own AWS client, defaulting to the local stack.
pub fn aws_env() -> [(&'static str, String); 5] {
    let var = |k: &str, d: &str| std::env::var(k).unwrap_or_else(|_| d.to_string());
    [
        ("AWS_ACCESS_KEY_ID", var("AWS_ACCESS_KEY_ID", "test")),
        (
            "AWS_SECRET_ACCESS_KEY",
            var("AWS_SECRET_ACCESS_KEY", "test"),
        ),
        ("AWS_REGION", var("AWS_REGION", "us-east-1")),
        (
            "AWS_ENDPOINT_URL",
            var("AWS_ENDPOINT_URL", "http://127.0.0.1:4566"),
        ),
        ("KAFKA_BROKERS", brokers()),
    ]
}

/// The patient profile's `plugin_config`, `plugins/samples/patient-profile.config.json` (what
/// `pipelines.toml` writes out), as a file `ordo plugin test --config-file` reads.
pub fn patient_config_file() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugins/samples/patient-profile.config.json")
}

/// [`patient_config_file`]'s JSON text: what the generic plugins are configured with to serve
/// the patient profile.
pub fn patient_config() -> String {
    std::fs::read_to_string(patient_config_file()).expect("the patient profile's configuration")
}

/// The patient profile's `plugin_config` ([`patient_config`]) as one line of a pipelines file,
/// without its `description`: `/docs` then shows the plugin's own, which tells the plugin in
/// force (a swap test reads it).
pub fn patient_plugin_config() -> String {
    let mut config: serde_json::Value =
        serde_json::from_str(&patient_config()).expect("the configuration is JSON");
    if let Some(config) = config.as_object_mut() {
        config.remove("description");
    }
    format!("plugin_config = {}", inline_toml(&config))
}

/// `value` as a TOML inline value: JSON's strings, numbers, booleans and arrays are TOML's,
/// and an object is an inline table of quoted keys.
fn inline_toml(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::Array(items) => {
            format!(
                "[{}]",
                items.iter().map(inline_toml).collect::<Vec<_>>().join(", ")
            )
        }
        serde_json::Value::Object(map) => format!(
            "{{ {} }}",
            map.iter()
                .map(|(k, v)| format!(
                    "{} = {}",
                    serde_json::Value::from(k.as_str()),
                    inline_toml(v)
                ))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        other => other.to_string(),
    }
}

/// The built patient-profile plugin; `make plugins` builds it.
pub fn lww_plugin() -> PathBuf {
    built_plugin("patient_profile_lww")
}

/// The built per-field merge plugin.
pub fn field_merge_plugin() -> PathBuf {
    built_plugin("patient_profile_field_merge")
}

/// The built hostile test fixture.
pub fn hostile_plugin() -> PathBuf {
    built_plugin("hostile")
}

/// `plugins/build/<name>.wasm`, which `make plugins` builds.
pub fn built_plugin(name: &str) -> PathBuf {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../plugins/build")
        .join(format!("{name}.wasm"));
    assert!(
        path.exists(),
        "{} is missing: run `make plugins` (or `make test`)",
        path.display()
    );
    path.canonicalize().expect("plugin path canonicalizes")
}

/// The stack's cache folder (`ORDO_CACHE`, else `~/.cache/ordo`).
pub fn cache_dir() -> PathBuf {
    std::env::var("ORDO_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cache/ordo")
        })
}

/// A free TCP port on loopback.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// Sends `signal` (e.g. `HUP`, `STOP`) to process `pid`.
pub fn send_signal(pid: u32, signal: &str) {
    let status = Command::new("kill")
        .args([&format!("-{signal}"), &pid.to_string()])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -{signal} {pid} failed");
}

/// The `ordo` binary as a command, with the local stack's AWS settings unless the environment
/// has its own.
pub fn ordo_command() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_ordo"));
    command.envs(aws_env()).env("NO_COLOR", "1");
    command
}

/// A pipelines file in `dir` with one pipeline running `plugin` (topic and table `unused`),
/// plus `extra` lines.
pub fn pipelines_file(dir: &Path, plugin: &Path, extra: &str) -> PathBuf {
    pipelines_file_of(dir, "unused", "unused", plugin, extra)
}

/// A pipelines file in `dir` with one pipeline on `topic` and `table` running `plugin`, plus
/// `extra` lines.
pub fn pipelines_file_of(
    dir: &Path,
    topic: &str,
    table: &str,
    plugin: &Path,
    extra: &str,
) -> PathBuf {
    let config = dir.join("pipelines.toml");
    let text = format!(
        r#"[pipelines.patient-profile]
route = "/patientprofile"
topic = "{topic}"
key_field = "PatientId"
version_field = "UpdatedAt"
table = "{table}"
plugin = "{}"
{}
{extra}
"#,
        plugin.display(),
        patient_plugin_config(),
    );
    std::fs::write(&config, text).expect("write config");
    config
}
