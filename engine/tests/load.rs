//! `ordo load` against the real local stack: a 10,000-event backfill with bad lines,
//! interrupted (Ctrl-C while its input is silent) and resumed from a line before the point it
//! named, as a cautious operator would after a crash: every good line lands once in effect,
//! every bad line is in the side file once with its reason.

mod common;

use std::collections::BTreeSet;
use std::io::Write as _;
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use common::{
    get_item, ndjson_with_bad_lines, ordo_command, send_signal, Engine, Rng, Workload,
    EFFECT_TIMEOUT,
};
use serde_json::Value;

const PATIENTS: usize = 1_000;
const UPDATES: usize = 10;
/// The first run is given this many lines, then interrupted.
const CUT: usize = 5_000;
/// The second run starts this many lines before the point the first one named.
const OVERLAP: u64 = 1_000;

/// `ordo load` on `engine`'s pipeline, reading `input` (a path or `-`), with `args`.
fn load_command(
    engine: &Engine,
    input: &str,
    rejects: &str,
    args: &[&str],
) -> std::process::Command {
    let mut command = ordo_command();
    command
        .args(["load", "--config"])
        .arg(engine.config_path())
        .args(["--brokers", &engine.brokers, "--rejects", rejects])
        .args(args)
        .args([engine.names.pipeline.as_str(), input]);
    command
}

fn text(output: &Output) -> String {
    format!(
        "stdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[tokio::test]
async fn an_interrupted_load_resumed_early_lands_every_good_line_once_and_lists_every_bad_one() {
    let started = Instant::now();
    let engine = Engine::start("load");
    println!("{:?}: engine started", started.elapsed());
    let mut rng = Rng::from_env();
    let workload = Workload::new(&mut rng, "load", PATIENTS, UPDATES);
    let (ndjson, bad) = ndjson_with_bad_lines(&workload.events);
    let lines: Vec<&str> = ndjson.lines().collect();
    assert_eq!(lines.len(), PATIENTS * UPDATES + bad.len());
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("profiles.jsonl");
    std::fs::write(&file, &ndjson).expect("write the file");
    let rejects = dir.path().join("rejected.jsonl");
    let rejects = rejects.to_str().expect("UTF-8 path");

    // First run: standard input gets the first CUT lines and then stays open and silent.
    let mut first = load_command(&engine, "-", rejects, &["--in-flight", "100"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start ordo load");
    let mut input = first.stdin.take().expect("stdin piped");
    input
        .write_all((lines[..CUT].join("\n") + "\n").as_bytes())
        .expect("feed the load");
    let good_in_first = (1..=CUT).filter(|n| !bad.contains(n)).count() as i64;
    // Slowness is not the fault looked for here (a shared broker may be busy); a load that
    // stops landing lines while it has some is.
    let (mut landed, mut moved) = (0, Instant::now());
    while landed < good_in_first {
        let now = engine.topic_size();
        if now > landed {
            (landed, moved) = (now, Instant::now());
        } else if moved.elapsed() > EFFECT_TIMEOUT {
            send_signal(first.id(), "INT");
            let output = first.wait_with_output().expect("the load ends");
            panic!(
                "stalled at {landed} of the first {CUT} lines' {good_in_first} good ones; {}",
                text(&output)
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!("{:?}: the first {CUT} lines landed", started.elapsed());
    send_signal(first.id(), "INT");
    let output = first.wait_with_output().expect("the load ends");
    drop(input);
    assert_eq!(output.status.code(), Some(130), "{}", text(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    let resume: u64 = stderr
        .split("resume with --from-line ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no resume point named; {}", text(&output)));
    assert!(
        (1..=CUT as u64 + 1).contains(&resume),
        "resume point {resume} beyond the {CUT} lines given"
    );
    // Every good line before the resume point is in the topic.
    let good_before = (1..resume as usize).filter(|n| !bad.contains(n)).count() as i64;
    assert!(engine.topic_size() >= good_before);

    // Second run: the whole file, from OVERLAP lines before that point.
    let from = resume.saturating_sub(OVERLAP).max(1);
    let output = load_command(
        &engine,
        file.to_str().expect("UTF-8 path"),
        rejects,
        &["--from-line", &from.to_string()],
    )
    .output()
    .expect("ordo load");
    assert!(output.status.success(), "{}", text(&output));
    println!("{:?}: the second load ended", started.elapsed());
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains(&format!("{} lines read", lines.len())),
        "{stdout}"
    );

    // The side file lists every bad line once, with its reason, readable by its owner only.
    let side = std::fs::read_to_string(rejects).expect("side file");
    let listed: Vec<Value> = side
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    let numbers: Vec<usize> = listed
        .iter()
        .filter_map(|l| l["line"].as_u64())
        .map(|n| n as usize)
        .collect();
    assert_eq!(numbers.len(), bad.len(), "each bad line once: {side}");
    assert_eq!(
        numbers.iter().copied().collect::<BTreeSet<_>>(),
        bad.iter().copied().collect::<BTreeSet<_>>()
    );
    for letter in &listed {
        let n = letter["line"].as_u64().unwrap_or_default() as usize;
        assert_eq!(letter["event"], lines[n - 1], "line {n} as it was");
        assert!(
            letter["reason"].as_str().is_some_and(|r| !r.is_empty()),
            "line {n} has a reason: {letter}"
        );
    }
    assert!(listed.iter().any(|l| l["field"] == "PatientId"));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(rejects)
            .expect("side file")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    // The replica: each patient's newest update, and no event written twice (a revision per
    // write, at most one write per event, though up to OVERLAP lines were produced twice).
    engine.wait_caught_up().await;
    println!("{:?}: the engine caught up", started.elapsed());
    let client = common::dynamodb().await;
    let mut wrong = Vec::new();
    for (id, name) in &workload.newest {
        let Some(item) = get_item(&client, &engine.names.table, id).await else {
            wrong.push(format!("{id}: missing"));
            continue;
        };
        let record = ordo::store::item::from_item(&item).expect("a JSON record");
        if record["FirstName"] != name.as_str() {
            wrong.push(format!("{id}: {} instead of {name}", record["FirstName"]));
        }
        let revision = record["Ordo"]["revision"].as_u64().unwrap_or_default();
        if revision == 0 || revision as usize > UPDATES {
            wrong.push(format!("{id}: revision {revision} for {UPDATES} events"));
        }
    }
    assert!(
        wrong.is_empty(),
        "{} of {PATIENTS} records wrong: {wrong:?}\nengine log:\n{}",
        wrong.len(),
        engine.log()
    );
}

#[tokio::test]
async fn the_rejects_file_is_never_overwritten_nor_written_through_a_link() {
    let engine = Engine::start("load-side");
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("profiles.jsonl");
    std::fs::write(&file, "not json\n").expect("write the input");
    let input = file.to_str().expect("UTF-8 path");
    // An earlier load's rejects: a new load refuses to truncate them.
    let earlier = dir.path().join("earlier.jsonl");
    std::fs::write(&earlier, "{\"line\":7}\n").expect("write");
    let output = load_command(&engine, input, earlier.to_str().expect("UTF-8"), &[])
        .output()
        .expect("ordo load");
    assert!(!output.status.success(), "{}", text(&output));
    assert!(text(&output).contains("--from-line"), "{}", text(&output));
    assert_eq!(
        std::fs::read_to_string(&earlier).expect("read"),
        "{\"line\":7}\n",
        "the earlier rejects are kept"
    );
    // A link planted where the rejects go, toward a file elsewhere: refused, resuming or not.
    let target = dir.path().join("elsewhere");
    std::fs::write(&target, "").expect("write");
    let link = dir.path().join("link.jsonl");
    std::os::unix::fs::symlink(&target, &link).expect("symlink");
    for args in [&[][..], &["--from-line", "1"][..]] {
        let output = load_command(&engine, input, link.to_str().expect("UTF-8"), args)
            .output()
            .expect("ordo load");
        assert!(!output.status.success(), "{args:?}: {}", text(&output));
    }
    assert_eq!(std::fs::read_to_string(&target).expect("read"), "");
    // Resuming appends to the file it names.
    let output = load_command(
        &engine,
        input,
        earlier.to_str().expect("UTF-8"),
        &["--from-line", "1"],
    )
    .output()
    .expect("ordo load");
    assert!(output.status.success(), "{}", text(&output));
    let side = std::fs::read_to_string(&earlier).expect("read");
    assert!(
        side.starts_with("{\"line\":7}\n") && side.lines().count() == 2,
        "{side}"
    );
}
