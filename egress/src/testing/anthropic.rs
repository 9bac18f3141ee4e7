//! [`fake_anthropic`]: enough of the Anthropic Messages API, over TLS, for Claude Code
//! (`claude -p`) to print a canned answer, recording every request it gets.
//!
//! - `POST /v1/messages` (any query, e.g. `?beta=true`) with a JSON body: a message whose only
//!   content is the answer; with `"stream": true` as `text/event-stream` (`message_start`,
//!   `content_block_start`, `ping`, one `content_block_delta` per word, `content_block_stop`,
//!   `message_delta` with `stop_reason: end_turn` and usage, `message_stop`), each event flushed
//!   on its own [`EVENT_PAUSE`] after the previous one;
//! - `POST /v1/messages/count_tokens`: `{"input_tokens": 1}`;
//! - anything else (`GET /api/hello`, telemetry, …): `200 {}`.

use super::http::{serve_http, Request, Response, SseEvent};
use super::pki::TestPki;
use super::server::{spawn_server, Bind, Upstream};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio_rustls::TlsAcceptor;

/// Names the fake's certificate is valid for (besides the address it is bound to).
pub const ANTHROPIC_NAMES: &[&str] = &["api.anthropic.com", "localhost", "127.0.0.1"];
/// Pause between two events of a streamed answer, so streaming is observable.
pub const EVENT_PAUSE: Duration = Duration::from_millis(20);
/// Model named in answers to requests that name none.
const DEFAULT_MODEL: &str = "claude-paddock-test";

/// One request the fake received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedRequest {
    /// As sent, e.g. `POST`.
    pub method: String,
    /// The request-target as sent, query included, e.g. `/v1/messages?beta=true`.
    pub path: String,
    /// Every header field, names lower-cased, in order.
    pub headers: Vec<(String, String)>,
    /// Length of the body after de-chunking.
    pub body_len: usize,
}

impl RecordedRequest {
    /// The first value of header `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(header, _)| header.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }
}

/// What the fake has received so far, oldest first.
pub type RequestLog = Arc<Mutex<Vec<RecordedRequest>>>;

/// A fake `api.anthropic.com` with a certificate from `pki` for [`ANTHROPIC_NAMES`] and `bind`,
/// answering every message with `answer`.
///
/// # Panics
/// If the server cannot start.
pub fn fake_anthropic(pki: &TestPki, bind: impl Bind, answer: &str) -> (Upstream, RequestLog) {
    let bind = bind.socket_addr();
    let bind_name = bind.ip().to_string();
    let mut names: Vec<&str> = ANTHROPIC_NAMES.to_vec();
    if !names.contains(&bind_name.as_str()) {
        names.push(&bind_name);
    }
    fake_anthropic_for(pki, &names, bind, answer)
}

/// [`fake_anthropic`] with a certificate for `names` instead.
///
/// # Panics
/// If a name is not a DNS name or IP address, or the server cannot start.
pub fn fake_anthropic_for(
    pki: &TestPki,
    names: &[&str],
    bind: impl Bind,
    answer: &str,
) -> (Upstream, RequestLog) {
    let acceptor = TlsAcceptor::from(pki.server_config(names));
    let log = RequestLog::default();
    let api = Arc::new(FakeApi {
        answer: answer.to_owned(),
        log: log.clone(),
        messages: AtomicU64::new(0),
    });
    let upstream = spawn_server("fake-anthropic", bind, move |tcp| {
        let acceptor = acceptor.clone();
        let api = api.clone();
        async move {
            match acceptor.accept(tcp).await {
                Ok(tls) => serve_http(tls, |request| api.answer(request)).await,
                Err(error) => tracing::debug!(%error, "fake_anthropic: handshake failed"),
            }
        }
    });
    (upstream, log)
}

/// The fake's state, shared by its connections.
struct FakeApi {
    answer: String,
    log: RequestLog,
    messages: AtomicU64,
}

impl FakeApi {
    fn answer(&self, request: &Request) -> Response {
        self.log
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(RecordedRequest {
                method: request.method.clone(),
                path: request.target.clone(),
                headers: request.headers.clone(),
                body_len: request.body.len(),
            });
        let is_post = request.method.eq_ignore_ascii_case("POST");
        match request.path() {
            "/v1/messages" if is_post => self.message(request),
            "/v1/messages/count_tokens" if is_post => Response::json(&json!({"input_tokens": 1})),
            _ => Response::json(&json!({})),
        }
    }

    fn message(&self, request: &Request) -> Response {
        let body: Value = match serde_json::from_slice(&request.body) {
            Ok(body) => body,
            Err(_) => return Response::error(400, "the body is not JSON"),
        };
        let model = body
            .get("model")
            .and_then(Value::as_str)
            .unwrap_or(DEFAULT_MODEL);
        let message = CannedMessage {
            id: format!(
                "msg_paddock_{:06}",
                self.messages.fetch_add(1, Ordering::Relaxed)
            ),
            model,
            words: words(&self.answer),
            input_tokens: (request.body.len() / 4).max(1),
        };
        if body.get("stream").and_then(Value::as_bool) == Some(true) {
            Response::EventStream {
                events: message.events(),
                pause: EVENT_PAUSE,
            }
        } else {
            Response::json(&message.json())
        }
    }
}

/// `answer` cut into the pieces streamed as deltas: words with their trailing whitespace (one
/// empty piece for an empty answer).
fn words(answer: &str) -> Vec<&str> {
    let words: Vec<&str> = answer.split_inclusive(char::is_whitespace).collect();
    if words.is_empty() {
        vec![""]
    } else {
        words
    }
}

/// One answer, in either form.
struct CannedMessage<'a> {
    id: String,
    model: &'a str,
    words: Vec<&'a str>,
    input_tokens: usize,
}

impl CannedMessage<'_> {
    fn output_tokens(&self) -> usize {
        self.words.len()
    }

    /// The non-streamed message object.
    fn json(&self) -> Value {
        json!({
            "id": self.id,
            "type": "message",
            "role": "assistant",
            "model": self.model,
            "content": [{"type": "text", "text": self.words.concat()}],
            "stop_reason": "end_turn",
            "stop_sequence": null,
            "usage": self.usage(self.output_tokens()),
        })
    }

    fn usage(&self, output_tokens: usize) -> Value {
        json!({
            "input_tokens": self.input_tokens,
            "output_tokens": output_tokens,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
        })
    }

    /// The streamed form: the standard event sequence of the Messages API.
    fn events(&self) -> Vec<SseEvent> {
        let event = |name: &'static str, data: Value| SseEvent {
            name,
            data: data.to_string(),
        };
        let mut events = vec![
            event(
                "message_start",
                json!({"type": "message_start", "message": {
                    "id": self.id,
                    "type": "message",
                    "role": "assistant",
                    "model": self.model,
                    "content": [],
                    "stop_reason": null,
                    "stop_sequence": null,
                    "usage": self.usage(1),
                }}),
            ),
            event(
                "content_block_start",
                json!({"type": "content_block_start", "index": 0,
                       "content_block": {"type": "text", "text": ""}}),
            ),
            event("ping", json!({"type": "ping"})),
        ];
        events.extend(self.words.iter().map(|word| {
            event(
                "content_block_delta",
                json!({"type": "content_block_delta", "index": 0,
                       "delta": {"type": "text_delta", "text": word}}),
            )
        }));
        events.extend([
            event(
                "content_block_stop",
                json!({"type": "content_block_stop", "index": 0}),
            ),
            event(
                "message_delta",
                json!({"type": "message_delta",
                       "delta": {"stop_reason": "end_turn", "stop_sequence": null},
                       "usage": {"output_tokens": self.output_tokens()}}),
            ),
            event("message_stop", json!({"type": "message_stop"})),
        ]);
        events
    }
}
