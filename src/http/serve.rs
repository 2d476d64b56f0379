//! The accept loop: HTTP/1.1 on hyper, with what `axum::serve` does not
//! offer (it takes no settings, so no header timeout, and its graceful
//! shutdown waits for every connection however slow).
//!
//! - A client must send its request headers within the header timeout, or
//!   it is disconnected (hyper's `header_read_timeout`).
//! - Each request knows its client's address (`ConnectInfo<SocketAddr>`).
//! - On shutdown, no new connection is accepted; a connection without a
//!   request in progress (idle, or still sending its headers) is closed at
//!   once, and one with a request in progress finishes it, then closes. A
//!   connection still open when the drain time is up (a stuck client, a
//!   body that never ends) is cut: nobody holds the process past it.

use std::net::SocketAddr;
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tower::ServiceExt as _;

/// Once shutdown starts, how long a connection without a request in
/// progress may take to flush what it was writing before it is dropped.
const IDLE_GRACE: Duration = Duration::from_millis(200);

/// Serves `router` on `listener` until `shutdown` turns true; returns once
/// every connection has ended, or `drain` after the shutdown signal,
/// cutting the connections left. `header_timeout` bounds how long a client
/// may take to send a request's headers.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    header_timeout: Duration,
    drain: Duration,
    mut shutdown: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let (closing, closed) = watch::channel(false);
    let mut connections = JoinSet::new();
    loop {
        let (stream, client) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors and the like: wait, go on.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
            _ = stopping(&mut shutdown) => break,
        };
        let connection = Connection {
            stream,
            client,
            router: router.clone(),
            header_timeout,
            active: Arc::default(),
        };
        connections.spawn(connection.run(closed.clone()));
    }
    drop(listener);
    let _ = closing.send(true);
    let drained = async { while connections.join_next().await.is_some() {} };
    if tokio::time::timeout(drain, drained).await.is_err() {
        tracing::warn!(
            connections = connections.len(),
            ?drain,
            "connections still busy at the shutdown timeout; cutting them"
        );
        connections.shutdown().await;
    }
    Ok(())
}

/// One client connection.
struct Connection {
    stream: TcpStream,
    client: SocketAddr,
    router: Router,
    header_timeout: Duration,
    /// Requests of this connection being handled now.
    active: Arc<AtomicUsize>,
}

impl Connection {
    async fn run(self, mut closing: watch::Receiver<bool>) {
        let Connection { stream, client, router, header_timeout, active } = self;
        let counter = active.clone();
        let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
            request.extensions_mut().insert(ConnectInfo(client));
            let busy = Busy::new(&counter);
            let handled = router.clone().oneshot(request.map(Body::new));
            async move {
                let response = handled.await;
                drop(busy);
                response
            }
        });
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder.timer(TokioTimer::new()).header_read_timeout(header_timeout);
        let mut conn =
            pin!(builder.serve_connection(TokioIo::new(stream), service).with_upgrades());
        tokio::select! {
            served = conn.as_mut() => {
                if let Err(e) = served {
                    tracing::debug!(%client, error = %e, "connection ended");
                }
                return;
            }
            _ = stopping(&mut closing) => {}
        }
        conn.as_mut().graceful_shutdown();
        // A request in progress ends within the request timeout; without
        // one, the connection has nothing to finish.
        loop {
            let idle = active.load(Ordering::Acquire) == 0;
            tokio::select! {
                _ = conn.as_mut() => return,
                _ = tokio::time::sleep(IDLE_GRACE) => {
                    if idle && active.load(Ordering::Acquire) == 0 {
                        return;
                    }
                }
            }
        }
    }
}

/// Resolves once `stop` turns true (or its sender is gone).
pub(crate) async fn stopping(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|stop| *stop).await;
}

/// Counts a request in progress for as long as it is handled.
struct Busy(Arc<AtomicUsize>);

impl Busy {
    fn new(counter: &Arc<AtomicUsize>) -> Self {
        counter.fetch_add(1, Ordering::AcqRel);
        Busy(counter.clone())
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}
