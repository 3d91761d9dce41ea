//! Each run's raw figures as CSV, beside the report: `make bench` sets `ORDO_BENCH_RESULTS` to
//! a folder under `bench/results/` named for the commit and time, and every benchmark program
//! appends its measurements there, one file per table (`<program>-<table>.csv`). Without the
//! setting nothing is written (a smoke run, a run by hand).

use std::fs::OpenOptions;
use std::io::Write as _;
use std::path::PathBuf;

use anyhow::Context as _;

/// Where the raw figures go, when `make bench` asked for them.
pub fn folder() -> Option<PathBuf> {
    std::env::var_os("ORDO_BENCH_RESULTS").map(PathBuf::from)
}

/// Quotes a CSV field when it needs it (RFC 4180).
fn field(value: &str) -> String {
    if value.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", value.replace('"', "\"\""))
    } else {
        value.to_string()
    }
}

/// One line of fields, quoted as CSV needs.
fn line(fields: &[String]) -> String {
    let mut text = fields
        .iter()
        .map(|f| field(f))
        .collect::<Vec<_>>()
        .join(",");
    text.push('\n');
    text
}

/// A table of raw figures: `header` once, then a row per measurement.
pub struct Table {
    path: Option<PathBuf>,
    header: Vec<String>,
}

impl Table {
    /// The table `name` (file `name.csv`) with these columns; nothing is written until a row.
    pub fn new(name: &str, header: &[&str]) -> Self {
        Self {
            path: folder().map(|d| d.join(format!("{name}.csv"))),
            header: header.iter().map(|h| h.to_string()).collect(),
        }
    }

    /// Appends one measurement (as many fields as the header), writing the header first
    /// when the file is new.
    pub fn row(&self, fields: &[String]) -> anyhow::Result<()> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        anyhow::ensure!(
            fields.len() == self.header.len(),
            "{}: {} fields for {} columns",
            path.display(),
            fields.len(),
            self.header.len()
        );
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
        }
        let new = !path.exists();
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .with_context(|| format!("open {}", path.display()))?;
        let mut text = String::new();
        if new {
            text.push_str(&line(&self.header));
        }
        text.push_str(&line(fields));
        file.write_all(text.as_bytes())
            .with_context(|| format!("write {}", path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_with_commas_or_quotes_are_quoted() {
        assert_eq!(field("plain"), "plain");
        assert_eq!(field("a,b"), "\"a,b\"");
        assert_eq!(field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(line(&["1".into(), "x,y".into()]), "1,\"x,y\"\n");
    }
}
