//! DNS rebinding: an engine on loopback without `[auth]` answers only requests that name it
//! as a local client does. A web page under another name, pointed at 127.0.0.1, is refused
//! before anything reaches the topic: the test reads the topic itself.

mod common;

use common::Engine;

#[tokio::test]
async fn a_request_naming_another_host_or_origin_is_refused_and_produces_nothing() {
    let engine = Engine::start("rebind");
    let port = engine.url.rsplit(':').next().expect("a port").to_string();
    let body = r#"{"PatientId":"rebind-1","FirstName":"John","LastName":"Doe","IsPregnant":"False","Sex":"Female"}"#;
    let client = reqwest::Client::new();
    let send = |host: String, origin: Option<&'static str>, get: bool| {
        let url = if get {
            format!("{}/patientprofile/rebind-1", engine.url)
        } else {
            format!("{}/patientprofile", engine.url)
        };
        let mut request = if get {
            client.get(url)
        } else {
            client
                .post(url)
                .header("content-type", "application/json")
                .body(body)
        };
        request = request.header("host", host);
        if let Some(origin) = origin {
            request = request.header("origin", origin);
        }
        async move { request.send().await.expect("the engine answers") }
    };
    for (host, origin, get, names) in [
        (format!("rebound.example:{port}"), None, false, "`Host`"),
        (format!("rebound.example:{port}"), None, true, "`Host`"),
        (format!("127.0.0.1.nip.io:{port}"), None, false, "`Host`"),
        (
            format!("127.0.0.1:{port}"),
            Some("http://rebound.example"),
            false,
            "`Origin`",
        ),
    ] {
        let refused = send(host.clone(), origin, get).await;
        assert_eq!(refused.status(), 403, "{host} {origin:?}");
        let problem: serde_json::Value = refused.json().await.expect("a problem body");
        assert!(
            problem["detail"]
                .as_str()
                .is_some_and(|d| d.contains(names)),
            "{problem}"
        );
    }
    assert_eq!(
        engine.topic_size(),
        0,
        "a refused request produced an event"
    );
    // The same requests naming the engine as a local client would are served.
    let served = send(
        format!("localhost:{port}"),
        Some("http://localhost:3000"),
        false,
    )
    .await;
    assert_eq!(served.status(), 202, "{:?}", served.text().await);
    assert_eq!(engine.topic_size(), 1);
}
