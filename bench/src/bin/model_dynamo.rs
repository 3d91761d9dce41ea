//! The DynamoDB-wire latency model (`ordo_bench::wire`): an in-memory DynamoDB on a local
//! port that answers every request after a fixed latency (4 ms by default, the same as the
//! in-process model), any number at once. Point a client at it with
//! `AWS_ENDPOINT_URL=http://ADDR` (any credentials and region).
//!
//! Prints `model_dynamo listening on http://ADDR` once it serves; exits when its standard
//! input closes (the bench that started it is gone) or on Ctrl-C. `GET /counts` answers the
//! requests counted by operation and client, `GET /landings?table=T&from=N` the writes that
//! landed in table T (key, Unix-epoch nanoseconds).
//!
//! `cargo run -p ordo-bench --bin model_dynamo -- --listen 127.0.0.1:8000`

use std::io::Read as _;
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;
use poem::listener::{Acceptor, Listener, TcpListener};
use tokio::sync::oneshot;

use ordo_bench::model::MODEL_LATENCY;
use ordo_bench::wire::server::{app, Model};

/// An in-memory DynamoDB answering every request after a fixed latency.
#[derive(Parser)]
struct Args {
    /// Where to listen; port 0 picks a free one (printed).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: String,
    /// Microseconds every request takes; the default is the in-process model's.
    #[arg(long, default_value_t = MODEL_LATENCY.as_micros() as u64)]
    latency_us: u64,
    /// Keep serving when standard input closes (for a run by hand in the background).
    #[arg(long)]
    ignore_stdin: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    ordo_bench::init_logs();
    let args = Args::parse();
    let model = Model::new(Duration::from_micros(args.latency_us));
    let acceptor = TcpListener::bind(args.listen.as_str())
        .into_acceptor()
        .await
        .with_context(|| format!("listen on {}", args.listen))?;
    let addr = acceptor
        .local_addr()
        .first()
        .and_then(|a| a.as_socket_addr().copied())
        .context("no local address")?;
    let (closed, stdin_closed) = oneshot::channel::<()>();
    if !args.ignore_stdin {
        // The bench holds our standard input; when it ends, so do we.
        std::thread::spawn(move || {
            let _ = std::io::stdin().read_to_end(&mut Vec::new());
            let _ = closed.send(());
        });
    } else {
        std::mem::forget(closed);
    }
    println!("model_dynamo listening on http://{addr}");
    let stop = async {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = stdin_closed => {}
        }
    };
    poem::Server::new_with_acceptor(acceptor)
        .run_with_graceful_shutdown(app(model), stop, Some(Duration::from_secs(1)))
        .await
        .context("serve")
}
