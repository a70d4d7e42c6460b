//! The operator console: server-rendered pages on the admin server, for the
//! people who run a program and the engineer on call. Feeds (files and their
//! reconciliation, rejects, missed drops), subscribers (backlog, breaker,
//! dead letters, replay and re-enable), case journeys, trends, and the audit
//! log of every operator action.
//!
//! Security: the admin bearer token is typed once into a login form, which
//! starts a server-side session ([`session`]); the browser holds only a
//! random id in an HttpOnly, SameSite=Strict cookie (Secure when the public
//! URL is https). Every POST carries the session's CSRF token in a hidden
//! field. Every page is sent with a CSP that allows only this server's own
//! script and stylesheet (no inline code), `X-Frame-Options: DENY`, `nosniff`
//! and `no-referrer`. Pages show pseudonymous references only (case ids,
//! `patient_ref`s, file names): never a raw hub field, a name or a date of
//! birth, nor a subscriber URL. `[admin] console = false` turns it all off.

mod chart;
mod pages;
pub mod session;

use std::sync::Arc;

use axum::extract::{Path, Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{any, get, post};
use axum::{Extension, Form, Router};
use serde::Deserialize;

use crate::admin::{AdminState, ReplayRequest};
use crate::store::{AuditEntry, FileQuery, ReplayFilter, StoreError};
use session::{Current, Sessions, COOKIE, LOGIN_COOKIE};

/// Errors of a console page: shown as a page, not as JSON.
#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Forbidden(String),
}

impl IntoResponse for ConsoleError {
    fn into_response(self) -> Response {
        let (status, title) = match &self {
            ConsoleError::NotFound(_) => (StatusCode::NOT_FOUND, "Not found"),
            ConsoleError::BadRequest(_) => (StatusCode::BAD_REQUEST, "That did not work"),
            ConsoleError::Forbidden(_) => (StatusCode::FORBIDDEN, "Not allowed"),
            ConsoleError::Store(e) => {
                tracing::error!(error = %e, "console page failed");
                (StatusCode::INTERNAL_SERVER_ERROR, "The store did not answer")
            }
        };
        let detail = match &self {
            ConsoleError::Store(_) => {
                "hubsync could not read its database. The daemon's log says why; try again in a moment."
                    .to_string()
            }
            other => other.to_string(),
        };
        (status, html(pages::error_page(title, &detail))).into_response()
    }
}

/// What console handlers share.
#[derive(Clone)]
pub struct ConsoleState {
    pub admin: AdminState,
    pub sessions: Arc<Sessions>,
    /// Cookies get `Secure` when the console is reached over https.
    pub secure: bool,
}

/// Everything the admin listener serves: the API and, unless `[admin]
/// console = false`, the operator console under `/console` (which has its
/// own login) with `/` redirecting to it.
pub fn app(state: AdminState) -> Router {
    let console = state.config.admin.as_ref().is_some_and(|a| a.console);
    let api = crate::admin::router(state.clone());
    if console {
        api.route(
            "/",
            axum::routing::get(|| async { axum::response::Redirect::to("/console/feeds") }),
        )
        .merge(router(state))
    } else {
        api
    }
}

/// The console's routes (under `/console`), with their security headers.
pub fn router(admin: AdminState) -> Router {
    let secure = admin
        .config
        .admin
        .as_ref()
        .is_some_and(|a| a.public_url.starts_with("https://"));
    let state = ConsoleState {
        admin,
        sessions: Arc::default(),
        secure,
    };
    let signed_in = Router::new()
        .route("/console", get(|| async { Redirect::to("/console/feeds") }))
        .route("/console/", get(|| async { Redirect::to("/console/feeds") }))
        .route("/console/feeds", get(feeds))
        .route("/console/feeds/{connector}", get(feed))
        .route("/console/files/{id}", get(file))
        .route("/console/subscribers", get(subscribers))
        .route("/console/subscribers/{name}", get(subscriber))
        .route("/console/subscribers/{name}/replay", post(replay))
        .route("/console/subscribers/{name}/enable", post(enable))
        .route("/console/cases", get(cases))
        .route("/console/trends", get(trends))
        .route("/console/activity", get(activity))
        .route("/console/logout", post(logout))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            require_session,
        ));
    Router::new()
        .merge(signed_in)
        .route("/console/login", get(login_form).post(login))
        .route("/console/static/console.css", get(css))
        .route("/console/static/console.js", get(js))
        .route(
            "/console/{*rest}",
            any(|| async { ConsoleError::NotFound("There is no such page.".into()) }),
        )
        .layer(axum::middleware::from_fn(security_headers))
        .with_state(state)
}

fn html(markup: maud::Markup) -> Response {
    (
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        markup.into_string(),
    )
        .into_response()
}

const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; \
                   base-uri 'none'; form-action 'self'; frame-ancestors 'none'; object-src 'none'";

async fn security_headers(req: Request, next: Next) -> Response {
    let is_static = req.uri().path().starts_with("/console/static/");
    let mut resp = next.run(req).await;
    let h = resp.headers_mut();
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert(
        "cross-origin-opener-policy",
        HeaderValue::from_static("same-origin"),
    );
    if !is_static {
        // Pages carry case ids and operational detail: keep them out of caches.
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    resp
}

async fn css() -> Response {
    static_asset("text/css; charset=utf-8", include_str!("assets/console.css"))
}

async fn js() -> Response {
    static_asset(
        "text/javascript; charset=utf-8",
        include_str!("assets/console.js"),
    )
}

fn static_asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "private, max-age=300"),
        ],
        body,
    )
        .into_response()
}

// ------------------------------------------------------------ sessions

fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

fn set_cookie(state: &ConsoleState, name: &str, value: &str, path: &str, max_age: u64) -> HeaderValue {
    let secure = if state.secure { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{name}={value}; Path={path}; Max-Age={max_age}; HttpOnly; SameSite=Strict{secure}"
    ))
    .expect("cookie values are hex tokens and fixed names")
}

/// Pages need a session: without one, GETs go to the login form and POSTs
/// are refused. A cross-site POST is refused even with one (SameSite=Strict
/// keeps the cookie off it anyway; this is the second lock).
async fn require_session(State(state): State<ConsoleState>, mut req: Request, next: Next) -> Response {
    let current = cookie(req.headers(), COOKIE).and_then(|id| state.sessions.get(id));
    let Some(current) = current else {
        if req.method() == Method::GET {
            return Redirect::to("/console/login").into_response();
        }
        return ConsoleError::Forbidden(
            "Your session has ended. Log in again, then repeat the action.".into(),
        )
        .into_response();
    };
    if req.method() == Method::POST && cross_site(req.headers()) {
        return ConsoleError::Forbidden("A form from another site cannot act on this console.".into())
            .into_response();
    }
    req.extensions_mut().insert(current);
    next.run(req).await
}

/// Whether the browser says the request came from another site.
fn cross_site(headers: &HeaderMap) -> bool {
    headers
        .get("sec-fetch-site")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == "cross-site" || v == "same-site")
}

fn check_csrf(current: &Current, given: &str) -> Result<(), ConsoleError> {
    if session::same(&current.csrf, given) {
        Ok(())
    } else {
        Err(ConsoleError::Forbidden(
            "This form is out of date (or came from elsewhere). Reload the page and try again.".into(),
        ))
    }
}

#[derive(Debug, Deserialize)]
struct LoginQuery {
    signed_out: Option<String>,
}

async fn login_form(
    State(state): State<ConsoleState>,
    headers: HeaderMap,
    Query(q): Query<LoginQuery>,
) -> Response {
    if cookie(&headers, COOKIE)
        .and_then(|id| state.sessions.get(id))
        .is_some()
    {
        return Redirect::to("/console/feeds").into_response();
    }
    let message = q.signed_out.map(|_| "You are signed out.".to_string());
    login_page(&state, StatusCode::OK, message.as_deref(), None, "")
}

fn login_page(
    state: &ConsoleState,
    status: StatusCode,
    message: Option<&str>,
    error: Option<&str>,
    operator: &str,
) -> Response {
    let token = session::random_token();
    let mut resp = (status, html(pages::login(&token, message, error, operator))).into_response();
    resp.headers_mut().insert(
        header::SET_COOKIE,
        set_cookie(state, LOGIN_COOKIE, &token, "/console/login", 900),
    );
    resp
}

#[derive(Debug, Deserialize)]
struct LoginForm {
    csrf: String,
    operator: String,
    token: String,
}

/// The longest operator name kept (it goes into the audit log).
const MAX_OPERATOR: usize = 64;

async fn login(State(state): State<ConsoleState>, headers: HeaderMap, Form(f): Form<LoginForm>) -> Response {
    let form_ok = cookie(&headers, LOGIN_COOKIE).is_some_and(|c| session::same(c, &f.csrf));
    if !form_ok || cross_site(&headers) {
        return login_page(
            &state,
            StatusCode::FORBIDDEN,
            None,
            Some("The form had expired. It is fresh now: enter your name and the token again."),
            "",
        );
    }
    let operator = f.operator.trim();
    if operator.is_empty()
        || operator.chars().count() > MAX_OPERATOR
        || operator.chars().any(char::is_control)
    {
        return login_page(
            &state,
            StatusCode::BAD_REQUEST,
            None,
            Some("Enter your name (up to 64 characters): it is recorded with every action you take."),
            "",
        );
    }
    if !crate::admin::token_matches(f.token.trim(), &state.admin.token) {
        tracing::warn!(operator, "console login refused: wrong token");
        // Slows guessing from one client; the token has 16+ characters anyway.
        tokio::time::sleep(std::time::Duration::from_millis(400)).await;
        return login_page(
            &state,
            StatusCode::UNAUTHORIZED,
            None,
            Some("That token is not right. It is the admin API's bearer token (the environment variable named by token_env in the [admin] table)."),
            operator,
        );
    }
    let id = state.sessions.create(operator);
    if let Err(e) = audit(&state, operator, "login", "", "signed in").await {
        state.sessions.remove(&id);
        return e.into_response();
    }
    let mut resp = Redirect::to("/console/feeds").into_response();
    let h = resp.headers_mut();
    h.append(
        header::SET_COOKIE,
        set_cookie(&state, COOKIE, &id, "/console", session::MAX_AGE.as_secs()),
    );
    h.append(
        header::SET_COOKIE,
        set_cookie(&state, LOGIN_COOKIE, "", "/console/login", 0),
    );
    resp
}

#[derive(Debug, Deserialize)]
struct CsrfOnly {
    csrf: String,
}

async fn logout(
    State(state): State<ConsoleState>,
    Extension(current): Extension<Current>,
    Form(f): Form<CsrfOnly>,
) -> Result<Response, ConsoleError> {
    check_csrf(&current, &f.csrf)?;
    state.sessions.remove(&current.id);
    audit(&state, &current.operator, "logout", "", "signed out").await?;
    let mut resp = Redirect::to("/console/login?signed_out=1").into_response();
    resp.headers_mut()
        .insert(header::SET_COOKIE, set_cookie(&state, COOKIE, "", "/console", 0));
    Ok(resp)
}

/// Writes an audit entry and the matching log line (no PHI in either:
/// subscriber names, webhook ids, time ranges, counts).
async fn audit(
    state: &ConsoleState,
    operator: &str,
    action: &str,
    target: &str,
    detail: &str,
) -> Result<(), ConsoleError> {
    state
        .admin
        .store
        .audit_record(&AuditEntry {
            at_ms: crate::store::now_ms(),
            operator: operator.to_string(),
            action: action.to_string(),
            target: target.to_string(),
            detail: detail.to_string(),
        })
        .await?;
    tracing::info!(operator, action, target, detail, "console action");
    Ok(())
}

// ------------------------------------------------------------ pages

/// How far back trends and "recent" lists look.
const TREND_DAYS: i64 = 30;
const DAY_MS: i64 = 86_400_000;

async fn feeds(
    State(state): State<ConsoleState>,
    Extension(current): Extension<Current>,
) -> Result<Response, ConsoleError> {
    let store = &state.admin.store;
    let mut latest = Vec::new();
    for c in &state.admin.config.connectors {
        let q = FileQuery {
            connector: Some(c.name.clone()),
            limit: 1,
            ..Default::default()
        };
        latest.push((&**c, store.file_summaries(&q).await?.into_iter().next()));
    }
    let failed = store
        .file_summaries(&FileQuery {
            failed_only: true,
            since_ms: Some(crate::store::now_ms() - TREND_DAYS * DAY_MS),
            limit: 50,
            ..Default::default()
        })
        .await?;
    let missing = store.missing_drops(50).await?;
    Ok(html(pages::feeds(&current, &latest, &failed, &missing)))
}

fn connector<'a>(state: &'a ConsoleState, name: &str) -> Result<&'a crate::setup::Connector, ConsoleError> {
    state
        .admin
        .config
        .connectors
        .iter()
        .find(|c| c.name == name)
        .map(|c| &**c)
        .ok_or_else(|| ConsoleError::NotFound(format!("There is no feed named “{name}”.")))
}

async fn feed(
    State(state): State<ConsoleState>,
    Extension(current): Extension<Current>,
    Path(name): Path<String>,
) -> Result<Response, ConsoleError> {
    let c = connector(&state, &name)?;
    let files = state
        .admin
        .store
        .file_summaries(&FileQuery {
            connector: Some(c.name.clone()),
            limit: 100,
            ..Default::default()
        })
        .await?;
    let missing: Vec<_> = state
        .admin
        .store
        .missing_drops(200)
        .await?
        .into_iter()
        .filter(|m| m.connector == c.name)
        .collect();
    let since = crate::store::now_ms() - TREND_DAYS * DAY_MS;
    Ok(html(pages::feed(&current, c, &files, &missing, since)))
}

async fn file(
    State(state): State<ConsoleState>,
    Extension(current): Extension<Current>,
    Path(id): Path<String>,
) -> Result<Response, ConsoleError> {
    let not_found = || ConsoleError::NotFound("There is no such file in the ledger.".into());
    let id: i64 = id.parse().map_err(|_| not_found())?;
    let store = &state.admin.store;
    let summary = store.file_summary(id).await?.ok_or_else(not_found)?;
    let rejects = store.rejects(id).await?;
    let deltas = store.file_messages(id, pages::MAX_DELTAS as i64).await?;
    Ok(html(pages::file(&current, &summary, &rejects, &deltas)))
}

async fn subscribers(
    State(state): State<ConsoleState>,
    Extension(current): Extension<Current>,
) -> Result<Response, ConsoleError> {
    let views = crate::admin::subscriber_views(&state.admin.store, &state.admin.config).await?;
    let tallies = state
        .admin
        .store
        .attempt_tallies(crate::store::now_ms() - DAY_MS)
        .await?;
    Ok(html(pages::subscribers(&current, &views, &tallies)))
}

fn subscriber_view(
    views: Vec<crate::admin::SubscriberView>,
    name: &str,
) -> Result<crate::admin::SubscriberView, ConsoleError> {
    views
        .into_iter()
        .find(|v| v.name == name)
        .ok_or_else(|| ConsoleError::NotFound(format!("There is no subscriber named “{name}”.")))
}

async fn subscriber(
    State(state): State<ConsoleState>,
    Extension(current): Extension<Current>,
    Path(name): Path<String>,
) -> Result<Response, ConsoleError> {
    let store = &state.admin.store;
    let view = subscriber_view(
        crate::admin::subscriber_views(store, &state.admin.config).await?,
        &name,
    )?;
    let tally = store
        .attempt_tallies(crate::store::now_ms() - DAY_MS)
        .await?
        .into_iter()
        .find(|t| t.subscriber == name)
        .unwrap_or_default();
    let dead = store.dead_letters(&name, pages::MAX_DEAD_LETTERS as i64).await?;
    Ok(html(pages::subscriber(&current, &view, &tally, &dead)))
}

/// The replay form: one message (`message_id`) or a time range, in two
/// steps: without `confirm` it shows what would be replayed; with it, does it.
#[derive(Debug, Deserialize, Default)]
pub struct ReplayForm {
    csrf: String,
    #[serde(default)]
    message_id: String,
    /// `YYYY-MM-DDTHH:MM` (a `datetime-local` field), read as UTC.
    #[serde(default)]
    since: String,
    #[serde(default)]
    until: String,
    /// Checkbox: present when ticked.
    failed_only: Option<String>,
    confirm: Option<String>,
}

/// A `datetime-local` value (or RFC 3339, or a date) as an RFC 3339 UTC time.
fn form_time(s: &str) -> Option<String> {
    let s = s.trim();
    if s.is_empty() {
        return None;
    }
    for fmt in ["%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S"] {
        if let Ok(t) = chrono::NaiveDateTime::parse_from_str(s, fmt) {
            return Some(t.and_utc().to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
        }
    }
    Some(s.to_string())
}

impl ReplayForm {
    fn request(&self, subscriber: &str) -> ReplayRequest {
        let nonempty = |s: &str| (!s.trim().is_empty()).then(|| s.trim().to_string());
        ReplayRequest {
            subscriber: subscriber.to_string(),
            since: form_time(&self.since),
            until: form_time(&self.until),
            message_id: nonempty(&self.message_id),
            failed_only: self.failed_only.is_some(),
            ..Default::default()
        }
    }
}

/// What a replay request asks for, in words (the confirmation page and the audit log).
fn describe(r: &ReplayRequest) -> String {
    let mut parts = Vec::new();
    if let Some(m) = &r.message_id {
        parts.push(format!("message {m}"));
    }
    match (&r.since, &r.until) {
        (Some(a), Some(b)) => parts.push(format!("committed from {a} to {b}")),
        (Some(a), None) => parts.push(format!("committed since {a}")),
        (None, Some(b)) => parts.push(format!("committed before {b}")),
        (None, None) => {}
    }
    if r.failed_only {
        parts.push("dead letters only".into());
    }
    parts.join(", ")
}

async fn replay(
    State(state): State<ConsoleState>,
    Extension(current): Extension<Current>,
    Path(name): Path<String>,
    Form(f): Form<ReplayForm>,
) -> Result<Response, ConsoleError> {
    check_csrf(&current, &f.csrf)?;
    let admin = &state.admin;
    subscriber_view(
        crate::admin::subscriber_views(&admin.store, &admin.config).await?,
        &name,
    )?;
    let req = f.request(&name);
    if req.message_id.is_none() && req.since.is_none() && req.until.is_none() && !req.failed_only {
        return Err(ConsoleError::BadRequest(
            "Say what to replay: one message, a time range, or “dead letters only”.".into(),
        ));
    }
    let filter: ReplayFilter =
        crate::admin::replay_filter(&admin.config, &req).map_err(ConsoleError::BadRequest)?;
    let mut what = describe(&req);
    if let Some(m) = req.message_id.as_deref() {
        match admin.store.message(m).await? {
            Some(row) => what.push_str(&format!(
                " (case {}, {})",
                row.case_id,
                pages::milestone_label(&row.milestone)
            )),
            None => return Err(ConsoleError::NotFound(format!("There is no message {m}."))),
        }
    }
    if f.confirm.as_deref() != Some("yes") {
        let preview = admin.store.replay_preview(&filter).await?;
        return Ok(html(pages::confirm_replay(&current, &name, &f, &what, preview)));
    }
    let count = admin.store.replay(&filter).await?;
    if let Some(w) = admin.wakers.get(&name) {
        w.notify_one();
    }
    let detail = format!(
        "{what}: {} queued again, {} skipped (payload purged)",
        count.replayed, count.purged
    );
    audit(&state, &current.operator, "replay", &name, &detail).await?;
    let msg = match count.replayed {
        0 => "Nothing was replayed: no delivered or failed message matched.".to_string(),
        1 => format!("1 message queued again for {name}, with its original webhook-id and body."),
        n => format!("{n} messages queued again for {name}, with their original webhook-ids and bodies."),
    };
    state.sessions.flash(&current.id, msg);
    Ok(Redirect::to(&format!("/console/subscribers/{}", pages::enc(&name))).into_response())
}

#[derive(Debug, Deserialize)]
struct EnableForm {
    csrf: String,
    confirm: Option<String>,
}

async fn enable(
    State(state): State<ConsoleState>,
    Extension(current): Extension<Current>,
    Path(name): Path<String>,
    Form(f): Form<EnableForm>,
) -> Result<Response, ConsoleError> {
    check_csrf(&current, &f.csrf)?;
    let admin = &state.admin;
    let view = subscriber_view(
        crate::admin::subscriber_views(&admin.store, &admin.config).await?,
        &name,
    )?;
    if f.confirm.as_deref() != Some("yes") {
        return Ok(html(pages::confirm_enable(&current, &view)));
    }
    let was = crate::admin::enable_subscriber(&admin.store, &name).await?;
    if let Some(w) = admin.wakers.get(&name) {
        w.notify_one();
    }
    let detail = if was {
        "re-enabled"
    } else {
        "was not disabled; nothing changed"
    };
    audit(&state, &current.operator, "enable", &name, detail).await?;
    let msg = if was {
        format!("{name} is enabled again: its pending messages are being sent.")
    } else {
        format!("{name} was not disabled; nothing changed.")
    };
    state.sessions.flash(&current.id, msg);
    Ok(Redirect::to(&format!("/console/subscribers/{}", pages::enc(&name))).into_response())
}

#[derive(Debug, Deserialize)]
struct CaseQuery {
    program: Option<String>,
    case_id: Option<String>,
}

async fn cases(
    State(state): State<ConsoleState>,
    Extension(current): Extension<Current>,
    Query(q): Query<CaseQuery>,
) -> Result<Response, ConsoleError> {
    let store = &state.admin.store;
    let mut programs: Vec<String> = state
        .admin
        .config
        .connectors
        .iter()
        .map(|c| c.program.clone())
        .collect();
    programs.sort();
    programs.dedup();
    let program = q.program.map(|p| p.trim().to_string()).filter(|p| !p.is_empty());
    let case_id = q.case_id.map(|c| c.trim().to_string()).filter(|c| !c.is_empty());
    let search = pages::CaseSearch {
        programs,
        program: program.clone(),
        case_id: case_id.clone(),
    };
    match (program, case_id) {
        (Some(p), Some(c)) => {
            let rows = store.case_timeline(&p, &c).await?;
            let timers = store.journey_case(&p, &c).await?;
            let entries = pages::timeline(rows, timers, &state.admin.config.journeys);
            Ok(html(pages::case(&current, &search, &entries)))
        }
        _ => {
            let recent = store.recent_cases(25).await?;
            Ok(html(pages::cases(&current, &search, &recent)))
        }
    }
}

/// Latencies per subscriber come from at most this many latest deliveries.
const LATENCY_SAMPLE: i64 = 20_000;

async fn trends(
    State(state): State<ConsoleState>,
    Extension(current): Extension<Current>,
) -> Result<Response, ConsoleError> {
    let store = &state.admin.store;
    let since = crate::store::now_ms() - TREND_DAYS * DAY_MS;
    let mut feeds = Vec::new();
    for c in &state.admin.config.connectors {
        let mut files = store
            .file_summaries(&FileQuery {
                connector: Some(c.name.clone()),
                since_ms: Some(since),
                limit: 500,
                ..Default::default()
            })
            .await?;
        files.reverse();
        feeds.push((c.name.clone(), files));
    }
    let mut subs = Vec::new();
    for s in &state.admin.config.subscribers {
        let lat = store.delivery_latencies(&s.name, since, LATENCY_SAMPLE).await?;
        subs.push((s.name.clone(), lat));
    }
    Ok(html(pages::trends(&current, &feeds, &subs, since)))
}

async fn activity(
    State(state): State<ConsoleState>,
    Extension(current): Extension<Current>,
) -> Result<Response, ConsoleError> {
    let entries = state.admin.store.audit_recent(200).await?;
    Ok(html(pages::activity(&current, &entries)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_are_read_by_exact_name() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; hubsync_session_x=2; hubsync_session=abc"),
        );
        assert_eq!(cookie(&h, COOKIE), Some("abc"));
        assert_eq!(cookie(&h, "a"), Some("1"));
        assert_eq!(cookie(&h, "b"), None);
    }

    #[test]
    fn form_times_are_utc() {
        assert_eq!(
            form_time("2026-11-22T06:30").as_deref(),
            Some("2026-11-22T06:30:00Z")
        );
        assert_eq!(form_time("  "), None);
        assert_eq!(form_time("2026-11-22").as_deref(), Some("2026-11-22"));
        let r = ReplayForm {
            since: "2026-11-22T06:30".into(),
            failed_only: Some("on".into()),
            ..Default::default()
        }
        .request("mfr");
        assert_eq!(
            describe(&r),
            "committed since 2026-11-22T06:30:00Z, dead letters only"
        );
    }
}
