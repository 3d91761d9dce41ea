//! How `ordo top` draws a reading: one row per pipeline, a sparkline of each one's settled
//! events, lag by partition, readiness and reloads. Field values never appear: only names,
//! counts and the plugin's hash.

use ratatui::layout::{Constraint, Layout};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Cell, Paragraph, Row as TableRow, Sparkline, Table};
use ratatui::Frame;

use super::model::{History, Row};

/// What `/readyz` said.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Readiness {
    /// Every check passed.
    pub ready: bool,
    /// Checks not `ok`, with their outcome.
    pub failing: Vec<(String, String)>,
    /// Pipelines degraded, with why.
    pub degraded: Vec<(String, String)>,
}

/// Everything one screen shows.
pub struct Screen<'a> {
    /// The engine's address.
    pub url: &'a str,
    /// Its readiness, when it answered.
    pub readiness: Option<&'a Readiness>,
    /// One row per pipeline.
    pub rows: &'a [Row],
    /// Settled events per second, per pipeline.
    pub history: &'a History,
    /// Plugin reloads since start: swapped, refused.
    pub reloads: (f64, f64),
    /// Why the last reading failed, if it did.
    pub error: Option<&'a str>,
    /// Seconds between readings.
    pub interval: f64,
}

/// The plugin's id cut to what a person compares: `sha256:` and 12 hex digits.
fn short(plugin: &str) -> String {
    plugin.chars().take(19).collect()
}

/// Draws `screen` on the whole frame.
pub fn draw(frame: &mut Frame, screen: &Screen) {
    let rows = screen.rows.len().max(1);
    let areas = Layout::vertical([
        Constraint::Length(2),
        Constraint::Length(rows as u16 + 3),
        Constraint::Min(4),
        Constraint::Length(2),
    ])
    .split(frame.area());
    frame.render_widget(header(screen), areas[0]);
    frame.render_widget(table(screen.rows), areas[1]);
    let sparks = Layout::vertical(vec![Constraint::Ratio(1, rows as u32); rows]).split(areas[2]);
    for (row, area) in screen.rows.iter().zip(sparks.iter()) {
        let lag: Vec<String> = row.lag.1.iter().map(|(p, n)| format!("{p}:{n}")).collect();
        let title = format!(
            " {}: events settled/s, last {} readings · lag by partition {} ",
            row.name,
            screen.history.of(&row.name).len(),
            if lag.is_empty() {
                "—".into()
            } else {
                lag.join(" ")
            }
        );
        let data = screen.history.of(&row.name);
        let spark = Sparkline::default()
            .block(Block::default().borders(Borders::ALL).title(title))
            .data(&data)
            .style(Style::default().fg(Color::Green));
        frame.render_widget(spark, *area);
    }
    frame.render_widget(footer(screen), areas[3]);
}

fn header(screen: &Screen) -> Paragraph<'static> {
    let state = match screen.readiness {
        Some(r) if r.ready => Span::styled("ready", Style::default().fg(Color::Green)),
        Some(r) => {
            let failing: Vec<String> = r.failing.iter().map(|(c, o)| format!("{c} {o}")).collect();
            Span::styled(
                format!("NOT READY: {}", failing.join(", ")),
                Style::default().fg(Color::Red).add_modifier(Modifier::BOLD),
            )
        }
        None => Span::styled("no answer", Style::default().fg(Color::Red)),
    };
    let mut first = vec![
        Span::styled("ordo top ", Style::default().add_modifier(Modifier::BOLD)),
        Span::raw(format!("{}  ", screen.url)),
        state,
    ];
    if let Some(r) = screen.readiness {
        for (pipeline, why) in &r.degraded {
            first.push(Span::styled(
                format!("  degraded: {pipeline} ({why})"),
                Style::default().fg(Color::Yellow),
            ));
        }
    }
    let second = Line::from(format!(
        "plugin reloads: {} swapped, {} refused · every {:.1} s · q quits",
        screen.reloads.0, screen.reloads.1, screen.interval
    ));
    Paragraph::new(vec![Line::from(first), second])
}

fn table(rows: &[Row]) -> Table<'static> {
    let head = [
        "pipeline",
        "ingest/s",
        "refused/s",
        "applied/s (total)",
        "stale/s",
        "dead letters",
        "lag",
        "waiting",
        "retries/s",
        "merge µs",
        "plugin",
    ];
    let body: Vec<TableRow> = rows
        .iter()
        .map(|r| {
            let dead = if r.dead_letters.1 > 0.0 {
                Cell::from(format!("{} (+{})", r.dead_letters.0, r.dead_letters.1))
                    .style(Style::default().fg(Color::Red))
            } else {
                Cell::from(format!("{}", r.dead_letters.0))
            };
            TableRow::new(vec![
                Cell::from(r.name.clone()),
                Cell::from(format!("{:.1}", r.ingest)),
                Cell::from(format!("{:.1}", r.refused)),
                Cell::from(format!("{:.1} ({})", r.applied, r.applied_total)),
                Cell::from(format!("{:.1}", r.skipped)),
                dead,
                Cell::from(format!("{}", r.lag.0)),
                Cell::from(format!("{}", r.waiting)),
                Cell::from(format!("{:.1}", r.retries)),
                Cell::from(r.merge_micros.map_or("—".into(), |m| format!("{m:.0}"))),
                Cell::from(short(&r.plugin)),
            ])
        })
        .collect();
    let widths = [
        Constraint::Min(16),
        Constraint::Length(9),
        Constraint::Length(9),
        Constraint::Length(17),
        Constraint::Length(8),
        Constraint::Length(13),
        Constraint::Length(7),
        Constraint::Length(7),
        Constraint::Length(9),
        Constraint::Length(8),
        Constraint::Length(19),
    ];
    Table::new(body, widths)
        .header(TableRow::new(head).style(Style::default().add_modifier(Modifier::BOLD)))
        .block(Block::default().borders(Borders::ALL).title(" pipelines "))
}

fn footer(screen: &Screen) -> Paragraph<'static> {
    match screen.error {
        Some(e) => Paragraph::new(Line::from(Span::styled(
            e.to_string(),
            Style::default().fg(Color::Red),
        ))),
        None if screen.rows.is_empty() => {
            Paragraph::new("no pipeline in /metrics yet (is this an Ordo engine's admin address?)")
        }
        None => Paragraph::new(""),
    }
}

#[cfg(test)]
mod tests {
    use ratatui::backend::TestBackend;
    use ratatui::Terminal;

    use super::*;

    #[test]
    fn a_screen_shows_each_pipeline_its_rates_and_its_plugin() {
        let rows = vec![Row {
            name: "patient-profile".into(),
            applied: 12.0,
            applied_total: 340.0,
            dead_letters: (3.0, 1.0),
            lag: (2.0, [(0, 2.0)].into()),
            plugin: "sha256:0123456789abcdef0123".into(),
            ..Row::default()
        }];
        let mut history = History::default();
        history.push(&rows);
        let readiness = Readiness {
            ready: false,
            failing: vec![("kafka".into(), "failing".into())],
            degraded: vec![],
        };
        let mut terminal = Terminal::new(TestBackend::new(140, 20)).expect("terminal");
        terminal
            .draw(|f| {
                draw(
                    f,
                    &Screen {
                        url: "http://127.0.0.1:3000",
                        readiness: Some(&readiness),
                        rows: &rows,
                        history: &history,
                        reloads: (1.0, 0.0),
                        error: None,
                        interval: 1.0,
                    },
                )
            })
            .expect("draw");
        let text: String = terminal
            .backend()
            .buffer()
            .content()
            .iter()
            .map(|c| c.symbol())
            .collect();
        for needle in [
            "patient-profile",
            "12.0 (340)",
            "3 (+1)",
            "sha256:0123456789ab",
            "NOT READY: kafka failing",
            "1 swapped, 0 refused",
            "0:2",
        ] {
            assert!(text.contains(needle), "{needle} not on screen:\n{text}");
        }
    }
}
