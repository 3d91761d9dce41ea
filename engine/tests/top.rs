//! `ordo top` in a real terminal: driven in tmux against a running engine, its screen read
//! back with `capture-pane`. It shows the pipeline, the events applied, the plugin in force,
//! and quits on `q`.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::engine::Engine;

/// A tmux server of the test's own (its socket named after the process), killed on drop.
struct Tmux {
    socket: String,
}

impl Tmux {
    fn new() -> Self {
        Self {
            socket: format!("ordo-top-{}", std::process::id()),
        }
    }

    fn run(&self, args: &[&str]) -> std::process::Output {
        Command::new("tmux")
            .args(["-L", &self.socket])
            .args(args)
            .output()
            .expect("tmux (apt-get install tmux)")
    }

    fn screen(&self) -> String {
        String::from_utf8_lossy(&self.run(&["capture-pane", "-p", "-t", "top"]).stdout).into_owned()
    }

    fn alive(&self) -> bool {
        self.run(&["has-session", "-t", "top"]).status.success()
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.run(&["kill-server"]);
    }
}

/// Reads the screen until `done` holds for it, for at most `within`; the last screen.
fn wait_for(tmux: &Tmux, within: Duration, done: impl Fn(&str) -> bool) -> Result<String, String> {
    let started = Instant::now();
    loop {
        let screen = tmux.screen();
        if done(&screen) {
            return Ok(screen);
        }
        if started.elapsed() > within {
            return Err(screen);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[tokio::test]
async fn top_shows_the_pipeline_its_applied_events_and_its_plugin_and_quits_on_q() {
    let engine = Engine::start("top");
    let tmux = Tmux::new();
    let command = format!(
        "{} top --url {} --interval-ms 200",
        env!("CARGO_BIN_EXE_ordo"),
        engine.url
    );
    let started = tmux.run(&[
        "new-session",
        "-d",
        "-s",
        "top",
        "-x",
        "160",
        "-y",
        "40",
        &command,
    ]);
    assert!(started.status.success(), "{started:?}");
    let first = wait_for(&tmux, Duration::from_secs(30), |s| {
        s.contains("patient-profile")
    })
    .unwrap_or_else(|s| panic!("no pipeline on the screen:\n{s}"));
    assert!(first.contains("ordo top"), "{first}");
    // The plugin in force, as /readyz names it.
    let (_, ready) = engine.get_json("/readyz").await;
    let plugin = ready["plugins"]["patient-profile"]
        .as_str()
        .expect("a plugin in force")
        .to_string();
    let shown: String = plugin.chars().take(19).collect();
    assert!(first.contains(&shown), "{shown} not shown:\n{first}");
    // Events flow: the applied total moves from 0.
    for i in 0..20 {
        let body = format!(
            r#"{{"PatientId":"top-{i}","FirstName":"John","UpdatedAt":"2006-01-02T15:00:00Z"}}"#
        );
        let (status, _) = engine.post(&body).await;
        assert_eq!(status, 202);
    }
    // The pipeline's row: "applied/s (total)" reaches 20, the engine ready.
    let moved = wait_for(&tmux, Duration::from_secs(60), |s| {
        s.contains("ready")
            && !s.contains("NOT READY")
            && s.lines()
                .any(|l| l.contains("patient-profile") && l.contains("(20)"))
    })
    .unwrap_or_else(|s| panic!("the applied events never showed:\n{s}"));
    println!("{moved}");
    tmux.run(&["send-keys", "-t", "top", "q"]);
    let started = Instant::now();
    while tmux.alive() {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "q did not quit:\n{}",
            tmux.screen()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
