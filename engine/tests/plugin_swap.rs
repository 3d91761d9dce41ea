//! Hot swap under a running engine: replacing the plugin file changes behaviour without a
//! restart; a broken file is refused and the old plugin keeps serving; SIGHUP and the admin
//! endpoint trigger the same reload.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{Engine, Names};
use serde_json::Value;

/// The issue's bound on how long a swap may take to be in force.
const SWAP_WITHIN: Duration = Duration::from_secs(2);

const FULL: &str = r#"{"PatientId":"KEY","FirstName":"John","LastName":"Doe","IsPregnant":"False","Sex":"Female","UpdatedAt":"2006-01-02T15:00:00+10:00"}"#;
const PARTIAL: &str =
    r#"{"PatientId":"KEY","IsPregnant":"True","UpdatedAt":"2006-01-02T15:00:00.5+10:00"}"#;

/// Replaces `target` with a copy of `source` by an atomic rename, as a deploy would.
fn install(source: &Path, target: &Path) {
    let staging = target.with_extension("staging");
    std::fs::copy(source, &staging).expect("copy plugin");
    std::fs::rename(&staging, target).expect("rename into place");
}

fn id_of(path: &Path) -> String {
    ordo::plugin::wasm::content_id(&std::fs::read(path).expect("read plugin"))
}

/// Waits until the engine reports `id` in force, and returns how long that took.
async fn wait_in_force(engine: &Engine, id: &str) -> Duration {
    let started = Instant::now();
    loop {
        let (_, plugins) = engine.get_json("/admin/pipelines").await;
        if plugins[0]["plugin"] == id {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "{id} never came into force: {plugins}; log:\n{}",
            engine.log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Posts the full record then the partial update for `key`, waits until both are applied,
/// and returns the record read back.
async fn full_then_partial(engine: &Engine, key: &str) -> Value {
    let mut produced = Vec::new();
    for body in [FULL, PARTIAL] {
        produced.push(engine.post_accepted(&body.replace("KEY", key)).await);
    }
    engine.wait_all_committed(&produced).await;
    let (status, record) = engine.get_json(&format!("/patientprofile/{key}")).await;
    assert_eq!(status, 200, "{record}");
    record
}

/// Waits until `/metrics` counts `n` refused reloads.
async fn wait_refusals(engine: &Engine, n: u32) {
    let expected = format!("ordo_plugin_reloads_total{{outcome=\"refused\"}} {n}");
    let started = Instant::now();
    while !engine.get_text("/metrics").await.contains(&expected) {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "never saw {expected}; log:\n{}",
            engine.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A plugin file of the test's own, starting as the whole-record LWW plugin.
fn own_plugin(dir: &tempfile::TempDir) -> PathBuf {
    let path = dir.path().join("policy.wasm");
    install(&common::lww_plugin(), &path);
    path
}

#[tokio::test]
async fn swapping_lww_for_field_merge_changes_a_partial_update_without_restart() {
    let dir = tempfile::tempdir().expect("temp dir");
    let plugin = own_plugin(&dir);
    let names = Names::unique("swap");
    let engine = Engine::builder(names).plugin(&plugin).start();
    let lww = id_of(&common::lww_plugin());
    let field_merge = id_of(&common::field_merge_plugin());

    let before = full_then_partial(&engine, "swap-1").await;
    assert_eq!(before["IsPregnant"], "True");
    assert!(
        before.get("FirstName").is_none(),
        "whole-record LWW replaces the record: {before}"
    );
    assert_eq!(before["Ordo"]["plugin"], lww.as_str());
    assert_eq!(before["Ordo"]["revision"], 2);

    install(&common::field_merge_plugin(), &plugin);
    let took = wait_in_force(&engine, &field_merge).await;
    assert!(took < SWAP_WITHIN, "the swap took {took:?}");

    let after = full_then_partial(&engine, "swap-2").await;
    assert_eq!(after["IsPregnant"], "True");
    assert_eq!(
        after["FirstName"], "John",
        "per-field merge keeps what the partial update did not touch: {after}"
    );
    assert_eq!(after["Ordo"]["plugin"], field_merge.as_str());
    assert!(after["FieldUpdatedAt"].is_object(), "{after}");

    // The OpenAPI document follows the plugin in force.
    let (_, spec) = engine.get_json("/docs/openapi.json").await;
    let description = spec["paths"]["/patientprofile"]["post"]["requestBody"]["content"]
        ["application/json"]["schema"]["description"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(description.contains("partial"), "{description}");
}

#[tokio::test]
async fn a_broken_file_is_refused_and_the_old_plugin_keeps_serving() {
    let dir = tempfile::tempdir().expect("temp dir");
    let plugin = own_plugin(&dir);
    let token = "s3cret-admin-token";
    let names = Names::unique("refuse");
    let engine = Engine::builder(names)
        .args(&["--admin-token", token])
        .plugin(&plugin)
        .start();
    let lww = id_of(&common::lww_plugin());
    let client = reqwest::Client::new();
    let reload = |auth: Option<&str>, pipeline: &str| {
        let mut request = client.post(format!("{}/admin/pipelines/{pipeline}/reload", engine.url));
        if let Some(token) = auth {
            request = request.bearer_auth(token);
        }
        request.send()
    };

    // The admin endpoints want the token.
    let denied = reload(None, "patient-profile").await.expect("reachable");
    assert_eq!(denied.status().as_u16(), 401);
    let wrong = reload(Some("guess"), "patient-profile")
        .await
        .expect("reachable");
    assert_eq!(wrong.status().as_u16(), 401);
    let (_, listed) = engine.get_json("/admin/pipelines").await;
    assert_eq!(listed["status"], 401, "{listed}");
    let unknown = reload(Some(token), "nope").await.expect("reachable");
    assert_eq!(unknown.status().as_u16(), 404);
    let same: Value = reload(Some(token), "patient-profile")
        .await
        .expect("reachable")
        .json()
        .await
        .expect("JSON");
    assert_eq!(same["changed"], false, "{same}");
    assert_eq!(same["plugin"], lww.as_str());

    // Garbage in place of the plugin: the watcher refuses it, and so does an explicit reload.
    let garbage = dir.path().join("garbage.wasm");
    std::fs::write(&garbage, b"\0asm but not really").expect("write");
    install(&garbage, &plugin);
    wait_refusals(&engine, 1).await;
    let refused = reload(Some(token), "patient-profile")
        .await
        .expect("reachable");
    assert_eq!(refused.status().as_u16(), 422);
    let problem: Value = refused.json().await.expect("problem JSON");
    assert!(
        problem["detail"]
            .as_str()
            .is_some_and(|d| d.contains("old one keeps serving")),
        "{problem}"
    );
    wait_refusals(&engine, 2).await;
    let listed: Value = client
        .get(format!("{}/admin/pipelines", engine.url))
        .bearer_auth(token)
        .send()
        .await
        .expect("reachable")
        .json()
        .await
        .expect("JSON");
    assert_eq!(listed[0]["plugin"], lww.as_str(), "{listed}");
    // The list says the last reload was refused, and why; the plugin in force is the one
    // loaded at start-up.
    let last = &listed[0]["last_reload"];
    assert_eq!(last["outcome"], "refused", "{listed}");
    assert!(
        last["detail"]
            .as_str()
            .is_some_and(|d| d.contains("WebAssembly") || d.contains("wasm")),
        "{listed}"
    );
    assert!(
        listed[0]["loaded_at"].is_string() && listed[0]["loaded_at"] != last["at"],
        "{listed}"
    );

    // Events are still applied by the old plugin.
    let record = full_then_partial(&engine, "refuse-1").await;
    assert_eq!(record["Ordo"]["plugin"], lww.as_str());

    // SIGHUP reloads too (the file is still garbage: refused again, engine still up).
    engine.signal("HUP");
    wait_refusals(&engine, 3).await;
    assert!(
        !engine.log().contains(token),
        "the admin token must not be logged"
    );
    let (status, _) = engine.get_json("/healthz").await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn the_admin_token_from_the_environment_guards_the_admin_endpoints_and_stays_out_of_the_log()
{
    let token = "env-admin-t0ken-7f3a";
    let engine = Engine::builder(Names::unique("admin-env"))
        .env("ORDO_ADMIN_TOKEN", token)
        .start();
    let client = reqwest::Client::new();
    let reload = |auth: Option<&str>| {
        let mut request = client.post(format!(
            "{}/admin/pipelines/patient-profile/reload",
            engine.url
        ));
        if let Some(token) = auth {
            request = request.bearer_auth(token);
        }
        request.send()
    };
    for (auth, status) in [(None, 401), (Some("guess"), 401), (Some(token), 200)] {
        let answer = reload(auth).await.expect("reachable");
        assert_eq!(answer.status().as_u16(), status, "with {auth:?}");
    }
    let (status, listed) = engine.get_json("/admin/pipelines").await;
    assert_eq!(status, 401, "{listed}");
    let listed = client
        .get(format!("{}/admin/pipelines", engine.url))
        .bearer_auth(token)
        .send()
        .await
        .expect("reachable");
    assert_eq!(listed.status().as_u16(), 200);
    assert!(
        !engine.log().contains(token),
        "the admin token must not be logged:\n{}",
        engine.log()
    );
}

#[tokio::test]
async fn a_swap_to_a_plugin_refusing_the_pipelines_configuration_is_refused_with_its_reason() {
    let dir = tempfile::tempdir().expect("temp dir");
    let plugin = own_plugin(&dir);
    let engine = Engine::builder(Names::unique("refuse-config"))
        .plugin(&plugin)
        .start();
    let lww = id_of(&common::lww_plugin());
    // A plugin built against ordo:plugin@0.1.0 takes no configuration, and this pipeline has
    // one: the swap is refused, with the reason in the pipeline's status, not in the log.
    install(&common::built_plugin("legacy_lww"), &plugin);
    wait_refusals(&engine, 1).await;
    let (_, listed) = engine.get_json("/admin/pipelines").await;
    assert_eq!(listed[0]["plugin"], lww.as_str(), "{listed}");
    let detail = listed[0]["last_reload"]["detail"]
        .as_str()
        .unwrap_or_default();
    assert!(
        detail.contains("refuses its plugin_config")
            && detail.contains("implements ordo:plugin@0.1.0, which takes no configuration"),
        "{listed}"
    );
    let log = engine.log();
    assert!(log.contains("config-refused"), "{log}");
    assert!(!log.contains("which takes no configuration"), "{log}");
    // The plugin in force still serves, configured.
    let record = full_then_partial(&engine, "refuse-config-1").await;
    assert_eq!(record["Ordo"]["plugin"], lww.as_str());
}
