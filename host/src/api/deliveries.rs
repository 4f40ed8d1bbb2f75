//! The deliveries' calls and the console page (README: "Deliveries"):
//! - `GET /deliveries` (query: `limit`, `before`, `status`, `sender`, `since`, `until`): a page,
//!   newest first, and the `next` page's `before`;
//! - `GET /deliveries/{id}`: one, with its filter trail and, when kept, what was posted and answered;
//! - `GET /deliveries/live`: server-sent events, one `delivery` event per delivery recorded or changed;
//! - `POST /deliveries/{id}/redeliver`, `POST /deliveries/redeliver?since=…`;
//! - `GET /console` and its two assets: the page, built into the binary.
//!
//! All but the page are behind the API token (open in `stanzahook dev` when it has none, like
//! `/inject`): they show who wrote to the bot, and with `keep_bodies` what they wrote.

use std::collections::HashMap;
use std::convert::Infallible;
use std::time::Duration;

use axum::extract::{Path, Query as QueryString, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tokio::sync::broadcast::error::RecvError;

use super::{Api, refuse, refused};
use crate::deliveries::{Query, RedeliverError};

const PAGE: &str = include_str!("../deliveries/console/console.html");
const SCRIPT: &str = include_str!("../deliveries/console/console.js");
const STYLE: &str = include_str!("../deliveries/console/console.css");

/// The page loads nothing but its own two files, and nothing may be framed or inlined.
const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

/// The token check of these calls: required, except in `stanzahook dev` without one.
fn guarded(api: &Api, headers: &HeaderMap) -> Option<Response> {
    if api.injector.is_some() && api.live.load().config.api.token.is_none() {
        return None;
    }
    refused(api, headers, "/deliveries")
}

fn asset(content_type: &'static str, text: impl Into<axum::body::Body>) -> Response {
    (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CONTENT_SECURITY_POLICY)),
            (header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff")),
            (header::REFERRER_POLICY, HeaderValue::from_static("no-referrer")),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        ],
        text.into(),
    )
        .into_response()
}

/// The page, saying whether it must ask for the token (`data-login`): asking the API first would
/// log a refusal on every visit.
pub async fn page(State(api): State<Api>) -> Response {
    let login = match (&api.live.load().config.api.token, &api.injector) {
        (Some(_), _) => "token",
        (None, Some(_)) => "open",
        (None, None) => "off",
    };
    let page = PAGE.replacen("<html lang=\"en\">", &format!("<html lang=\"en\" data-login=\"{login}\">"), 1);
    asset("text/html; charset=utf-8", page)
}

pub async fn script() -> Response {
    asset("text/javascript; charset=utf-8", SCRIPT)
}

pub async fn style() -> Response {
    asset("text/css; charset=utf-8", STYLE)
}

pub async fn list(
    State(api): State<Api>,
    headers: HeaderMap,
    QueryString(params): QueryString<HashMap<String, String>>,
) -> Response {
    if let Some(refusal) = guarded(&api, &headers) {
        return refusal;
    }
    let query = match Query::parse(&params) {
        Ok(query) => query,
        Err(why) => return refuse(StatusCode::BAD_REQUEST, why),
    };
    match api.deliveries.page(&query).await {
        Ok((page, next)) => {
            let deliveries: Vec<Value> = page.iter().map(|d| d.summary()).collect();
            (StatusCode::OK, axum::Json(json!({ "deliveries": deliveries, "next": next }))).into_response()
        }
        Err(e) => refuse(StatusCode::INTERNAL_SERVER_ERROR, format!("cannot read the deliveries: {e:#}")),
    }
}

fn not_an_id(text: &str) -> Response {
    refuse(StatusCode::BAD_REQUEST, format!("{text:?} is not a delivery's id"))
}

pub async fn one(State(api): State<Api>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    if let Some(refusal) = guarded(&api, &headers) {
        return refusal;
    }
    let Ok(id) = id.parse::<u64>() else { return not_an_id(&id) };
    match api.deliveries.get(id).await {
        Ok(Some(d)) => (StatusCode::OK, axum::Json(d.detail())).into_response(),
        Ok(None) => refuse(StatusCode::NOT_FOUND, RedeliverError::Unknown(id).to_string()),
        Err(e) => refuse(StatusCode::INTERNAL_SERVER_ERROR, format!("cannot read delivery {id}: {e:#}")),
    }
}

fn redeliver_refusal(e: &RedeliverError) -> Response {
    let code = match e {
        RedeliverError::Unknown(_) => StatusCode::NOT_FOUND,
        RedeliverError::NotKept(_) | RedeliverError::Already(..) => StatusCode::CONFLICT,
        RedeliverError::Broken(..) => StatusCode::INTERNAL_SERVER_ERROR,
        RedeliverError::ShuttingDown => StatusCode::SERVICE_UNAVAILABLE,
    };
    refuse(code, e.to_string())
}

pub async fn redeliver(State(api): State<Api>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    if let Some(refusal) = guarded(&api, &headers) {
        return refusal;
    }
    let Ok(id) = id.parse::<u64>() else { return not_an_id(&id) };
    match api.deliveries.redeliver(id).await {
        Ok(new) => (StatusCode::ACCEPTED, axum::Json(json!({ "id": new, "redelivery_of": id }))).into_response(),
        Err(e) => redeliver_refusal(&e),
    }
}

pub async fn redeliver_since(
    State(api): State<Api>,
    headers: HeaderMap,
    QueryString(params): QueryString<HashMap<String, String>>,
) -> Response {
    if let Some(refusal) = guarded(&api, &headers) {
        return refusal;
    }
    let Some(since) = params.get("since") else {
        return refuse(StatusCode::BAD_REQUEST, "`since` is required: redeliver the failed deliveries since when");
    };
    let since = match crate::deliveries::query::time(since.trim(), "since") {
        Ok(since) => since,
        Err(why) => return refuse(StatusCode::BAD_REQUEST, why),
    };
    match api.deliveries.redeliver_since(since).await {
        Ok(pairs) => {
            let redelivering: Vec<Value> =
                pairs.iter().map(|(id, of)| json!({"id": id, "redelivery_of": of})).collect();
            (StatusCode::ACCEPTED, axum::Json(json!({ "redelivering": redelivering }))).into_response()
        }
        Err(e) => refuse(StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}")),
    }
}

/// Every delivery recorded or changed from now on, as it happens; a watcher too slow to keep up
/// is told how many it missed (and can reload the list).
pub async fn live(State(api): State<Api>, headers: HeaderMap) -> Response {
    if let Some(refusal) = guarded(&api, &headers) {
        return refusal;
    }
    let receiver = api.deliveries.subscribe();
    let hello = futures::stream::once(async { Ok::<_, Infallible>(Event::default().comment("live")) });
    let events = futures::stream::unfold(receiver, |mut receiver| async move {
        let event = match receiver.recv().await {
            Ok(delivery) => Event::default().event("delivery").data(delivery.summary().to_string()),
            Err(RecvError::Lagged(missed)) => Event::default().event("missed").data(missed.to_string()),
            Err(RecvError::Closed) => return None,
        };
        Some((Ok::<_, Infallible>(event), receiver))
    });
    use futures::StreamExt as _;
    Sse::new(hello.chain(events).take_until(api.stop.clone().cancelled_owned()))
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)).text("ping"))
        .into_response()
}
