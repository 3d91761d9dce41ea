//! Every speed figure the docs quote comes from BENCHMARKS.md, which `make bench` writes: a
//! figure typed by hand, or left over from an older run, fails here.
//!
//! What counts as a figure: every number in `docs/speed.md` (the page about speed), and in
//! README.md and the other docs, every number on a line that quotes BENCHMARKS.md and every
//! measured ratio (a decimal followed by `×`, as in `0.46×`; a setting such as "20× this" is
//! not one). Numbers are compared as numbers (`10,739` is `10739`), so a figure that appears
//! anywhere in BENCHMARKS.md passes: the check catches figures that no run produced, not a
//! figure quoted under the wrong heading.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// The numbers in `text`: digits with thousands commas and a decimal part, commas dropped.
fn numbers(text: &str) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        if !chars[i].is_ascii_digit() {
            i += 1;
            continue;
        }
        let mut n = String::new();
        while i < chars.len() {
            let c = chars[i];
            let next_digit = chars.get(i + 1).is_some_and(|d| d.is_ascii_digit());
            if c.is_ascii_digit() {
                n.push(c);
            } else if c == ',' && next_digit && chars.get(i + 4).is_none_or(|d| !d.is_ascii_digit())
            {
                // A thousands separator: exactly three digits follow.
            } else if c == '.' && next_digit {
                n.push(c);
            } else {
                break;
            }
            i += 1;
        }
        out.push(n);
    }
    out
}

/// The figures `text` quotes: all its numbers for the speed page, else those on lines that
/// quote BENCHMARKS.md and the measured ratios.
fn quoted(text: &str, whole: bool) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if whole || line.contains("BENCHMARKS.md") {
            out.extend(numbers(line).into_iter().map(|n| (i + 1, n)));
            continue;
        }
        for (at, _) in line.match_indices('×') {
            let before = &line[..at];
            let start = before
                .rfind(|c: char| !(c.is_ascii_digit() || c == '.' || c == ','))
                .map_or(0, |j| {
                    j + before[j..].chars().next().map_or(1, char::len_utf8)
                });
            let ratio = &before[start..];
            if ratio.contains('.') {
                out.extend(numbers(ratio).into_iter().map(|n| (i + 1, n)));
            }
        }
    }
    out
}

#[test]
fn ratios_count_and_settings_do_not() {
    let found: Vec<String> = quoted("costs 3.5× native; stops after 20× this; 0.46× (x)", false)
        .into_iter()
        .map(|(_, n)| n)
        .collect();
    assert_eq!(found, ["3.5", "0.46"]);
}

#[test]
fn numbers_are_read_as_numbers() {
    assert_eq!(
        numbers("10,739 vs 0.46× (19,837–31,911), p99 1, 2 and 3"),
        ["10739", "0.46", "19837", "31911", "99", "1", "2", "3"]
    );
}

#[test]
fn every_speed_figure_in_the_docs_is_in_benchmarks_md() {
    let root = root();
    let measured: HashSet<String> = numbers(&read(&root.join("BENCHMARKS.md")))
        .into_iter()
        .collect();
    let mut pages = vec![
        (root.join("README.md"), false),
        (root.join("docs/speed.md"), true),
    ];
    for entry in std::fs::read_dir(root.join("docs")).expect("docs/") {
        let path = entry.expect("docs entry").path();
        if path.extension().is_some_and(|e| e == "md") && !path.ends_with("speed.md") {
            pages.push((path, false));
        }
    }
    let mut missing = Vec::new();
    for (page, whole) in pages {
        for (line, n) in quoted(&read(&page), whole) {
            if !measured.contains(&n) {
                missing.push(format!(
                    "{}:{line}: {n}",
                    page.strip_prefix(&root).unwrap_or(&page).display()
                ));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "figures the docs quote that BENCHMARKS.md does not have (quote the figure make bench wrote, or drop it):\n{}",
        missing.join("\n")
    );
}
