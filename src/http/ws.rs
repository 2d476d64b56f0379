//! GraphQL over WebSocket at `/graphql/ws`, in both protocols async-graphql
//! speaks (graphql-transport-ws and the legacy graphql-ws).
//!
//! async-graphql runs the protocol; this module stands between it and the
//! socket, because async-graphql alone authenticates nobody and limits
//! nothing. It reads every client frame first and:
//! - refuses an upgrade from a browser origin that is not allowed (403),
//! - closes with 1009 on a message larger than `MAX_BODY_BYTES`,
//! - closes with 4408 when no `connection_init` arrives within
//!   [`CONNECTION_INIT_TIMEOUT`],
//! - authenticates the `Authorization` entry of `connection_init` (closing
//!   with 4403 when it does not verify) and runs every later operation as
//!   that caller, with the same checks as over HTTP,
//! - closes with 4429 when a client starts more than
//!   `WS_MAX_SUBSCRIPTIONS` operations at once,
//! - closes with 1001 (going away) when the server shuts down.
//!
//! Accepted frames go on to async-graphql through a channel; its replies
//! go back to the socket.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use async_graphql::http::{ALL_WEBSOCKET_PROTOCOLS, ClientMessage, WebSocketProtocols, WsMessage};
use axum::extract::State;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade, close_code};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use futures::channel::mpsc;

use super::{AppState, as_caller};
use crate::graphql::ApiError;
use crate::service::{Caller, CorrelationId, Services};

/// How long a new connection may take to send `connection_init`. A
/// connection that never authenticates would otherwise hold its socket
/// (and a task) forever.
pub const CONNECTION_INIT_TIMEOUT: Duration = Duration::from_secs(10);

/// How long we wait for the client to answer our close frame. Dropping the
/// socket at once could reset the connection before the client has read
/// the frame, and with it the code that says why.
const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// Why the server closes a connection, and the close code each gets.
#[derive(Debug, PartialEq, Eq)]
enum Refusal {
    /// 4403: the token in `connection_init` does not verify.
    BadToken(String),
    /// 4408: no `connection_init` within [`CONNECTION_INIT_TIMEOUT`].
    InitTimeout,
    /// 1009: a message larger than `MAX_BODY_BYTES`.
    TooBig,
    /// 4429: one operation more than `WS_MAX_SUBSCRIPTIONS`.
    TooManySubscriptions,
}

impl Refusal {
    fn code(&self) -> u16 {
        match self {
            Refusal::BadToken(_) => 4403,
            Refusal::InitTimeout => 4408,
            Refusal::TooBig => close_code::SIZE,
            Refusal::TooManySubscriptions => 4429,
        }
    }

    fn reason(&self) -> String {
        match self {
            Refusal::BadToken(why) => format!("Forbidden: {why}"),
            Refusal::InitTimeout => "Connection initialisation timeout".into(),
            Refusal::TooBig => "Message too big".into(),
            Refusal::TooManySubscriptions => "Too many subscriptions".into(),
        }
    }
}

/// The upgrade: refused with 403 from an origin that is not allowed, with
/// 400 without a GraphQL subprotocol.
pub(super) async fn upgrade(
    State(state): State<AppState>,
    headers: HeaderMap,
    upgrade: WebSocketUpgrade,
) -> Response {
    if !state.origins.allow(headers.get(header::ORIGIN), headers.get(header::HOST)) {
        return (StatusCode::FORBIDDEN, "this origin may not open a WebSocket").into_response();
    }
    let upgrade = upgrade.protocols(ALL_WEBSOCKET_PROTOCOLS);
    let protocol = upgrade.selected_protocol().and_then(|p| p.to_str().ok()?.parse().ok());
    let Some(protocol) = protocol else {
        return (
            StatusCode::BAD_REQUEST,
            "Sec-WebSocket-Protocol must be graphql-transport-ws or graphql-ws",
        )
            .into_response();
    };
    // An `X-Correlation-Id` on the upgrade correlates every operation of
    // the connection; without one, each mutation gets its own.
    let correlation = match headers.get(&super::correlation::HEADER) {
        None => None,
        Some(_) => match super::correlation::pick(&headers) {
            Ok(id) => Some(id),
            Err(why) => return (StatusCode::BAD_REQUEST, why).into_response(),
        },
    };
    let cap = transport_cap(state.settings.max_body_bytes);
    upgrade
        .max_message_size(cap)
        .max_frame_size(cap)
        .on_upgrade(move |socket| serve(socket, state, protocol, correlation))
}

/// The size at which the WebSocket library itself refuses a message, before
/// we see it: twice the limit, so that a message just past the limit is
/// still read whole and refused cleanly, while a huge one is never
/// buffered.
fn transport_cap(max_body_bytes: usize) -> usize {
    max_body_bytes.saturating_mul(2).max(1024)
}

/// One connection: client frames pass the [`Guard`] on their way to
/// async-graphql; its replies go back to the client.
async fn serve(
    mut socket: WebSocket,
    state: AppState,
    protocol: WebSocketProtocols,
    correlation: Option<CorrelationId>,
) {
    let (to_graphql, from_client) = mpsc::unbounded();
    let mut graphql = async_graphql::http::WebSocket::from_message_stream(
        state.schema.clone(),
        from_client,
        protocol,
    );
    let mut guard = Guard::new(&state, correlation);
    let _session = state.services.health.sessions.open();
    let mut draining = state.services.health.draining.clone();
    let init_deadline = tokio::time::sleep(CONNECTION_INIT_TIMEOUT);
    tokio::pin!(init_deadline);
    let refusal = loop {
        tokio::select! {
            _ = super::serve::stopping(&mut draining) => {
                return close(&mut socket, close_code::AWAY, "server shutting down").await;
            }
            frame = socket.recv() => match guard.on_frame(frame) {
                Step::Forward(message) => {
                    // The receiver lives in `graphql`, beside us: never closed.
                    let _ = to_graphql.unbounded_send(message);
                }
                Step::Skip => {}
                Step::Close(refusal) => break refusal,
                Step::End => return,
            },
            reply = graphql.next() => match reply {
                Some(WsMessage::Text(text)) => {
                    guard.on_reply(&text);
                    if socket.send(Message::Text(text.into())).await.is_err() {
                        return;
                    }
                }
                Some(WsMessage::Close(code, reason)) => {
                    return close(&mut socket, code, &reason).await;
                }
                None => return close(&mut socket, close_code::NORMAL, "").await,
            },
            () = &mut init_deadline, if guard.caller.is_none() => break Refusal::InitTimeout,
        }
    };
    refuse(&mut socket, protocol, refusal).await;
}

/// Closes the connection for `refusal`. graphql-transport-ws defines these
/// close codes. The legacy graphql-ws protocol has no codes of its own:
/// the closest it has is `connection_error`, so there the client first gets
/// a `connection_error` with the reason, then the same close code.
async fn refuse(socket: &mut WebSocket, protocol: WebSocketProtocols, refusal: Refusal) {
    let reason = refusal.reason();
    if protocol == WebSocketProtocols::SubscriptionsTransportWS {
        let error =
            serde_json::json!({ "type": "connection_error", "payload": { "message": reason } });
        let _ = socket.send(Message::Text(error.to_string().into())).await;
    }
    close(socket, refusal.code(), &reason).await;
}

/// Sends a close frame, then waits (at most [`CLOSE_GRACE`]) for the
/// client's, so that the frame is read before the connection goes.
async fn close(socket: &mut WebSocket, code: u16, reason: &str) {
    let frame = CloseFrame { code, reason: truncate(reason, 123).into() };
    if socket.send(Message::Close(Some(frame))).await.is_err() {
        return;
    }
    let _ = tokio::time::timeout(CLOSE_GRACE, async {
        while let Some(Ok(message)) = socket.recv().await {
            if matches!(message, Message::Close(_)) {
                break;
            }
        }
    })
    .await;
}

/// `text` cut to at most `max` bytes on a character boundary (a close
/// reason may not be longer than 123 bytes).
fn truncate(text: &str, max: usize) -> &str {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// What to do with one client frame.
#[expect(
    clippy::large_enum_variant,
    reason = "a step lives for one frame; boxing would allocate for every message"
)]
enum Step {
    /// Pass it on to async-graphql (a frame that is not a protocol message
    /// too: async-graphql closes with 1002 for it).
    Forward(serde_json::Result<ClientMessage>),
    /// Nothing to pass on (WebSocket pings and pongs).
    Skip,
    Close(Refusal),
    /// The client closed, or the connection broke.
    End,
}

/// The checks on one connection's client frames, and what they remember:
/// who the caller is once `connection_init` authenticated it, and which
/// operations are running.
struct Guard {
    services: Arc<Services>,
    max_message_bytes: usize,
    max_operations: usize,
    /// `None` until a `connection_init` authenticated the connection.
    caller: Option<Caller>,
    /// Ids of the operations started and not yet completed.
    operations: HashSet<String>,
    /// The upgrade request's correlation id, for every operation.
    correlation: Option<CorrelationId>,
}

impl Guard {
    fn new(state: &AppState, correlation: Option<CorrelationId>) -> Self {
        Guard {
            correlation,
            services: state.services.clone(),
            max_message_bytes: state.settings.max_body_bytes,
            max_operations: state.settings.ws_max_subscriptions,
            caller: None,
            operations: HashSet::new(),
        }
    }

    fn on_frame(&mut self, frame: Option<Result<Message, axum::Error>>) -> Step {
        let message = match frame {
            Some(Ok(message)) => message,
            Some(Err(error)) => return read_failed(&error),
            None => return Step::End,
        };
        let bytes: &[u8] = match &message {
            Message::Text(text) => text.as_bytes(),
            Message::Binary(bytes) => bytes,
            Message::Ping(_) | Message::Pong(_) => return Step::Skip,
            Message::Close(_) => return Step::End,
        };
        if bytes.len() > self.max_message_bytes {
            return Step::Close(Refusal::TooBig);
        }
        match ClientMessage::from_bytes(bytes) {
            Ok(message) => match self.check(message) {
                Ok(message) => Step::Forward(Ok(message)),
                Err(refusal) => Step::Close(refusal),
            },
            Err(error) => Step::Forward(Err(error)),
        }
    }

    /// A protocol message as async-graphql should see it, or why the
    /// connection closes instead.
    fn check(&mut self, message: ClientMessage) -> Result<ClientMessage, Refusal> {
        match message {
            ClientMessage::ConnectionInit { payload } if self.caller.is_none() => {
                self.caller = Some(self.authenticate(payload.as_ref())?);
                Ok(ClientMessage::ConnectionInit { payload })
            }
            ClientMessage::Start { id, payload } => {
                if !self.operations.contains(&id) && self.operations.len() >= self.max_operations {
                    return Err(Refusal::TooManySubscriptions);
                }
                self.operations.insert(id.clone());
                // Before `connection_init` there is no caller: async-graphql
                // refuses the operation and closes.
                let payload = match &self.caller {
                    Some(caller) => {
                        let payload = match &self.correlation {
                            Some(id) => payload.data(id.clone()),
                            None => payload,
                        };
                        as_caller(&self.services, payload, caller.clone())
                    }
                    None => payload,
                };
                Ok(ClientMessage::Start { id, payload })
            }
            ClientMessage::Stop { id } => {
                self.operations.remove(&id);
                Ok(ClientMessage::Stop { id })
            }
            other => Ok(other),
        }
    }

    /// The caller `connection_init`'s `Authorization` entry (any case)
    /// names, decided by the services as for an HTTP header. None is the
    /// anonymous caller; a value that does not verify closes with 4403.
    fn authenticate(&self, payload: Option<&serde_json::Value>) -> Result<Caller, Refusal> {
        let entry = payload
            .and_then(serde_json::Value::as_object)
            .and_then(|fields| fields.iter().find(|(k, _)| k.eq_ignore_ascii_case("authorization")))
            .map(|(_, value)| value.as_str().unwrap_or(""));
        self.services.authenticate(entry).map_err(|e| Refusal::BadToken(ApiError::from(e).message))
    }

    /// Notes the operations async-graphql completed (after their last
    /// result, or after a `complete`/`stop`), so that they no longer count.
    fn on_reply(&mut self, text: &str) {
        #[derive(serde::Deserialize)]
        struct Reply<'a> {
            #[serde(rename = "type")]
            kind: &'a str,
            id: Option<String>,
        }
        if let Ok(Reply { kind: "complete", id: Some(id) }) = serde_json::from_str(text) {
            self.operations.remove(&id);
        }
    }
}

/// A read that failed. A broken connection just ends. Otherwise the client
/// sent a frame the WebSocket library refused: past [`transport_cap`]
/// (more than the limit: 1009), or, from a broken client, a malformed one,
/// which is told 1009 too rather than going unanswered.
fn read_failed(error: &axum::Error) -> Step {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = cause {
        if e.is::<std::io::Error>() {
            return Step::End;
        }
        cause = e.source();
    }
    tracing::debug!(%error, "websocket frame refused");
    Step::Close(Refusal::TooBig)
}
