//! Bounds on a listener's connections, so an anonymous client cannot hold sockets until the
//! process runs out of file descriptors:
//!
//! - at most `max_connections` are served at once; the next ones wait in the kernel's accept
//!   queue until one closes (each listener has its own cap, so a flooded public port leaves
//!   the operator's port reachable);
//! - the TLS handshake and the first request's head must arrive within `head_timeout` of the
//!   connection being accepted, or the connection is closed (a client that connects and sends
//!   nothing, or sends its head a byte at a time);
//! - a kept-alive connection with nothing read or written for `idle_timeout` is closed by the
//!   server ([`poem::Server::idle_timeout`], which lets a request in flight finish first).
//!
//! The head is over once `\r\n\r\n` has been read: the end of an HTTP/1 request head, and part
//! of HTTP/2's connection preface.

use std::future::Future as _;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use poem::http::uri::Scheme;
use poem::listener::Acceptor;
use poem::web::{LocalAddr, RemoteAddr};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Sleep;

/// Default of `--max-connections`, per listener.
pub const DEFAULT_MAX_CONNECTIONS: usize = 512;
/// Default of `--head-timeout-ms`.
pub const DEFAULT_HEAD_TIMEOUT: Duration = Duration::from_secs(10);
/// Default of `--idle-timeout-ms`.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// The bounds of one listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Connections served at once.
    pub max_connections: usize,
    /// How long the TLS handshake and the first request's head may take.
    pub head_timeout: Duration,
    /// How long a connection may stay without a byte read or written.
    pub idle_timeout: Duration,
}

/// An acceptor that applies [`Limits`] (the cap and the head deadline) to `inner`'s
/// connections.
pub struct Guarded<A> {
    inner: A,
    permits: Arc<Semaphore>,
    head_timeout: Duration,
}

impl<A> Guarded<A> {
    /// Wraps `inner`.
    pub fn new(inner: A, limits: Limits) -> Self {
        Self {
            inner,
            permits: Arc::new(Semaphore::new(limits.max_connections.max(1))),
            head_timeout: limits.head_timeout,
        }
    }
}

impl<A: Acceptor> Acceptor for Guarded<A> {
    type Io = GuardedIo<A::Io>;

    fn local_addr(&self) -> Vec<LocalAddr> {
        self.inner.local_addr()
    }

    async fn accept(&mut self) -> io::Result<(Self::Io, LocalAddr, RemoteAddr, Scheme)> {
        // The semaphore is never closed, so this waits for a connection to end.
        let permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(io::Error::other)?;
        let (io, local, remote, scheme) = self.inner.accept().await?;
        let io = GuardedIo {
            inner: io,
            _permit: permit,
            head: Some(Box::pin(tokio::time::sleep(self.head_timeout))),
            tail: 0,
        };
        Ok((io, local, remote, scheme))
    }
}

/// A connection holding its place under the cap, closed with `TimedOut` if its head is late.
pub struct GuardedIo<T> {
    inner: T,
    _permit: OwnedSemaphorePermit,
    /// The head's deadline, until the head has been read.
    head: Option<Pin<Box<Sleep>>>,
    /// How many bytes of `\r\n\r\n` the bytes read so far end with.
    tail: usize,
}

const HEAD_END: &[u8] = b"\r\n\r\n";

/// How many bytes of [`HEAD_END`] `read` ends with, given that the bytes before it ended with
/// `tail` of them; `HEAD_END.len()` once the whole of it was seen.
fn scan(mut tail: usize, read: &[u8]) -> usize {
    if tail >= HEAD_END.len() {
        return HEAD_END.len();
    }
    for &byte in read {
        tail = if byte == HEAD_END[tail] {
            tail + 1
        } else if byte == HEAD_END[0] {
            1
        } else {
            0
        };
        if tail == HEAD_END.len() {
            return tail;
        }
    }
    tail
}

impl<T> GuardedIo<T> {
    /// `Pending` becomes `TimedOut` once the head's deadline has passed.
    fn late<R>(
        &mut self,
        cx: &mut Context<'_>,
        pending: Poll<io::Result<R>>,
    ) -> Poll<io::Result<R>> {
        if pending.is_ready() {
            return pending;
        }
        let expired = self
            .head
            .as_mut()
            .is_some_and(|deadline| deadline.as_mut().poll(cx).is_ready());
        if expired {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the TLS handshake or the request head took too long",
            )));
        }
        pending
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for GuardedIo<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
        if this.head.is_some() {
            if let Poll::Ready(Ok(())) = polled {
                this.tail = scan(this.tail, &buf.filled()[before..]);
                if this.tail == HEAD_END.len() {
                    this.head = None;
                }
            }
        }
        this.late(cx, polled)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for GuardedIo<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.late(cx, polled)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_flush(cx);
        this.late(cx, polled)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_shutdown(cx);
        // A connection whose head is late is dropped without waiting for a handshake that
        // will not come.
        match this.late(cx, polled) {
            Poll::Ready(Err(e)) if e.kind() == io::ErrorKind::TimedOut => Poll::Ready(Ok(())),
            other => other,
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        this.late(cx, polled)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_head_ends_at_the_first_blank_line_wherever_the_reads_split_it() {
        let head = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\nbody";
        for split in 0..head.len() {
            let (a, b) = head.split_at(split);
            let tail = scan(scan(0, a), b);
            assert_eq!(tail, HEAD_END.len(), "split at {split}");
        }
        assert_eq!(scan(0, b"GET / HTTP/1.1\r\nHost: x\r\n"), 2);
        assert_eq!(scan(0, b"\r\r\n\r"), 3);
        assert_eq!(scan(0, b"\r\n\r\r\n"), 2);
        assert_eq!(
            scan(0, b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"),
            HEAD_END.len(),
            "HTTP/2's preface"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_connection_whose_head_is_late_is_closed_and_one_in_time_is_not() {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let guarded = |inner| GuardedIo {
            inner,
            _permit: Arc::new(Semaphore::new(1))
                .try_acquire_owned()
                .expect("a permit"),
            head: Some(Box::pin(tokio::time::sleep(Duration::from_secs(10)))),
            tail: 0,
        };
        // Silent: the read fails with TimedOut once the deadline passes.
        let (_client, server) = tokio::io::duplex(64);
        let mut silent = guarded(server);
        let mut buf = [0u8; 16];
        let err = tokio::time::timeout(Duration::from_secs(60), silent.read(&mut buf))
            .await
            .expect("closed by the deadline, not left hanging")
            .expect_err("late");
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);

        // In time: after the head, waiting past the deadline is no longer an error.
        let (mut client, server) = tokio::io::duplex(64);
        let mut prompt = guarded(server);
        client
            .write_all(b"GET / HTTP/1.1\r\n\r\n")
            .await
            .expect("write");
        let mut head = [0u8; 18];
        prompt.read_exact(&mut head).await.expect("the head");
        tokio::time::sleep(Duration::from_secs(30)).await;
        client.write_all(b"x").await.expect("write");
        assert_eq!(prompt.read(&mut buf).await.expect("in time"), 1);
    }
}
