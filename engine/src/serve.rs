//! The HTTP listener: plain, or TLS (rustls) with the certificate and key re-read when their
//! files change, so a renewed certificate is served without a restart.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use futures::StreamExt as _;
use poem::listener::{
    Acceptor, IntoTlsConfigStream, Listener, RustlsCertificate, RustlsConfig, TcpListener,
};
use poem::Server;
use tracing::{info, warn};

use crate::connections::{Guarded, Limits};
use crate::operator;
use crate::shutdown::Shutdown;
use crate::Error;

/// How long shutdown waits for requests in flight.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
/// How often the certificate files are looked at for a change.
const TLS_POLL: Duration = Duration::from_secs(1);

/// Where the listener's certificate chain and private key are (PEM files).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tls {
    /// The certificate chain, leaf first.
    pub cert: PathBuf,
    /// The private key of the leaf.
    pub key: PathBuf,
}

/// What tells one version of the pair of files from the next.
type Stamp = (Option<crate::watch::Stamp>, Option<crate::watch::Stamp>);

impl Tls {
    /// Whether the files load, before anything else is started.
    pub fn check(&self) -> Result<(), Error> {
        self.config().map(|_| ())
    }

    fn stamp(&self) -> Stamp {
        (
            crate::watch::stamp(&self.cert),
            crate::watch::stamp(&self.key),
        )
    }

    /// The files as a rustls configuration; checked by building it, so a broken pair is
    /// refused here rather than on the first handshake.
    fn config(&self) -> Result<RustlsConfig, Error> {
        let read = |path: &Path| {
            std::fs::read(path).map_err(|source| Error::Tls {
                path: path.to_path_buf(),
                reason: source.to_string(),
            })
        };
        let (cert, key) = (read(&self.cert)?, read(&self.key)?);
        let build = || {
            RustlsConfig::new()
                .fallback(RustlsCertificate::new().cert(cert.clone()).key(key.clone()))
        };
        // Building the server configuration is the check; the stream it returns is not used.
        let _checked = IntoTlsConfigStream::into_stream(build()).map_err(|e| Error::Tls {
            path: self.cert.clone(),
            reason: e.to_string(),
        })?;
        Ok(build())
    }
}

/// Where the engine serves: every route on `public`, or with `admin` the operator's side
/// (`/admin/*`, `/metrics`, `/ui`, and the health checks) there and not on `public`.
pub struct Listeners {
    /// The public address.
    pub public: SocketAddr,
    /// The operator's address, if apart.
    pub admin: Option<SocketAddr>,
    /// HTTPS on both, when given.
    pub tls: Option<Tls>,
    /// Answer only requests naming a local address (no `[auth]`; see
    /// [`operator::host`]), on each listener that is loopback.
    pub local_names_only: bool,
    /// The bounds on each listener's connections.
    pub limits: Limits,
}

impl Listeners {
    /// Serves the application `app` makes until `shutdown`.
    pub async fn serve(
        self,
        app: impl Fn() -> poem::endpoint::BoxEndpoint<'static>,
        shutdown: Shutdown,
    ) -> Result<(), Error> {
        let checked = |app, listen: SocketAddr| {
            if self.local_names_only && listen.ip().is_loopback() {
                operator::host::local_names_only(app, listen)
            } else {
                app
            }
        };
        let Some(admin) = self.admin else {
            let app = checked(app(), self.public);
            return serve(self.public, self.tls, self.limits, app, "Ordo", shutdown).await;
        };
        let (public, operator) = tokio::join!(
            serve(
                self.public,
                self.tls.clone(),
                self.limits,
                checked(operator::without_operator(app()), self.public),
                "Ordo",
                shutdown.clone()
            ),
            serve(
                admin,
                self.tls.clone(),
                self.limits,
                checked(operator::operator_only(app()), admin),
                "Ordo admin",
                shutdown
            ),
        );
        public.and(operator)
    }
}

/// Serves `app` on `listen` (with `tls` when given, within `limits`) until `shutdown`, then
/// lets requests in flight finish. Prints `<name> listening on http(s)://ADDR` once it serves.
pub async fn serve(
    listen: SocketAddr,
    tls: Option<Tls>,
    limits: Limits,
    app: poem::endpoint::BoxEndpoint<'static>,
    name: &str,
    shutdown: Shutdown,
) -> Result<(), Error> {
    let http_error = |addr, source| Error::Http { addr, source };
    match tls {
        None => {
            let acceptor = TcpListener::bind(listen)
                .into_acceptor()
                .await
                .map_err(|e| http_error(listen, e))?;
            let acceptor = Guarded::new(acceptor, limits);
            run(acceptor, "http", name, listen, limits, app, shutdown).await
        }
        Some(tls) => {
            let first = tls.config()?;
            let acceptor = TcpListener::bind(listen)
                .rustls(configs(tls, first))
                .into_acceptor()
                .await
                .map_err(|e| http_error(listen, e))?;
            // Outside TLS, so the handshake counts against the head's deadline.
            let acceptor = Guarded::new(acceptor, limits);
            run(acceptor, "https", name, listen, limits, app, shutdown).await
        }
    }
}

/// The first configuration, then each one read after the files changed (a pair that does not
/// load is logged and skipped; the one in force stays).
fn configs(
    tls: Tls,
    first: RustlsConfig,
) -> impl futures::Stream<Item = RustlsConfig> + Send + 'static {
    let stamp = tls.stamp();
    futures::stream::once(async move { first }).chain(futures::stream::unfold(
        (tls, stamp),
        |(tls, mut seen)| async move {
            loop {
                tokio::time::sleep(TLS_POLL).await;
                let now = tls.stamp();
                if now == seen {
                    continue;
                }
                seen = now;
                match tls.config() {
                    Ok(config) => {
                        info!(cert = %tls.cert.display(), "TLS certificate reloaded.");
                        return Some((config, (tls, seen)));
                    }
                    Err(e) => warn!(error = %e, "TLS files changed but do not load; the certificate in force stays."),
                }
            }
        },
    ))
}

async fn run<A: Acceptor + 'static>(
    acceptor: A,
    scheme: &str,
    name: &str,
    listen: SocketAddr,
    limits: Limits,
    app: poem::endpoint::BoxEndpoint<'static>,
    mut shutdown: Shutdown,
) -> Result<(), Error> {
    let local = acceptor
        .local_addr()
        .first()
        .and_then(|a| a.as_socket_addr().copied())
        .unwrap_or(listen);
    info!(addr = %local, scheme, server = name, "HTTP server started.");
    println!("{name} listening on {scheme}://{local}");
    Server::new_with_acceptor(acceptor)
        .idle_timeout(limits.idle_timeout)
        .run_with_graceful_shutdown(
            app,
            async move { shutdown.wait().await },
            Some(DRAIN_TIMEOUT),
        )
        .await
        .map_err(|source| Error::Http {
            addr: local,
            source,
        })
}
