//! The operator page in a real browser: Debian's Chromium, headless, driven through
//! playwright-core (`engine/tests/browser/drive.mjs`) against a running engine. The page
//! renders each pipeline and the plugin in force, its charts move when events flow, its last
//! dead letters show the reason and never a value, and an engine that asks for credentials
//! gets them through the page's form. A full-page screenshot is written to
//! `$ORDO_UI_SCREENSHOT` (what `make ui-screenshot` puts in `docs/`), else to a temporary file.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

use common::engine::Engine;
use common::stack::cache_dir;
use common::{produce_raw, Names};
use serde_json::{json, Value};

/// Where `make browser-tools` installed playwright-core.
fn browser_tools() -> PathBuf {
    std::env::var("ORDO_BROWSER_TOOLS")
        .map(PathBuf::from)
        .unwrap_or_else(|_| cache_dir().join("browser-tools"))
}

/// A headless Chromium page, driven one JSON command at a time; closed on drop.
struct Browser {
    child: Child,
    commands: ChildStdin,
    answers: BufReader<ChildStdout>,
}

impl Browser {
    fn start() -> Self {
        let tools = browser_tools();
        assert!(
            tools.join("node_modules/playwright-core").is_dir(),
            "playwright-core missing from {}: run `make browser-tools`",
            tools.display()
        );
        let chromium =
            std::env::var("ORDO_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
        assert!(
            std::path::Path::new(&chromium).exists(),
            "no Chromium at {chromium}: run `make browser-tools` (apt-get install chromium)"
        );
        let driver = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/browser/drive.mjs");
        let mut child = Command::new("node")
            .arg(driver)
            .arg(&tools)
            .arg(&chromium)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("node (Node.js 20+) runs the browser driver");
        let commands = child.stdin.take().expect("stdin piped");
        let answers = BufReader::new(child.stdout.take().expect("stdout piped"));
        Self {
            child,
            commands,
            answers,
        }
    }

    /// Sends `command` and returns its value; panics with the page's console on an error.
    fn run(&mut self, command: Value) -> Value {
        writeln!(self.commands, "{command}").expect("driver takes commands");
        let mut line = String::new();
        self.answers.read_line(&mut line).expect("driver answers");
        let answer: Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("driver answered {line:?} ({e}) to {command}"));
        assert_eq!(answer["ok"], true, "{command} failed: {answer:#}");
        answer["value"].clone()
    }

    fn open(&mut self, url: &str) {
        self.run(json!({"cmd": "open", "url": url}));
    }

    /// Waits until `js` (an expression) is truthy in the page; returns its value.
    fn wait(&mut self, js: &str) -> Value {
        self.run(json!({"cmd": "wait", "js": js, "timeout": 60_000}))
    }

    fn eval(&mut self, js: &str) -> Value {
        self.run(json!({"cmd": "eval", "js": js}))
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = writeln!(self.commands, r#"{{"cmd":"close"}}"#);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The element of field `field` in the pipeline's section.
fn node(field: &str) -> String {
    format!(
        r#"document.querySelector('section[data-pipeline="patient-profile"] [data-field="{field}"]')"#
    )
}

/// The text of field `field` in the pipeline's section.
fn field(field: &str) -> String {
    format!("{}.textContent", node(field))
}

/// The recorded maximum of chart `chart` (what its lines reached over the readings shown).
fn chart_max(chart: &str) -> String {
    format!(
        r#"Number(document.querySelector('section[data-pipeline="patient-profile"] canvas[data-chart="{chart}"]').dataset.max || 0)"#
    )
}

#[tokio::test]
async fn the_page_renders_moves_with_the_events_and_shows_dead_letters_without_values() {
    // The entity id from the message key, so that a body keyed apart is a dead letter.
    let engine = Engine::builder(Names::unique("ui"))
        .extra("key_source = \"message\"")
        .start();
    let mut browser = Browser::start();
    browser.open(&format!("{}/ui?interval=250", engine.url));
    browser.wait(r#"document.querySelector('section[data-pipeline="patient-profile"]') && document.getElementById("status").dataset.state === "live""#);
    // The plugin in force, as /readyz names it.
    let (_, ready) = engine.get_json("/readyz").await;
    let plugin = ready["plugins"]["patient-profile"]
        .as_str()
        .expect("a plugin in force");
    let shown = browser.eval(&format!("{}.title", node("plugin-id")));
    assert_eq!(shown, plugin);
    assert_eq!(browser.eval(&chart_max("rates")), 0.0, "nothing flowed yet");
    // Readiness, as the engine's own checks found it.
    browser.wait(r#"document.getElementById("ready").textContent === "ready""#);

    // Events flow in bursts, each awaited on the page, so the charts have a shape; every
    // second key also gets an older update, skipped as stale. The picture for the docs gets
    // more of them, to fill the charts.
    let screenshot = std::env::var("ORDO_UI_SCREENSHOT").ok().map(PathBuf::from);
    let bursts = if screenshot.is_some() { 40 } else { 6 };
    let mut applied = 0;
    for burst in 0..bursts {
        for i in 0..(10 + 5 * (burst % 5)) {
            let key = format!("ui-{burst}-{i}");
            let body = format!(
                r#"{{"PatientId":"{key}","FirstName":"John","IsPregnant":"True","UpdatedAt":"2006-01-02T15:00:05Z"}}"#
            );
            assert_eq!(engine.post(&body).await.0, 202);
            applied += 1;
            if i % 2 == 0 {
                let older = body.replace(":05Z", ":01Z");
                assert_eq!(engine.post(&older).await.0, 202);
            }
        }
        browser.wait(&format!(
            "Number({}.replace(/[^0-9]/g, '')) >= {applied}",
            field("applied-total")
        ));
    }
    let rates = browser.wait(&format!(
        "{} > 0 && {}",
        chart_max("rates"),
        chart_max("rates")
    ));
    assert!(rates.as_f64().is_some_and(|r| r > 0.0), "{rates}");
    browser.wait(&format!(
        "Number({}.replace(/[^0-9]/g, '')) > 0",
        field("skipped-total")
    ));

    // Two dead letters: a value the plugin refuses, and a key that is not the record's.
    let marker = format!("Zebulon{}", std::process::id());
    let topic = engine.names.topic.clone();
    produce_raw(
        &topic,
        &format!("{marker}-key"),
        &format!(
            r#"{{"PatientId":"{marker}-key","FirstName":"{marker}","UpdatedAt":"{marker}-not-a-time"}}"#
        ),
    )
    .await;
    produce_raw(
        &topic,
        &format!("{marker}-other"),
        r#"{"PatientId":"someone-else","UpdatedAt":"2006-01-02T15:00:00Z"}"#,
    )
    .await;
    browser.wait(&format!("{}.children.length >= 2", node("letters")));
    browser.wait(&format!("{} > 0", chart_max("trouble")));
    let letters = browser.eval(&format!("{}.innerText", node("letters")));
    let letters = letters.as_str().unwrap_or_default().to_string();
    assert!(
        letters.contains("UpdatedAt"),
        "the reason names the field:\n{letters}"
    );
    assert!(letters.contains("k:"), "keys as keyed hashes:\n{letters}");
    let page = browser.eval("document.body.innerText");
    let page = page.as_str().unwrap_or_default();
    assert!(
        !page.contains(&marker),
        "a value or key on the page:\n{page}"
    );
    assert!(
        !page.contains("someone-else"),
        "a value on the page:\n{page}"
    );
    assert!(!page.contains("John"), "a value on the page:\n{page}");

    let screenshot = screenshot.unwrap_or_else(|| {
        std::env::temp_dir().join(format!("ordo-ui-{}.png", std::process::id()))
    });
    browser.run(json!({"cmd": "screenshot", "path": screenshot}));
    // Nothing the page does is refused by its own policy, and nothing is missing.
    let console = browser.run(json!({"cmd": "console"}));
    assert_eq!(console, json!([]), "the page logged");
    let png = std::fs::read(&screenshot).expect("the screenshot was written");
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 20_000,
        "{} bytes",
        png.len()
    );
    println!("screenshot: {}", screenshot.display());
}

#[tokio::test]
async fn an_engine_that_asks_for_credentials_gets_them_through_the_page() {
    let engine = Engine::builder(Names::unique("ui-auth"))
        .env("ORDO_ADMIN_TOKEN", "page-s3cret")
        .start();
    let mut browser = Browser::start();
    browser.open(&format!("{}/ui", engine.url));
    browser.wait(r#"!document.getElementById("token-form").hidden"#);
    assert_eq!(
        browser.eval(r#"document.getElementById("status").dataset.state"#),
        "denied"
    );
    assert_eq!(
        browser.eval("document.querySelectorAll('section[data-pipeline]').length"),
        0,
        "nothing shown before credentials"
    );
    browser.run(json!({"cmd": "fill", "selector": "#token", "text": "wrong"}));
    browser.run(json!({"cmd": "click", "selector": "#token-form button"}));
    browser.wait(r#"document.getElementById("status").dataset.state === "denied" && !document.getElementById("token-form").hidden"#);
    browser.run(json!({"cmd": "fill", "selector": "#token", "text": "page-s3cret"}));
    browser.run(json!({"cmd": "click", "selector": "#token-form button"}));
    browser.wait(r#"document.querySelector('section[data-pipeline="patient-profile"]') && document.getElementById("status").dataset.state === "live""#);
    // The token stays in the tab's session storage, never in the address.
    assert_eq!(
        browser.eval("sessionStorage.getItem('ordo-admin-token')"),
        "page-s3cret"
    );
    let address = browser.eval("location.href");
    assert!(!address.to_string().contains("s3cret"), "{address}");
}
