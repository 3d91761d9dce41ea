//! The listener's bounds against slow and hoarding clients, seen from a client's socket: a
//! connection that sends nothing, or its head a byte at a time, or stalls its TLS handshake is
//! closed at the head deadline; a kept-alive connection left idle is closed; a listener at its
//! connection cap answers nobody new until one of its connections ends.

mod common;

use std::time::{Duration, Instant};

use common::{pki, Engine, Names};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

/// The head deadline the engines of this file run with.
const HEAD: Duration = Duration::from_millis(1000);
/// The idle timeout of the plain engine.
const IDLE: Duration = Duration::from_millis(1500);
/// How long the test waits for the server to close a connection before calling it held.
const HELD: Duration = Duration::from_secs(15);

fn address(url: &str) -> String {
    url.split("://").nth(1).expect("a URL").to_string()
}

/// Reads until the server closes the connection (end of stream or reset); how long it took.
async fn closed_by_server(stream: &mut TcpStream, started: Instant, what: &str) -> Duration {
    let mut buf = [0u8; 4096];
    let until = tokio::time::timeout(HELD, async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(until.is_ok(), "{what}: still open after {HELD:?}");
    started.elapsed()
}

#[tokio::test]
async fn slow_heads_and_idle_connections_are_closed_on_a_plain_listener() {
    let engine = Engine::builder(Names::unique("limits"))
        .args(&[
            "--head-timeout-ms",
            &HEAD.as_millis().to_string(),
            "--idle-timeout-ms",
            &IDLE.as_millis().to_string(),
        ])
        .start();
    let addr = address(&engine.url);

    // A client that connects and sends nothing is closed at the head deadline, not before.
    let started = Instant::now();
    let mut silent = TcpStream::connect(&addr).await.expect("connect");
    let took = closed_by_server(&mut silent, started, "a silent connection").await;
    assert!(
        took >= HEAD - Duration::from_millis(100),
        "closed after {took:?}"
    );

    // A head sent a byte at a time never completes in time: the server closes the connection
    // while the client is still writing it.
    let started = Instant::now();
    let mut drip = TcpStream::connect(&addr).await.expect("connect");
    drip.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        .await
        .expect("write");
    let dripping = async {
        loop {
            tokio::time::sleep(Duration::from_millis(100)).await;
            if drip.write_all(b"X").await.is_err() {
                return;
            }
            let mut probe = [0u8; 64];
            match tokio::time::timeout(Duration::from_millis(1), drip.read(&mut probe)).await {
                Ok(Ok(0)) | Ok(Err(_)) => return,
                Ok(Ok(_)) => panic!("the server answered a head that never ended"),
                Err(_) => {}
            }
        }
    };
    assert!(
        tokio::time::timeout(HELD, dripping).await.is_ok(),
        "a dripped head held its connection for {HELD:?}"
    );
    let took = started.elapsed();
    assert!(
        took >= HEAD - Duration::from_millis(100),
        "closed after {took:?}"
    );

    // A prompt request is answered, and its kept-alive connection is closed once idle.
    let mut prompt = TcpStream::connect(&addr).await.expect("connect");
    let head = common::first_answer(
        &mut prompt,
        b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
    )
    .await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        !head.to_ascii_lowercase().contains("connection: close"),
        "kept alive: {head}"
    );
    let answered = Instant::now();
    let took = closed_by_server(&mut prompt, answered, "an idle kept-alive connection").await;
    assert!(
        took >= IDLE - Duration::from_millis(200),
        "closed after {took:?}"
    );

    // None of this stopped the listener.
    let (status, _) = engine.get_json("/healthz").await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn a_stalled_handshake_is_closed_and_a_full_listener_waits_for_a_free_connection() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (cert, key) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
    let ca = pki("limits");
    std::fs::write(&cert, &ca.cert_pem).expect("cert");
    std::fs::write(&key, &ca.key_pem).expect("key");
    let engine = Engine::builder(Names::unique("limits-tls"))
        .args(&[
            "--tls-cert",
            &cert.display().to_string(),
            "--tls-key",
            &key.display().to_string(),
            "--head-timeout-ms",
            &HEAD.as_millis().to_string(),
            "--max-connections",
            "3",
        ])
        .start();
    let addr = address(&engine.url);

    // A client that opens TCP and never starts its TLS handshake is closed at the deadline.
    let started = Instant::now();
    let mut stalled = TcpStream::connect(&addr).await.expect("connect");
    let took = closed_by_server(&mut stalled, started, "a stalled handshake").await;
    assert!(
        took >= HEAD - Duration::from_millis(100),
        "closed after {took:?}"
    );

    // Three clients, each keeping its connection alive in its pool, fill the listener.
    let client = |timeout: Duration| {
        reqwest::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(ca.ca_pem.as_bytes()).expect("CA"))
            .timeout(timeout)
            .pool_idle_timeout(Duration::from_secs(120))
            .build()
            .expect("client")
    };
    let healthz = format!("{}/healthz", engine.url);
    let mut holders = Vec::new();
    for _ in 0..3 {
        let holder = client(Duration::from_secs(10));
        let status = holder.get(&healthz).send().await.expect("served").status();
        assert_eq!(status, 200);
        holders.push(holder);
    }
    // A fourth is not served while they stay.
    let fourth = client(Duration::from_millis(1500));
    let refused = fourth.get(&healthz).send().await;
    assert!(
        refused.is_err(),
        "a fourth connection was served past the cap of 3: {refused:?}"
    );
    // Once one of them goes, a new client is served.
    drop(holders.pop());
    let next = client(Duration::from_secs(10));
    let status = next.get(&healthz).send().await.expect("served").status();
    assert_eq!(status, 200);
}

/// Sends a bulk `POST /patientprofile` declaring `body.len()` bytes, `chunks` pieces apart by
/// `pause`; the answer's status, or `None` when the engine closed the connection first.
async fn slow_bulk(addr: String, body: Vec<u8>, chunks: usize, pause: Duration) -> Option<u16> {
    let mut stream = TcpStream::connect(&addr).await.expect("connect");
    let head = format!(
        "POST /patientprofile HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/x-ndjson\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.ok()?;
    for piece in body.chunks(body.len().div_ceil(chunks)) {
        tokio::time::sleep(pause).await;
        if stream.write_all(piece).await.is_err() {
            break; // answered (and closed) before the body was sent
        }
    }
    let mut answer = Vec::new();
    let mut buf = [0u8; 8192];
    while !answer.windows(4).any(|w| w == b"\r\n\r\n") {
        match tokio::time::timeout(Duration::from_secs(30), stream.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => answer.extend_from_slice(&buf[..n]),
            _ => break,
        }
    }
    let line = String::from_utf8_lossy(&answer).lines().next()?.to_string();
    line.split_whitespace().nth(1)?.parse().ok()
}

#[tokio::test]
async fn concurrent_bulk_uploads_are_held_to_the_in_flight_budget_before_their_bodies_are_read() {
    // A budget of 8 shares of 1 MiB; bulk bodies up to 4 MiB, so two at a time.
    const MIB: usize = 1 << 20;
    const UPLOADS: usize = 24;
    let engine = Engine::builder(Names::unique("limits-bulk"))
        .args(&[
            "--body-limit",
            &MIB.to_string(),
            "--bulk-body-limit",
            &(4 * MIB).to_string(),
            "--max-in-flight",
            "8",
        ])
        .start();
    let addr = address(&engine.url);
    // 4 MiB of lines with no key: each is refused on its own, so nothing reaches the broker
    // and what is measured is the bodies.
    let line = format!("{{\"FirstName\":\"{}\"}}\n", "x".repeat(64 * 1024 - 17));
    let body: Vec<u8> = line.repeat(4 * MIB / line.len()).into_bytes();
    assert!(body.len() <= 4 * MIB && body.len() > 3 * MIB);
    let before = engine.peak_rss_kib();
    // Every upload sends its body over 2 s, so all of them are open at once.
    let uploads: Vec<_> = (0..UPLOADS)
        .map(|_| {
            tokio::spawn(slow_bulk(
                addr.clone(),
                body.clone(),
                20,
                Duration::from_millis(100),
            ))
        })
        .collect();
    let mut statuses = Vec::new();
    for upload in uploads {
        statuses.push(upload.await.expect("the upload task"));
    }
    let grew_mib = (engine.peak_rss_kib().saturating_sub(before)) / 1024;
    let busy = statuses.iter().filter(|s| **s == Some(503)).count();
    let taken = statuses
        .iter()
        .filter(|s| matches!(s, Some(c) if *c != 503))
        .count();
    eprintln!("peak RSS growth {grew_mib} MiB; {taken} taken, {busy} turned away");
    // 24 bodies of 4 MiB read at once would be 96 MiB; the budget holds 8 MiB of bodies.
    assert!(
        grew_mib <= 48,
        "the peak resident set grew by {grew_mib} MiB for {UPLOADS} uploads of 4 MiB (statuses {statuses:?})"
    );
    assert!(taken >= 1, "no upload was taken: {statuses:?}");
    // They were all open at once, so those beyond the budget were turned away before their
    // bodies were read, not served one after the other once read.
    assert!(busy >= 1, "none was turned away: {statuses:?}");
}
