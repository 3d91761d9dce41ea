//! `ordo top`: a running engine's pipelines in a terminal, read from its `/metrics` and
//! `/readyz` every interval: rates, lag by partition, dead letters, the plugin in force,
//! reloads, readiness. It changes nothing and needs only read access to those endpoints.

pub mod model;
pub mod sample;
pub mod view;

use std::sync::mpsc;
use std::time::{Duration, Instant};

use ratatui::crossterm::event::{self, Event, KeyCode, KeyEventKind, KeyModifiers};

use model::{History, Snapshot};
use view::{Readiness, Screen};

/// Where and how often to read.
#[derive(Debug, Clone)]
pub struct Options {
    /// The engine's address serving `/metrics` (its admin listener when it has one).
    pub url: String,
    /// Time between readings.
    pub interval: Duration,
    /// Sent as `Authorization: Bearer` (the admin token or a token with the admin scope).
    pub token: Option<String>,
}

/// Why `ordo top` stopped.
#[derive(Debug, thiserror::Error)]
pub enum TopError {
    /// No terminal to draw on, or drawing failed.
    #[error("ordo top needs a terminal: {0}")]
    Terminal(#[from] std::io::Error),
    /// The HTTP client could not be built.
    #[error("HTTP client: {0}")]
    Client(#[from] reqwest::Error),
}

/// One reading: the snapshot and readiness, or why there is none (shown on the screen).
async fn read(
    client: &reqwest::Client,
    options: &Options,
) -> Result<(Snapshot, Readiness), String> {
    let get = |path: &str| {
        let mut request = client.get(format!("{}{path}", options.url.trim_end_matches('/')));
        if let Some(token) = &options.token {
            request = request.bearer_auth(token);
        }
        request.send()
    };
    let unreachable = |e: reqwest::Error| format!("cannot reach {}: {e}", options.url);
    let metrics = get("/metrics").await.map_err(unreachable)?;
    if !metrics.status().is_success() {
        return Err(format!(
            "{}/metrics answered {} (an admin token may be needed: --token)",
            options.url,
            metrics.status()
        ));
    }
    let text = metrics.text().await.map_err(unreachable)?;
    let snapshot = Snapshot::from_samples(&sample::parse(&text));
    // /readyz answers 503 with the same body when not ready.
    let ready: serde_json::Value = get("/readyz")
        .await
        .map_err(unreachable)?
        .json()
        .await
        .unwrap_or_default();
    let pairs = |key: &str, skip_ok: bool| -> Vec<(String, String)> {
        ready[key]
            .as_object()
            .map(|m| {
                m.iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_string()))
                    .filter(|(_, v)| !(skip_ok && v == "ok"))
                    .collect()
            })
            .unwrap_or_default()
    };
    let readiness = Readiness {
        ready: ready["ready"].as_bool().unwrap_or(false),
        failing: pairs("checks", true),
        degraded: pairs("degraded", false),
    };
    Ok((snapshot, readiness))
}

/// Keys pressed, read on a thread of their own (reading blocks).
fn keys() -> mpsc::Receiver<Event> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        while let Ok(e) = event::read() {
            if tx.send(e).is_err() {
                break;
            }
        }
    });
    rx
}

/// Whether `e` asks to quit: q, Esc, Ctrl-C.
fn quits(e: &Event) -> bool {
    let Event::Key(k) = e else {
        return false;
    };
    k.kind == KeyEventKind::Press
        && (matches!(k.code, KeyCode::Char('q') | KeyCode::Esc)
            || (k.code == KeyCode::Char('c') && k.modifiers.contains(KeyModifiers::CONTROL)))
}

/// Runs until q, Esc or Ctrl-C; the terminal is restored however it ends.
pub async fn run(options: Options) -> Result<(), TopError> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(3))
        .build()?;
    let mut terminal = ratatui::try_init()?;
    let result = screens(&mut terminal, &client, &options).await;
    ratatui::restore();
    result
}

async fn screens(
    terminal: &mut ratatui::DefaultTerminal,
    client: &reqwest::Client,
    options: &Options,
) -> Result<(), TopError> {
    let keys = keys();
    let mut history = History::default();
    let mut last: Option<(Instant, Snapshot)> = None;
    let mut rows = Vec::new();
    loop {
        let (readiness, error) = match read(client, options).await {
            Ok((snapshot, ready)) => {
                let now = Instant::now();
                let (before, seconds) = match &last {
                    Some((at, s)) => (s.clone(), now.duration_since(*at).as_secs_f64()),
                    None => (snapshot.clone(), 0.0),
                };
                rows = model::rows(&before, &snapshot, seconds);
                if seconds > 0.0 {
                    history.push(&rows);
                }
                last = Some((now, snapshot));
                (Some(ready), None)
            }
            Err(e) => (None, Some(e)),
        };
        let reloads = last
            .as_ref()
            .map_or((0.0, 0.0), |(_, s)| (s.swapped, s.refused));
        terminal.draw(|frame| {
            view::draw(
                frame,
                &Screen {
                    url: &options.url,
                    readiness: readiness.as_ref(),
                    rows: &rows,
                    history: &history,
                    reloads,
                    error: error.as_deref(),
                    interval: options.interval.as_secs_f64(),
                },
            )
        })?;
        let until = Instant::now() + options.interval;
        while Instant::now() < until {
            while let Ok(e) = keys.try_recv() {
                if quits(&e) {
                    return Ok(());
                }
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}
