//! The admin HTTP API (axum): health, readiness, Prometheus metrics, and the
//! delivery operations an operator needs without reading the database —
//! backlog per subscriber, a message's attempts, dead letters, a case's
//! timeline, replay and re-enabling. Described in `docs/openapi.yaml`.
//!
//! Every route, including `/healthz`, requires `Authorization: Bearer
//! <token>` (token from the environment variable `admin.token_env`),
//! compared in constant time. Responses carry pseudonymous references only:
//! case ids, `patient_ref`s, webhook ids, file names and hashes; never a
//! subscriber URL (it may embed credentials) nor a raw hub field.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Path, Query, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;
use crate::setup::Config;
use crate::store::{ReplayCount, ReplayFilter, Store, StoreError};

/// Errors of the admin API.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot listen on {0}: {1}")]
    Bind(std::net::SocketAddr, std::io::Error),
    #[error("server error: {0}")]
    Serve(std::io::Error),
    #[error("not found: {0}")]
    NotFound(String),
    #[error("bad request: {0}")]
    BadRequest(String),
}

impl IntoResponse for AdminError {
    fn into_response(self) -> Response {
        let status = match &self {
            AdminError::NotFound(_) => StatusCode::NOT_FOUND,
            AdminError::BadRequest(_) => StatusCode::BAD_REQUEST,
            AdminError::Store(_) | AdminError::Bind(..) | AdminError::Serve(_) => {
                tracing::error!(error = %self, "admin API request failed");
                StatusCode::INTERNAL_SERVER_ERROR
            }
        };
        (status, Json(serde_json::json!({ "error": self.to_string() }))).into_response()
    }
}

/// What the handlers share.
#[derive(Clone)]
pub struct AdminState {
    pub store: Store,
    pub config: Arc<Config>,
    pub metrics: Arc<Metrics>,
    /// Per subscriber: wakes its worker after a replay or re-enable.
    pub wakers: HashMap<String, Arc<Notify>>,
    pub token: Arc<str>,
}

/// The API's router, with bearer-token authentication on every route. The
/// operator console is merged beside it by [`crate::console::app`], which
/// sits above this module.
pub fn router(state: AdminState) -> Router {
    let token = state.token.clone();
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/v1/subscribers", get(subscribers))
        .route("/v1/subscribers/{name}/enable", post(enable))
        .route("/v1/subscribers/{name}/dead-letters", get(dead_letters))
        .route("/v1/messages/{id}", get(message))
        .route("/v1/messages/{id}/attempts", get(attempts))
        .route("/v1/cases/{program}/{case_id}/timeline", get(timeline))
        .route("/v1/replay", post(replay))
        .route("/v1/journeys/stalls", get(journey_stalls))
        .route("/v1/journeys/stats", get(journey_stats))
        .layer(axum::middleware::from_fn(move |req: Request, next: Next| {
            let token = token.clone();
            async move { authorize(&token, req, next).await }
        }))
        .with_state(state)
}

/// Serves `router` (hardened) until `shutdown`.
pub async fn serve(
    listen: std::net::SocketAddr,
    router: Router,
    shutdown: CancellationToken,
) -> Result<(), AdminError> {
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| AdminError::Bind(listen, e))?;
    tracing::info!(listen = %listener.local_addr().map_err(AdminError::Serve)?, "admin API listening");
    axum::serve(listener, harden(router))
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
        .map_err(AdminError::Serve)
}

/// The largest request body any route accepts (replay filters are small).
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// The most header bytes (names and values) a request may carry.
pub const MAX_HEADER_BYTES: usize = 16 * 1024;

/// Bounds every request, whatever route serves it (the API and anything
/// merged into the router): body size, header size, and no credentials in
/// the query string (URLs end up in proxies' and browsers' logs).
pub fn harden(router: Router) -> Router {
    router
        .layer(axum::middleware::from_fn(bounds))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES))
}

async fn bounds(req: Request, next: Next) -> Response {
    let header_bytes: usize = req
        .headers()
        .iter()
        .map(|(k, v)| k.as_str().len() + v.len())
        .sum();
    if header_bytes > MAX_HEADER_BYTES {
        return (
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            Json(serde_json::json!({ "error": "request headers too large" })),
        )
            .into_response();
    }
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BODY_BYTES as u64) {
        return (
            StatusCode::PAYLOAD_TOO_LARGE,
            Json(serde_json::json!({ "error": "request body too large" })),
        )
            .into_response();
    }
    let credential_in_query = req.uri().query().is_some_and(|q| {
        q.split('&').any(|kv| {
            let k = kv.split('=').next().unwrap_or("").to_ascii_lowercase();
            matches!(
                k.as_str(),
                "token" | "access_token" | "bearer" | "api_key" | "apikey" | "auth"
            )
        })
    });
    if credential_in_query {
        return (
            StatusCode::BAD_REQUEST,
            Json(serde_json::json!({ "error": "credentials are never accepted in the URL; send Authorization: Bearer <token>" })),
        )
            .into_response();
    }
    next.run(req).await
}

async fn authorize(token: &str, req: Request, next: Next) -> Response {
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if !token_matches(given, token) {
        return (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            Json(serde_json::json!({ "error": "missing or wrong bearer token" })),
        )
            .into_response();
    }
    next.run(req).await
}

/// Whether a presented secret is the expected one, in constant time: both
/// are hashed first, so neither the position of the first differing byte
/// nor the length of the expected token shows in the timing. Every check
/// of the admin token (the API's bearer header, the console's login) goes
/// through here.
pub fn token_matches(given: &str, expected: &str) -> bool {
    use sha2::{Digest, Sha256};
    let (a, b) = (
        Sha256::digest(given.as_bytes()),
        Sha256::digest(expected.as_bytes()),
    );
    let diff = a.iter().zip(b.iter()).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    // black_box: the compiler may not turn the fold into an early exit.
    std::hint::black_box(diff) == 0
}

async fn readyz(State(s): State<AdminState>) -> Response {
    match s.store.ping().await {
        Ok(()) => "ready".into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "not ready: the store does not answer");
            (StatusCode::SERVICE_UNAVAILABLE, "store unavailable").into_response()
        }
    }
}

async fn metrics(State(s): State<AdminState>) -> Result<Response, AdminError> {
    let stats = s.store.subscriber_stats().await?;
    let states = s.store.subscriber_states().await?;
    let mut text = s.metrics.render(&stats, &states);
    if !s.config.journeys.is_empty() {
        let open = s.store.journey_open_counts().await?;
        let armed = s.store.journey_armed_counts().await?;
        text.push_str(&crate::metrics::render_journeys(&open, &armed));
    }
    Ok((
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        text,
    )
        .into_response())
}

/// One subscriber's delivery health.
#[derive(Debug, Serialize)]
pub struct SubscriberView {
    pub name: String,
    pub pending: i64,
    /// Pending messages whose last attempt failed (being retried).
    pub failing: i64,
    pub oldest_pending_age_s: Option<f64>,
    pub delivered: i64,
    pub dead_letters: i64,
    pub coalesced: i64,
    pub disabled: bool,
    pub disabled_reason: Option<String>,
    pub parked: bool,
    pub next_probe_at: Option<String>,
}

/// Per-subscriber views for every configured subscriber (also used by `hubsync status`).
pub async fn subscriber_views(store: &Store, config: &Config) -> Result<Vec<SubscriberView>, StoreError> {
    let stats = store.subscriber_stats().await?;
    let states = store.subscriber_states().await?;
    Ok(config
        .subscribers
        .iter()
        .map(|sub| {
            let st = stats.iter().find(|s| s.subscriber == sub.name);
            let state = states.iter().find(|s| s.subscriber == sub.name);
            SubscriberView {
                name: sub.name.clone(),
                pending: st.map_or(0, |s| s.pending),
                failing: st.map_or(0, |s| s.failing),
                oldest_pending_age_s: st.and_then(|s| s.oldest_pending_ms).map(|ms| ms as f64 / 1000.0),
                delivered: st.map_or(0, |s| s.delivered),
                dead_letters: st.map_or(0, |s| s.failed),
                coalesced: st.map_or(0, |s| s.coalesced),
                disabled: state.is_some_and(|s| s.disabled_at.is_some()),
                disabled_reason: state.and_then(|s| s.disabled_reason.clone()),
                parked: state.is_some_and(|s| s.parked_until.is_some()),
                next_probe_at: state
                    .and_then(|s| s.parked_until)
                    .map(crate::deliver::envelope::rfc3339_ms),
            }
        })
        .collect())
}

async fn subscribers(State(s): State<AdminState>) -> Result<Json<Vec<SubscriberView>>, AdminError> {
    Ok(Json(subscriber_views(&s.store, &s.config).await?))
}

fn known(s: &AdminState, name: &str) -> Result<(), AdminError> {
    if s.config.subscribers.iter().any(|x| x.name == name) {
        Ok(())
    } else {
        Err(AdminError::NotFound(format!("subscriber `{name}`")))
    }
}

/// Re-enables a subscriber (disabled by a 410); returns whether it was disabled.
pub async fn enable_subscriber(store: &Store, name: &str) -> Result<bool, StoreError> {
    let Some(mut st) = store
        .subscriber_states()
        .await?
        .into_iter()
        .find(|s| s.subscriber == name)
    else {
        return Ok(false);
    };
    let was = st.disabled_at.is_some();
    st.disabled_at = None;
    st.disabled_reason = None;
    st.disabled_url = None;
    store.set_subscriber_state(&st).await?;
    Ok(was)
}

async fn enable(
    State(s): State<AdminState>,
    Path(name): Path<String>,
) -> Result<Json<serde_json::Value>, AdminError> {
    known(&s, &name)?;
    let was_disabled = enable_subscriber(&s.store, &name).await?;
    if let Some(w) = s.wakers.get(&name) {
        w.notify_one();
    }
    Ok(Json(
        serde_json::json!({ "subscriber": name, "was_disabled": was_disabled }),
    ))
}

#[derive(Debug, Deserialize)]
struct Limit {
    limit: Option<i64>,
}

/// The journey views' query: `program` filters both; `limit` is for the
/// stalls (default 100), `window` for the statistics (default `90d`).
#[derive(Debug, Deserialize)]
struct JourneyQuery {
    program: Option<String>,
    limit: Option<i64>,
    window: Option<String>,
}

/// Open stalls by program and rule, oldest first, with counts.
async fn journey_stalls(
    State(s): State<AdminState>,
    Query(q): Query<JourneyQuery>,
) -> Result<Json<crate::timers::view::StallsView>, AdminError> {
    let limit = q.limit.unwrap_or(100).clamp(1, 10_000);
    Ok(Json(
        crate::timers::view::stalls(&s.store, &s.config, q.program.as_deref(), limit).await?,
    ))
}

/// p50/p90 between milestone pairs per program and payer.
async fn journey_stats(
    State(s): State<AdminState>,
    Query(q): Query<JourneyQuery>,
) -> Result<Json<Vec<crate::timers::stats::PairStats>>, AdminError> {
    let window = crate::config::duration::parse_duration(q.window.as_deref().unwrap_or("90d"))
        .map_err(AdminError::BadRequest)?;
    let mut rows = crate::timers::view::stats(&s.store, &s.config, window).await?;
    if let Some(p) = &q.program {
        rows.retain(|r| &r.program == p);
    }
    Ok(Json(rows))
}

async fn dead_letters(
    State(s): State<AdminState>,
    Path(name): Path<String>,
    Query(q): Query<Limit>,
) -> Result<Json<Vec<crate::store::DeadLetter>>, AdminError> {
    known(&s, &name)?;
    let limit = q.limit.unwrap_or(100).clamp(1, 10_000);
    Ok(Json(s.store.dead_letters(&name, limit).await?))
}

/// A message as the API shows it: metadata, provenance, deliveries, and the
/// payload while retention keeps it.
#[derive(Debug, Serialize)]
struct MessageView {
    #[serde(flatten)]
    row: crate::store::MessageRow,
    /// `data.source.locator`, `data.change` and `data.occurred_at` of the
    /// payload (absent once purged).
    locator: Option<serde_json::Value>,
    change: Option<serde_json::Value>,
    occurred_at: Option<serde_json::Value>,
    payload: Option<serde_json::Value>,
    payload_purged: bool,
}

fn view(mut row: crate::store::MessageRow, with_payload: bool) -> MessageView {
    let body: Option<serde_json::Value> = row.body.take().and_then(|b| serde_json::from_str(&b).ok());
    let pick = |f: &dyn Fn(&serde_json::Value) -> Option<serde_json::Value>| body.as_ref().and_then(f);
    MessageView {
        locator: pick(&|b| b["data"]["source"].get("locator").cloned()),
        change: pick(&|b| b["data"].get("change").cloned()),
        occurred_at: pick(&|b| b["data"].get("occurred_at").cloned()),
        payload_purged: body.is_none(),
        payload: if with_payload { body.clone() } else { None },
        row,
    }
}

async fn message(
    State(s): State<AdminState>,
    Path(id): Path<String>,
) -> Result<Json<MessageView>, AdminError> {
    let row = s
        .store
        .message(&id)
        .await?
        .ok_or_else(|| AdminError::NotFound(format!("message `{id}`")))?;
    Ok(Json(view(row, true)))
}

async fn attempts(
    State(s): State<AdminState>,
    Path(id): Path<String>,
) -> Result<Json<Vec<crate::store::AttemptRow>>, AdminError> {
    if s.store.message(&id).await?.is_none() {
        return Err(AdminError::NotFound(format!("message `{id}`")));
    }
    Ok(Json(s.store.attempts(&id).await?))
}

async fn timeline(
    State(s): State<AdminState>,
    Path((program, case_id)): Path<(String, String)>,
) -> Result<Json<Vec<MessageView>>, AdminError> {
    let rows = s.store.case_timeline(&program, &case_id).await?;
    Ok(Json(rows.into_iter().map(|r| view(r, false)).collect()))
}

/// A replay request; every given criterion must hold.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ReplayRequest {
    pub subscriber: String,
    /// RFC 3339; outbox commit time, inclusive.
    pub since: Option<String>,
    /// RFC 3339; exclusive.
    pub until: Option<String>,
    pub program: Option<String>,
    pub case_id: Option<String>,
    pub message_id: Option<String>,
    #[serde(default)]
    pub failed_only: bool,
}

/// Parses an RFC 3339 time (or a plain date, as midnight UTC) into unix ms.
pub fn parse_time(s: &str) -> Result<i64, String> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        return Ok(t.timestamp_millis());
    }
    chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .map(|d| d.and_time(chrono::NaiveTime::MIN).and_utc().timestamp_millis())
        .map_err(|_| format!("`{s}` is not an RFC 3339 time or a YYYY-MM-DD date"))
}

/// Validates a replay request into a store filter.
pub fn replay_filter(config: &Config, r: &ReplayRequest) -> Result<ReplayFilter, String> {
    let Some(sub) = config.subscribers.iter().find(|s| s.name == r.subscriber) else {
        return Err(format!("no subscriber named `{}`", r.subscriber));
    };
    let since_ms = r.since.as_deref().map(parse_time).transpose()?;
    let until_ms = r.until.as_deref().map(parse_time).transpose()?;
    if let (Some(a), Some(b)) = (since_ms, until_ms) {
        if a >= b {
            return Err("since must be before until".into());
        }
    }
    Ok(ReplayFilter {
        subscriber: r.subscriber.clone(),
        since_ms,
        until_ms,
        program: r.program.clone(),
        case_id: r.case_id.clone(),
        message_id: r.message_id.clone(),
        failed_only: r.failed_only,
        allow_purged: sub.payload == crate::config::PayloadMode::Thin,
    })
}

async fn replay(
    State(s): State<AdminState>,
    Json(r): Json<ReplayRequest>,
) -> Result<Json<ReplayCount>, AdminError> {
    let filter = replay_filter(&s.config, &r).map_err(AdminError::BadRequest)?;
    let count = s.store.replay(&filter).await?;
    tracing::info!(subscriber = %r.subscriber, replayed = count.replayed, purged = count.purged, "replay requested via the admin API");
    if let Some(w) = s.wakers.get(&r.subscriber) {
        w.notify_one();
    }
    Ok(Json(count))
}
