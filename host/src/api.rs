//! The operator's HTTP listener (README: "The operator API"), off unless `api.listen` is set:
//! - `GET /healthz`: 200 while the component stream is up, 503 otherwise, with a short JSON body;
//! - `GET /metrics`: the Prometheus text exposition of `metrics.rs`;
//! - `GET /rooms`, `POST /rooms`, `DELETE /rooms/{jid}`: the rooms, joined and left at run time
//!   (README: "Group chat"), behind the same token as `/send`;
//! - `POST /inject` (in `stanzahook dev` only): `{"body", "from"?, "to"?}` becomes a test message
//!   handled as if the server had sent it (README: "The development loop"), behind the token
//!   when one is set;
//! - `GET /deliveries`, `GET /deliveries/{id}`, `GET /deliveries/live`, the redeliveries, and the
//!   console page at `/console` (README: "Deliveries"; `deliveries.rs`);
//! - `POST /send`: a reply JSON as in the README's "The answer", with `to` (or `room`, see "Group
//!   chat") required, behind a bearer token, checked like a webhook's answer and queued for the
//!   server: how a bot answers later than the webhook's timeout.

mod deliveries;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use std::sync::Arc;

use crate::live::LiveCell;
use crate::payload::{self, AnswerError};
use crate::rooms::Rooms;
use crate::stanza::{self, Kind};
use crate::xmpp::Outbox;
use crate::{health, metrics};

#[derive(Clone)]
struct Api {
    live: LiveCell,
    outbox: Outbox,
    rooms: Arc<Rooms>,
    injector: Option<Arc<crate::dev::Injector>>,
    deliveries: Arc<crate::deliveries::Deliveries>,
    /// Ends the live streams at shutdown: the server waits for every connection to close.
    stop: CancellationToken,
}

/// Binds the listener: done before serving, so a port in use is reported at start.
pub async fn bind(addr: std::net::SocketAddr) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr).await.map_err(|e| anyhow::anyhow!("cannot listen on {addr} (api.listen): {e}"))
}

/// Serves the API until `shutdown`.
pub fn spawn(
    listener: TcpListener,
    live: LiveCell,
    outbox: Outbox,
    rooms: Arc<Rooms>,
    injector: Option<Arc<crate::dev::Injector>>,
    deliveries: Arc<crate::deliveries::Deliveries>,
    shutdown: CancellationToken,
) {
    let with_token = live.load().config.api.token.is_some();
    let injecting = injector.is_some();
    let mut app = Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics_text))
        .route("/send", post(send))
        .route("/rooms", get(list_rooms).post(join_room))
        .route("/rooms/{jid}", delete(leave_room))
        .route("/deliveries", get(deliveries::list))
        .route("/deliveries/live", get(deliveries::live))
        .route("/deliveries/redeliver", post(deliveries::redeliver_since))
        .route("/deliveries/{id}", get(deliveries::one))
        .route("/deliveries/{id}/redeliver", post(deliveries::redeliver))
        .route("/console", get(deliveries::page))
        .route("/console/console.js", get(deliveries::script))
        .route("/console/console.css", get(deliveries::style))
        // The browser asks for it with the page; there is none, and no error to log.
        .route("/favicon.ico", get(|| async { StatusCode::NO_CONTENT }));
    if injecting {
        app = app.route("/inject", post(inject));
    }
    let stop = shutdown.clone();
    let app = app.with_state(Api { live, outbox, rooms, injector, deliveries, stop });
    if let Ok(addr) = listener.local_addr() {
        let calls = if with_token {
            "/healthz, /metrics, /send, /rooms, /deliveries, the console at /console"
        } else if injecting {
            "/healthz, /metrics, /deliveries, the console at /console; /send and /rooms are off without api.token"
        } else {
            "/healthz, /metrics; /send, /rooms and /deliveries are off without api.token"
        };
        let inject = if injecting { ", /inject" } else { "" };
        tracing::info!("operator API on http://{addr} ({calls}{inject})");
    }
    tokio::spawn(async move {
        let served = axum::serve(listener, app).with_graceful_shutdown(shutdown.cancelled_owned()).await;
        if let Err(e) = served {
            tracing::error!("operator API stopped: {e}");
        }
    });
}

async fn healthz(State(api): State<Api>) -> Response {
    let status = health::current();
    let code = if status.connected { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    let rooms: serde_json::Map<String, Value> =
        api.rooms.status().into_iter().map(|room| (room.jid.clone(), room_json(&room))).collect();
    let body = json!({
        "connected": status.connected,
        "since": humantime::format_rfc3339_seconds(status.since).to_string(),
        "last_error": status.last_error,
        "rooms": rooms,
    });
    (code, axum::Json(body)).into_response()
}

async fn metrics_text(State(api): State<Api>) -> Response {
    // The room gauges are read when asked for, so they never lag behind `/healthz`.
    api.rooms.publish_metrics();
    let content_type = HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8");
    (StatusCode::OK, [(header::CONTENT_TYPE, content_type)], metrics::metrics().encode()).into_response()
}

/// `POST /inject`: a test message, as typed at `stanzahook dev`'s prompt. Open without a token
/// (it exists only in the development loop, which its author runs), behind it when one is set.
async fn inject(State(api): State<Api>, headers: HeaderMap, body: Bytes) -> Response {
    let Some(injector) = &api.injector else {
        return refuse(StatusCode::NOT_FOUND, "/inject is only served by `stanzahook dev`");
    };
    if api.live.load().config.api.token.is_some()
        && let Some(refusal) = refused(&api, &headers, "/inject")
    {
        return refusal;
    }
    let Ok(Value::Object(call)) = serde_json::from_slice::<Value>(&body) else {
        return refuse(StatusCode::BAD_REQUEST, "expected a JSON object like {\"body\": \"/ping\"}");
    };
    let text = |key: &str| call.get(key).and_then(Value::as_str);
    let Some(message) = text("body").filter(|b| !b.trim().is_empty()) else {
        return refuse(StatusCode::BAD_REQUEST, "`body` is missing: the text of the test message");
    };
    if let Err(why) = injector.addresses(text("from"), text("to")) {
        return refuse(StatusCode::BAD_REQUEST, why);
    }
    match injector.message(message, text("from"), text("to")).await {
        Ok(id) => (StatusCode::ACCEPTED, axum::Json(json!({ "id": id }))).into_response(),
        Err(e) => refuse(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    }
}

fn refuse(code: StatusCode, why: impl Into<String>) -> Response {
    let why = why.into();
    tracing::warn!("operator API call refused ({}): {why}", code.as_u16());
    (code, axum::Json(json!({ "error": why }))).into_response()
}

/// Compares digests, so the time taken says nothing about how much of the token matched.
fn same_token(given: &str, expected: &str) -> bool {
    Sha256::digest(given.as_bytes()) == Sha256::digest(expected.as_bytes())
}

/// The bearer token check of the calls that act (`/send`, `/rooms`): the refusal, if any.
fn refused(api: &Api, headers: &HeaderMap, what: &str) -> Option<Response> {
    let live = api.live.load();
    let Some(token) = &live.config.api.token else {
        return Some(refuse(StatusCode::FORBIDDEN, format!("{what} is off: set api.token (or STANZAHOOK_API_TOKEN)")));
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    if !given.is_some_and(|g| same_token(g, token.expose())) {
        let mut response = refuse(StatusCode::UNAUTHORIZED, "missing or wrong bearer token");
        response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        return Some(response);
    }
    None
}

/// A room's state as `/healthz` and `GET /rooms` show it.
fn room_json(room: &crate::rooms::RoomStatus) -> Value {
    json!({
        "state": room.phase.as_str(),
        "nick": room.nick,
        "since": humantime::format_rfc3339_seconds(room.since).to_string(),
        "error": room.error,
    })
}

/// `GET /rooms`: every room, its state and where it comes from (README: "Group chat").
async fn list_rooms(State(api): State<Api>, headers: HeaderMap) -> Response {
    if let Some(refusal) = refused(&api, &headers, "/rooms") {
        return refusal;
    }
    let rooms: Vec<Value> = api
        .rooms
        .list()
        .into_iter()
        .map(|(room, source)| {
            let mut json = room_json(&room);
            json["jid"] = room.jid.into();
            json["source"] = source.as_str().into();
            json
        })
        .collect();
    (StatusCode::OK, axum::Json(json!({ "rooms": rooms }))).into_response()
}

/// `POST /rooms`: joins a room at run time, kept for the next start, with the keys of a
/// `[[room]]` entry.
async fn join_room(State(api): State<Api>, headers: HeaderMap, body: Bytes) -> Response {
    if let Some(refusal) = refused(&api, &headers, "/rooms") {
        return refusal;
    }
    let value: Value = match serde_json::from_slice(&body) {
        Ok(value) => value,
        Err(e) => return refuse(StatusCode::BAD_REQUEST, format!("the body is not JSON: {e}")),
    };
    let domain = api.live.load().config.domain.clone();
    let settings = match crate::config::room_from_json(value, &domain) {
        Ok(settings) => settings,
        Err(why) => return refuse(StatusCode::BAD_REQUEST, why),
    };
    let jid = settings.jid.to_string();
    match api.rooms.add(settings) {
        crate::rooms::Added::Joining => {
            tracing::info!(room = jid, "asked to join the room (POST /rooms)");
            (StatusCode::ACCEPTED, axum::Json(json!({ "joining": jid }))).into_response()
        }
        crate::rooms::Added::Already => {
            refuse(StatusCode::CONFLICT, format!("{jid} is already one of the bot's rooms"))
        }
    }
}

/// `DELETE /rooms/{jid}`: leaves a room joined at run time and forgets it.
async fn leave_room(State(api): State<Api>, headers: HeaderMap, Path(jid): Path<String>) -> Response {
    if let Some(refusal) = refused(&api, &headers, "/rooms") {
        return refusal;
    }
    match api.rooms.remove(&jid) {
        crate::rooms::Removed::Left => (StatusCode::OK, axum::Json(json!({ "left": jid }))).into_response(),
        crate::rooms::Removed::Configured => {
            refuse(StatusCode::CONFLICT, format!("{jid} is in the config file: remove its [[room]] entry there"))
        }
        crate::rooms::Removed::Unknown => refuse(StatusCode::NOT_FOUND, format!("{jid} is not one of the bot's rooms")),
    }
}

async fn send(State(api): State<Api>, headers: HeaderMap, body: Bytes) -> Response {
    if let Some(refusal) = refused(&api, &headers, "POST /send") {
        return refusal;
    }
    let live = api.live.load_full();
    let answer: Value = match serde_json::from_slice(&body) {
        Ok(answer) => answer,
        Err(e) => return refuse(StatusCode::BAD_REQUEST, format!("the body is not JSON: {e}")),
    };
    let domain = &live.config.domain;
    // `room` instead of `to`: a groupchat message into a room the bot is in (README: "Group chat"), from
    // its occupant address.
    let (answer, original) = match answer.get("room") {
        Some(Value::String(room)) => {
            let Some(address) = api.rooms.occupant_address(room) else {
                return refuse(StatusCode::CONFLICT, format!("the bot is not in the room {room}"));
            };
            let mut map = answer.as_object().cloned().unwrap_or_default();
            map.remove("room");
            map.insert("to".into(), Value::String(room.clone()));
            map.entry("type").or_insert_with(|| "groupchat".into());
            map.entry("from").or_insert_with(|| Value::String(address.clone()));
            (Value::Object(map), stanza::new_stanza(Kind::Message, room, &address))
        }
        Some(_) => return refuse(StatusCode::BAD_REQUEST, "`room` must be a room's address"),
        None => {
            let Some(to) = answer.get("to").and_then(Value::as_str) else {
                return refuse(StatusCode::BAD_REQUEST, "`to` (or `room`) is required: where to send");
            };
            // As if `to` had written to the component: the reply goes to `to`, from the domain
            // unless the JSON names another address at it.
            let original = stanza::new_stanza(Kind::Message, to, domain);
            (answer, original)
        }
    };
    let replies = match payload::replies(&answer, &original, domain) {
        Ok(replies) => replies,
        Err(e @ AnswerError::ForeignFrom { .. }) => return refuse(StatusCode::FORBIDDEN, e.to_string()),
        Err(e) => return refuse(StatusCode::BAD_REQUEST, e.to_string()),
    };
    let max = live.config.connection.max_stanza_bytes;
    if let Some(size) = replies.iter().map(stanza::xml_len).find(|&size| size > max) {
        return refuse(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the stanza would be {size} bytes, more than connection.max_stanza_size ({max})"),
        );
    }
    let queued = replies.len();
    for reply in replies {
        if let Err((why, _)) = api.outbox.try_send(reply) {
            return refuse(StatusCode::SERVICE_UNAVAILABLE, why);
        }
    }
    tracing::debug!(to = original.attr("from").unwrap_or(""), "queued {queued} stanza(s) from POST /send");
    (StatusCode::ACCEPTED, axum::Json(json!({ "queued": queued }))).into_response()
}
