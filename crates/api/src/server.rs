//! The HTTP/1.1 server: hyper with deadlines on reading a request, and a cap on connections, so
//! slow or idle clients cannot hold the service's sockets and memory. A request answered before
//! its body was read (a refused key, a quota, a size) has the rest of its body read and
//! discarded, up to [`UNREAD_BODY_DRAIN`] bytes within the body deadline: a client that writes
//! its whole body before reading the answer gets the answer, not a reset connection.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::Router;
use hyper::body::{Body as _, Bytes, Frame, Incoming, SizeHint};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tower::ServiceExt as _;

/// Most bytes of a request's body read and discarded after an answer given before the body was
/// read (the default body limit: what the route would have read); a longer body's connection is
/// closed.
pub const UNREAD_BODY_DRAIN: u64 = 32 << 20;

/// Deadlines and caps of the HTTP server.
#[derive(Clone, Debug)]
pub struct HttpLimits {
    /// Longest a client may take to send a request's headers (from the connection's start, or
    /// from the previous response on a kept-alive connection); then the connection is closed.
    pub header_read_timeout: Duration,
    /// Longest a client may take to send a request's body; then 408.
    pub body_read_timeout: Duration,
    /// Connections served at once; more wait in the listen backlog.
    pub max_connections: usize,
    /// On shutdown, how long open connections (event streams) get to finish.
    pub drain: Duration,
}

impl Default for HttpLimits {
    fn default() -> Self {
        HttpLimits {
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(60),
            max_connections: 4_096,
            drain: Duration::from_secs(10),
        }
    }
}

/// Serves `app` on `listener` until `shutdown` resolves, then lets open connections finish for
/// [`HttpLimits::drain`]. Each request carries its peer address as [`ConnectInfo`].
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: HttpLimits,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let app = app.layer(tower_http::timeout::RequestBodyTimeoutLayer::new(limits.body_read_timeout));
    let connections = Arc::new(tokio::sync::Semaphore::new(limits.max_connections.max(1)));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            permit = connections.clone().acquire_owned() => match permit {
                Ok(p) => p,
                Err(_) => break,
            },
            () = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: pause instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let app = app.clone();
        let body_deadline = limits.body_read_timeout;
        let service = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
            let app = app.clone();
            async move {
                let (back, mut returned) = tokio::sync::oneshot::channel();
                let mut req = req.map(|body| Returning { body: Some(body), back: Some(back) });
                req.extensions_mut().insert(ConnectInfo::<SocketAddr>(peer));
                let response = app.oneshot(req).await;
                if let Ok(unread) = returned.try_recv() {
                    tokio::spawn(drain(unread, body_deadline));
                }
                response
            }
        });
        let connection = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_read_timeout)
            .serve_connection(TokioIo::new(stream), service);
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
            drop(permit);
        });
    }
    drop(listener);
    if tokio::time::timeout(limits.drain, graceful.shutdown()).await.is_err() {
        tracing::warn!(
            seconds = limits.drain.as_secs(),
            "connections still open after the drain period; closing them"
        );
    }
    Ok(())
}

/// A request's body that, dropped before its end, hands the rest back to be drained.
struct Returning {
    body: Option<Incoming>,
    back: Option<tokio::sync::oneshot::Sender<Incoming>>,
}

impl hyper::body::Body for Returning {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match self.body.as_mut() {
            Some(body) => Pin::new(body).poll_frame(cx),
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.body.as_ref().is_none_or(Incoming::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        self.body.as_ref().map_or_else(|| SizeHint::with_exact(0), Incoming::size_hint)
    }
}

impl Drop for Returning {
    fn drop(&mut self) {
        if let (Some(body), Some(back)) = (self.body.take(), self.back.take()) {
            if !body.is_end_stream() {
                let _ = back.send(body);
            }
        }
    }
}

/// Reads and discards the rest of a body the answer did not need, up to [`UNREAD_BODY_DRAIN`]
/// bytes within `deadline` (a body announced longer is not read: its connection is closed).
async fn drain(mut body: Incoming, deadline: Duration) {
    if body.size_hint().lower() > UNREAD_BODY_DRAIN {
        return;
    }
    let read = async {
        let mut read = 0u64;
        while let Some(Ok(frame)) = std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await {
            read += frame.data_ref().map_or(0, |d| d.len() as u64);
            if read > UNREAD_BODY_DRAIN {
                return;
            }
        }
    };
    let _ = tokio::time::timeout(deadline, read).await;
}
