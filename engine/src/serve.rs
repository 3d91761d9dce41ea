//! The HTTP listener: plain, or TLS (rustls) with the certificate and key re-read when their
//! files change, so a renewed certificate is served without a restart.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use futures::StreamExt as _;
use poem::listener::{
    Acceptor, AcceptorExt as _, IntoTlsConfigStream, Listener, RustlsCertificate, RustlsConfig,
    TcpListener,
};
use poem::web::{LocalAddr, RemoteAddr};
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
            let tcp = TcpListener::bind(listen)
                .into_acceptor()
                .await
                .map_err(|e| http_error(listen, e))?;
            let acceptor = ConfigFirst::new(tcp).rustls(Box::pin(configs(tls, first)));
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

/// Lets the first `accept` wait one turn of the scheduler. Poem's TLS acceptor chooses at
/// random between loading its first configuration and accepting a connection when both are
/// ready, and drops a connection accepted before any configuration is loaded: a client that
/// connected as the engine started would find its connection closed. Waiting one turn makes
/// the configuration always come first.
struct ConfigFirst<A> {
    inner: A,
    waited: bool,
}

impl<A> ConfigFirst<A> {
    fn new(inner: A) -> Self {
        Self {
            inner,
            waited: false,
        }
    }
}

impl<A: Acceptor> Acceptor for ConfigFirst<A> {
    type Io = A::Io;

    fn local_addr(&self) -> Vec<LocalAddr> {
        self.inner.local_addr()
    }

    async fn accept(
        &mut self,
    ) -> std::io::Result<(Self::Io, LocalAddr, RemoteAddr, poem::http::uri::Scheme)> {
        if !self.waited {
            self.waited = true;
            tokio::task::yield_now().await;
        }
        self.inner.accept().await
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A certificate for 127.0.0.1, as files in `dir`.
    fn tls_files(dir: &Path) -> Tls {
        let key = rcgen::KeyPair::generate().expect("key");
        let cert = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()])
            .expect("params")
            .self_signed(&key)
            .expect("self-signed");
        let tls = Tls {
            cert: dir.join("tls.crt"),
            key: dir.join("tls.key"),
        };
        std::fs::write(&tls.cert, cert.pem()).expect("cert");
        std::fs::write(&tls.key, key.serialize_pem()).expect("key");
        tls
    }

    #[tokio::test]
    async fn a_connection_waiting_as_the_tls_listener_starts_is_accepted() {
        let dir = tempfile::tempdir().expect("temp dir");
        let tls = tls_files(dir.path());
        // Each round: a client already waiting when the listener first accepts. Without the
        // configuration loaded first, about half the rounds would lose their connection.
        for round in 0..20 {
            let tcp = TcpListener::bind("127.0.0.1:0")
                .into_acceptor()
                .await
                .expect("bind");
            let addr = *tcp.local_addr()[0].as_socket_addr().expect("address");
            let first = tls.config().expect("config");
            let mut acceptor = ConfigFirst::new(tcp).rustls(Box::pin(configs(tls.clone(), first)));
            let _client = tokio::net::TcpStream::connect(addr).await.expect("connect");
            let accepted = tokio::time::timeout(Duration::from_secs(5), acceptor.accept()).await;
            assert!(
                matches!(accepted, Ok(Ok(_))),
                "round {round}: the waiting connection was not accepted"
            );
        }
    }
}
