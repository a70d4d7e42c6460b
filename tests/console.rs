//! The operator console (issue 17): every page and action, through the real
//! router (`oneshot`), against a real SQLite store filled by the daemon
//! ingesting the fixtures and delivering to a real receiver that verifies
//! signatures; a PHI sweep of every page; and the browser test (Debian's
//! Chromium driven by playwright-core, axe-core for accessibility).

mod support;

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use axum::Router;
use support::{fixture, free_port, poll_until, repo, wait_admin, Hub, Recorder, Running, ADMIN_TOKEN};
use tower::ServiceExt;

/// The case whose messages the receiver refuses on their first attempt: with
/// an empty retry schedule each becomes a dead letter, and a replay delivers it.
const DEAD_CASE: &str = "AC-100203";
const PROGRAM: &str = "ACME-ONC";
const OPERATOR: &str = "Dana Tester";

/// The files ingested, in order: two nights, one with bad rows, one refused.
const FILES: [&str; 4] = [
    "status_20261122.csv",
    "status_bad_rows.csv",
    "status_wrong_header.csv",
    "status_20261123.csv",
];

/// A daemon that has ingested the fixtures and delivered them, with
/// [`DEAD_CASE`]'s messages dead-lettered.
struct World {
    hub: Hub,
    rx: Recorder,
    port: u16,
    daemon: Option<Running>,
}

async fn world(console: bool) -> World {
    world_with_rules(console, None).await
}

/// [`world`], with `rules` as the program's journey rule file (if any).
async fn world_with_rules(console: bool, rules: Option<&str>) -> World {
    let rx = Recorder::start().await;
    let failed_once: Arc<Mutex<HashSet<String>>> = Arc::default();
    rx.respond(move |hit, _| {
        let case = hit.json["data"]["case_id"].as_str().unwrap_or("");
        let first = failed_once
            .lock()
            .expect("responder lock")
            .insert(hit.id().to_string());
        if case == DEAD_CASE && first {
            (500, vec![])
        } else {
            (204, vec![])
        }
    });
    let port = free_port();
    let hub = Hub::new(&rx.url("/webhooks"), "", "", 1000);
    hub.set_tail(&format!(
        "[[subscribers]]\nname = \"mfr\"\nurl = \"{}\"\nsecret_env = \"HUBSYNC_TEST_SECRET\"\ntimeout = \"5s\"\n\
         retry_schedule = []\nbreaker_failures = 0\n\
         [admin]\nlisten = \"127.0.0.1:{port}\"\ntoken_env = \"HUBSYNC_TEST_ADMIN_TOKEN\"\nconsole = {console}\n",
        rx.url("/webhooks")
    ));
    if let Some(rules) = rules {
        let dir = hub.root().join("journeys");
        std::fs::create_dir_all(&dir).expect("mkdir journeys");
        std::fs::write(dir.join("acme-onc.toml"), rules).expect("write rules");
    }
    let daemon = hub.start();
    wait_admin(port).await;
    for name in FILES {
        hub.drop_file(&fixture(name), name);
        hub.wait_drained(Duration::from_secs(20)).await;
    }
    // Every message settled: nothing pending.
    let store = hub.store().await;
    let mut settled = false;
    for _ in 0..500 {
        let stats = store.subscriber_stats().await.expect("stats");
        if stats.iter().all(|s| s.pending == 0) && stats.iter().any(|s| s.failed > 0) {
            settled = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(settled, "deliveries did not settle");
    store.close().await;
    World {
        hub,
        rx,
        port,
        daemon: Some(daemon),
    }
}

impl World {
    /// The admin router over its own store handle (the daemon keeps running).
    async fn router(&self) -> Router {
        let config = Arc::new(self.hub.load());
        let state = hubsync::admin::AdminState {
            store: self.hub.store().await,
            metrics: Arc::new(hubsync::metrics::Metrics::new(
                config.subscribers.iter().map(|s| s.name.as_str()),
            )),
            config,
            wakers: HashMap::new(),
            token: ADMIN_TOKEN.into(),
        };
        hubsync::console::app(state)
    }

    async fn stop(mut self) {
        if let Some(d) = self.daemon.take() {
            d.stop().await;
        }
    }
}

/// A response, read whole.
struct Page {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    body: String,
}

impl Page {
    fn location(&self) -> &str {
        self.headers
            .get(header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    fn set_cookies(&self) -> Vec<String> {
        self.headers
            .get_all(header::SET_COOKIE)
            .iter()
            .map(|v| v.to_str().expect("ascii cookie").to_string())
            .collect()
    }

    /// The value of the first `name="csrf"` hidden field.
    fn csrf(&self) -> String {
        let at = self
            .body
            .find("name=\"csrf\" value=\"")
            .expect("page has a csrf field")
            + 19;
        self.body[at..at + 64].to_string()
    }
}

async fn send(app: &Router, req: Request<Body>) -> Page {
    let resp = app.clone().oneshot(req).await.expect("router answers");
    let status = resp.status();
    let headers = resp.headers().clone();
    let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .expect("body");
    Page {
        status,
        headers,
        body: String::from_utf8(bytes.to_vec()).expect("utf-8 body"),
    }
}

fn get(path: &str, cookie: Option<&str>) -> Request<Body> {
    let mut b = Request::get(path);
    if let Some(c) = cookie {
        b = b.header(header::COOKIE, c);
    }
    b.body(Body::empty()).expect("request builds")
}

fn post(path: &str, cookie: Option<&str>, form: &[(&str, &str)]) -> Request<Body> {
    let body = form
        .iter()
        .map(|(k, v)| format!("{k}={}", urlencode(v)))
        .collect::<Vec<_>>()
        .join("&");
    let mut b = Request::post(path).header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
    if let Some(c) = cookie {
        b = b.header(header::COOKIE, c);
    }
    b.body(Body::from(body)).expect("request builds")
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// `name=value` of a Set-Cookie header.
fn cookie_pair(set_cookie: &str) -> String {
    set_cookie.split(';').next().expect("a cookie").trim().to_string()
}

/// Logs in through the form; returns the session cookie (`name=value`).
async fn login(app: &Router) -> String {
    let form = send(app, get("/console/login", None)).await;
    assert_eq!(form.status, StatusCode::OK);
    let login_cookie = cookie_pair(&form.set_cookies()[0]);
    let csrf = form.csrf();
    assert_eq!(
        login_cookie,
        format!("hubsync_login={csrf}"),
        "double-submit token"
    );
    let resp = send(
        app,
        post(
            "/console/login",
            Some(&login_cookie),
            &[("csrf", &csrf), ("operator", OPERATOR), ("token", ADMIN_TOKEN)],
        ),
    )
    .await;
    assert_eq!(resp.status, StatusCode::SEE_OTHER, "{}", resp.body);
    assert_eq!(resp.location(), "/console/feeds");
    let session = resp
        .set_cookies()
        .into_iter()
        .find(|c| c.starts_with("hubsync_session="))
        .expect("a session cookie");
    for attr in ["HttpOnly", "SameSite=Strict", "Path=/console", "Max-Age="] {
        assert!(session.contains(attr), "{session} lacks {attr}");
    }
    assert!(!session.contains("Secure"), "plain http: no Secure flag");
    cookie_pair(&session)
}

fn assert_security_headers(p: &Page, what: &str) {
    let h = |n: &str| p.headers.get(n).and_then(|v| v.to_str().ok()).unwrap_or("");
    assert!(
        h("content-security-policy").starts_with("default-src 'self'"),
        "{what}: CSP {}",
        h("content-security-policy")
    );
    assert!(!h("content-security-policy").contains("unsafe-inline"), "{what}");
    assert_eq!(h("x-frame-options"), "DENY", "{what}");
    assert_eq!(h("x-content-type-options"), "nosniff", "{what}");
    assert_eq!(h("referrer-policy"), "no-referrer", "{what}");
}

/// No inline script or style anywhere: the CSP would block them.
fn assert_no_inline_code(p: &Page, what: &str) {
    assert!(!p.body.contains(" style="), "{what}: inline style");
    assert!(!p.body.contains("<style"), "{what}: style element");
    for (i, _) in p.body.match_indices("<script") {
        let tag = &p.body[i..i + p.body[i..].find('>').expect("tag ends")];
        assert!(
            tag.contains("src=\"/console/static/"),
            "{what}: inline script {tag}"
        );
        assert!(p.body[i..].contains("></script>"), "{what}: script has content");
    }
    assert!(!p.body.contains(" onclick="), "{what}: inline handler");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_page_needs_a_session_and_shows_the_ingested_data() {
    let w = world(true).await;
    let app = w.router().await;

    // Signed out: pages send the browser to the login form, actions are refused.
    for path in [
        "/console/feeds",
        "/console/feeds/acme-hub",
        "/console/files/1",
        "/console/subscribers",
        "/console/subscribers/mfr",
        "/console/cases",
        "/console/trends",
        "/console/activity",
    ] {
        let p = send(&app, get(path, None)).await;
        assert_eq!(p.status, StatusCode::SEE_OTHER, "{path}");
        assert_eq!(p.location(), "/console/login", "{path}");
        let p = send(&app, get(path, Some("hubsync_session=forged"))).await;
        assert_eq!(p.location(), "/console/login", "{path} with a forged session");
    }
    let p = send(
        &app,
        post("/console/subscribers/mfr/replay", None, &[("csrf", "x")]),
    )
    .await;
    assert_eq!(p.status, StatusCode::FORBIDDEN);
    // The root of the admin server leads to the console; the API keeps its token.
    assert_eq!(send(&app, get("/", None)).await.location(), "/console/feeds");
    assert_eq!(
        send(&app, get("/v1/subscribers", None)).await.status,
        StatusCode::UNAUTHORIZED
    );

    let login_page = send(&app, get("/console/login", None)).await;
    assert_security_headers(&login_page, "login");
    assert_no_inline_code(&login_page, "login");
    let css = send(&app, get("/console/static/console.css", None)).await;
    assert_eq!(css.status, StatusCode::OK);
    assert_eq!(css.headers[header::CONTENT_TYPE], "text/css; charset=utf-8");
    let js = send(&app, get("/console/static/console.js", None)).await;
    assert_eq!(js.headers[header::CONTENT_TYPE], "text/javascript; charset=utf-8");
    assert!(js.body.contains("fetch("));

    let s = login(&app).await;
    let cookie = Some(s.as_str());

    // Feeds: each connector's latest file and reconciliation; the refused file with its reason.
    let feeds = send(&app, get("/console/feeds", cookie)).await;
    assert_eq!(feeds.status, StatusCode::OK);
    assert_security_headers(&feeds, "feeds");
    assert_no_inline_code(&feeds, "feeds");
    assert_eq!(feeds.headers[header::CACHE_CONTROL], "no-store");
    assert!(feeds
        .body
        .contains(&format!("Signed in as <strong>{OPERATOR}</strong>")));
    assert!(feeds.body.contains("href=\"/console/feeds/acme-hub\""));
    assert!(feeds.body.contains(">status_20261123.csv</a>"), "latest file");
    assert!(feeds.body.contains("UTC"));
    assert!(feeds.body.contains("Files that need attention"));
    assert!(
        feeds.body.contains(">status_wrong_header.csv</a>"),
        "refused file listed"
    );
    assert!(feeds.body.contains("Refused") || feeds.body.contains("header"));
    assert!(
        feeds.body.contains("No deadline was missed"),
        "empty state says what it means"
    );
    assert!(
        feeds.body.contains("data-refresh=\"15\""),
        "feeds refresh themselves"
    );

    // The store's own view, to compare pages with.
    let store = w.hub.store().await;
    let files = store
        .file_summaries(&hubsync::store::FileQuery {
            limit: 10,
            ..Default::default()
        })
        .await
        .expect("files");
    assert_eq!(files.len(), FILES.len());
    let by_name = |n: &str| {
        files
            .iter()
            .find(|f| f.file.name == n)
            .expect("file in ledger")
            .clone()
    };
    let night1 = by_name("status_20261122.csv");
    let bad = by_name("status_bad_rows.csv");
    let refused = by_name("status_wrong_header.csv");
    assert_eq!(refused.file.status, hubsync::store::FileStatus::Failed);

    let feed = send(&app, get("/console/feeds/acme-hub", cookie)).await;
    assert_eq!(feed.status, StatusCode::OK);
    assert!(feed.body.contains("<svg"), "trend chart");
    for f in &files {
        assert!(feed
            .body
            .contains(&format!("href=\"/console/files/{}\"", f.file.id)));
    }
    assert!(feed
        .body
        .contains(&format!("<td class=\"num\">{}</td>", night1.file.counts.read)));
    assert_eq!(
        send(&app, get("/console/feeds/nope", cookie)).await.status,
        StatusCode::NOT_FOUND
    );

    // A file: rejects with positions and reasons; deltas with case links and delivery.
    let page = send(&app, get(&format!("/console/files/{}", bad.file.id), cookie)).await;
    assert_eq!(page.status, StatusCode::OK);
    let rejects = store.rejects(bad.file.id).await.expect("rejects");
    assert!(!rejects.is_empty());
    assert!(page.body.contains(&format!("Rejected rows ({})", rejects.len())));
    for r in &rejects {
        assert!(page.body.contains(&format!("<td>{}</td>", r.locator)), "{r:?}");
    }
    let page = send(&app, get(&format!("/console/files/{}", night1.file.id), cookie)).await;
    assert!(page.body.contains("Every row is accounted for."));
    assert!(page
        .body
        .contains(&format!("Deltas sent ({})", night1.file.counts.deltas)));
    assert!(page.body.contains(&format!(
        "/console/cases?program={PROGRAM}&amp;case_id={DEAD_CASE}"
    )));
    assert!(page.body.contains("Delivered") && page.body.contains("Failed (dead letter)"));
    let page = send(&app, get(&format!("/console/files/{}", refused.file.id), cookie)).await;
    assert!(page.body.contains("Refused: "), "the reason is shown");
    assert_eq!(
        send(&app, get("/console/files/999999", cookie)).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        send(&app, get("/console/files/x", cookie)).await.status,
        StatusCode::NOT_FOUND
    );

    // Subscribers: backlog, state, failure rate, dead letters.
    let dead = store.dead_letters("mfr", 100).await.expect("dead letters");
    assert!(!dead.is_empty() && dead.iter().all(|d| d.case_id == DEAD_CASE));
    let subs = send(&app, get("/console/subscribers", cookie)).await;
    assert_eq!(subs.status, StatusCode::OK);
    assert!(subs.body.contains("href=\"/console/subscribers/mfr\""));
    assert!(subs.body.contains(">Active</span>"));
    assert!(subs
        .body
        .contains(&format!("<strong class=\"bad-text\">{}</strong>", dead.len())));
    assert!(subs.body.contains("% ("), "failure rate of the last 24 h");
    let sub = send(&app, get("/console/subscribers/mfr", cookie)).await;
    for d in &dead {
        assert!(sub
            .body
            .contains(&format!("name=\"message_id\" value=\"{}\"", d.id)));
    }
    assert!(sub.body.contains("HTTP 500"));
    assert!(sub.body.contains("Replay a time range"));
    assert_eq!(
        send(&app, get("/console/subscribers/nope", cookie)).await.status,
        StatusCode::NOT_FOUND
    );

    // Cases: the recent list, a journey in sequence order with provenance and delivery.
    let cases = send(&app, get("/console/cases", cookie)).await;
    assert!(cases.body.contains("Recently changed cases"));
    assert!(cases.body.contains(&format!("<option value=\"{PROGRAM}\">")));
    let timeline = store.case_timeline(PROGRAM, DEAD_CASE).await.expect("timeline");
    let journey = send(
        &app,
        get(
            &format!("/console/cases?program={PROGRAM}&case_id={DEAD_CASE}"),
            cookie,
        ),
    )
    .await;
    assert_eq!(journey.status, StatusCode::OK);
    assert_eq!(journey.body.matches("<li class=\"step").count(), timeline.len());
    let mut last = 0;
    for m in &timeline {
        let at = journey
            .body
            .find(&format!("#{}</span>", m.sequence))
            .expect("each sequence shown");
        assert!(at > last, "journey in sequence order");
        last = at;
    }
    assert!(
        journey
            .body
            .contains("<strong>status_20261122.csv</strong>, line "),
        "provenance"
    );
    assert!(journey.body.contains("Failed (dead letter)"));
    assert!(journey.body.contains("Replay to mfr…"));
    let unknown = send(
        &app,
        get(&format!("/console/cases?program={PROGRAM}&case_id=AC-0"), cookie),
    )
    .await;
    assert!(unknown.body.contains("No milestone for case"));

    // Trends: a chart per feed and latency percentiles per subscriber.
    let trends = send(&app, get("/console/trends", cookie)).await;
    assert_eq!(trends.status, StatusCode::OK);
    assert!(trends.body.matches("<svg").count() >= 2);
    assert!(trends.body.contains("p50 <strong>") && trends.body.contains("p99 <strong>"));
    assert_no_inline_code(&trends, "trends");

    // Activity: the login is recorded with who did it.
    let activity = send(&app, get("/console/activity", cookie)).await;
    assert!(activity
        .body
        .contains(&format!("<td>{OPERATOR}</td><td>login</td>")));

    let unknown = send(&app, get("/console/nowhere", cookie)).await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    store.close().await;
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_refuses_wrong_tokens_forged_forms_and_bad_names() {
    let w = world(true).await;
    let app = w.router().await;
    let form = send(&app, get("/console/login", None)).await;
    let login_cookie = cookie_pair(&form.set_cookies()[0]);
    let csrf = form.csrf();
    let try_login = |cookie: Option<String>, csrf: String, operator: &'static str, token: &'static str| {
        let app = app.clone();
        async move {
            send(
                &app,
                post(
                    "/console/login",
                    cookie.as_deref(),
                    &[("csrf", &csrf), ("operator", operator), ("token", token)],
                ),
            )
            .await
        }
    };
    let no_session = |p: &Page| !p.set_cookies().iter().any(|c| c.starts_with("hubsync_session="));

    let p = try_login(
        Some(login_cookie.clone()),
        csrf.clone(),
        OPERATOR,
        "wrong-token-wrong-token",
    )
    .await;
    assert_eq!(p.status, StatusCode::UNAUTHORIZED);
    assert!(no_session(&p));
    assert!(p.body.contains("That token is not right."));
    assert!(!p.body.contains("wrong-token"), "the typed token is not echoed");

    let p = try_login(None, csrf.clone(), OPERATOR, ADMIN_TOKEN).await;
    assert_eq!(p.status, StatusCode::FORBIDDEN, "no double-submit cookie");
    assert!(no_session(&p));
    let p = try_login(Some(login_cookie.clone()), "0".repeat(64), OPERATOR, ADMIN_TOKEN).await;
    assert_eq!(
        p.status,
        StatusCode::FORBIDDEN,
        "token field does not match the cookie"
    );
    assert!(no_session(&p));

    let p = try_login(Some(login_cookie.clone()), csrf.clone(), "   ", ADMIN_TOKEN).await;
    assert_eq!(
        p.status,
        StatusCode::BAD_REQUEST,
        "a name is required for the audit log"
    );
    assert!(no_session(&p));

    // A cross-site form post is refused even with valid fields.
    let mut req = post(
        "/console/login",
        Some(&login_cookie),
        &[("csrf", &csrf), ("operator", OPERATOR), ("token", ADMIN_TOKEN)],
    );
    req.headers_mut()
        .insert("sec-fetch-site", "cross-site".parse().expect("header"));
    assert_eq!(send(&app, req).await.status, StatusCode::FORBIDDEN);

    // The token is never in a URL: a GET with it in the query does nothing.
    let p = send(&app, get(&format!("/console/login?token={ADMIN_TOKEN}"), None)).await;
    assert!(no_session(&p));

    // Logout ends the session and clears the cookie; its CSRF token is required.
    let s = login(&app).await;
    let page = send(&app, get("/console/feeds", Some(&s))).await;
    let csrf = page.csrf();
    let p = send(&app, post("/console/logout", Some(&s), &[("csrf", "nope")])).await;
    assert_eq!(p.status, StatusCode::FORBIDDEN);
    let p = send(&app, post("/console/logout", Some(&s), &[("csrf", &csrf)])).await;
    assert_eq!(p.status, StatusCode::SEE_OTHER);
    assert_eq!(p.location(), "/console/login?signed_out=1");
    assert!(p
        .set_cookies()
        .iter()
        .any(|c| c.starts_with("hubsync_session=;") && c.contains("Max-Age=0")));
    assert_eq!(
        send(&app, get("/console/feeds", Some(&s))).await.location(),
        "/console/login"
    );
    let bye = send(&app, get("/console/login?signed_out=1", None)).await;
    assert!(bye.body.contains("You are signed out."));
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_and_enable_ask_first_check_csrf_and_are_audited() {
    let w = world(true).await;
    let app = w.router().await;
    let s = login(&app).await;
    let cookie = Some(s.as_str());
    let store = w.hub.store().await;
    let dead = store.dead_letters("mfr", 100).await.expect("dead letters");
    let target = dead[0].clone();
    let page = send(&app, get("/console/subscribers/mfr", cookie)).await;
    let csrf = page.csrf();

    // Without the session's CSRF token: refused, nothing changes.
    for bad in ["", "0000"] {
        let p = send(
            &app,
            post(
                "/console/subscribers/mfr/replay",
                cookie,
                &[("csrf", bad), ("message_id", &target.id), ("confirm", "yes")],
            ),
        )
        .await;
        assert_eq!(p.status, StatusCode::FORBIDDEN);
    }
    let p = send(
        &app,
        post("/console/subscribers/mfr/enable", cookie, &[("confirm", "yes")]),
    )
    .await;
    assert!(p.status.is_client_error(), "a form without csrf is refused");
    assert_eq!(
        store.dead_letters("mfr", 100).await.expect("dl").len(),
        dead.len()
    );

    // Step one: a confirmation page saying how many; nothing replayed yet.
    let p = send(
        &app,
        post(
            "/console/subscribers/mfr/replay",
            cookie,
            &[("csrf", &csrf), ("message_id", &target.id)],
        ),
    )
    .await;
    assert_eq!(p.status, StatusCode::OK);
    assert!(p.body.contains("Replay to mfr?"));
    assert!(p.body.contains("<strong>1 message</strong>"));
    assert!(p.body.contains("name=\"confirm\" value=\"yes\""));
    assert_eq!(
        store.dead_letters("mfr", 100).await.expect("dl").len(),
        dead.len()
    );

    // Step two: replayed, delivered by the running daemon, audited, flashed.
    let p = send(
        &app,
        post(
            "/console/subscribers/mfr/replay",
            cookie,
            &[("csrf", &csrf), ("message_id", &target.id), ("confirm", "yes")],
        ),
    )
    .await;
    assert_eq!(p.status, StatusCode::SEE_OTHER);
    assert_eq!(p.location(), "/console/subscribers/mfr");
    let next = send(&app, get("/console/subscribers/mfr", cookie)).await;
    assert!(next.body.contains("1 message queued again for mfr"), "flash");
    let again = send(&app, get("/console/subscribers/mfr", cookie)).await;
    assert!(!again.body.contains("queued again"), "a flash shows once");
    poll_until(Duration::from_secs(10), || {
        let ok =
            w.rx.accepted()
                .iter()
                .any(|h| h.id() == target.id && h.verified_by[0]);
        if ok {
            Ok(())
        } else {
            Err(format!("{} not yet delivered", target.id))
        }
    })
    .await;
    let audit = store.audit_recent(10).await.expect("audit");
    let replay = audit
        .iter()
        .find(|a| a.action == "replay")
        .expect("replay audited");
    assert_eq!(replay.operator, OPERATOR);
    assert_eq!(replay.target, "mfr");
    assert!(replay.detail.contains(&target.id) && replay.detail.contains("1 queued again"));

    // A time range: the preview counts; confirming replays that many.
    let since = "2000-01-01T00:00";
    let p = send(
        &app,
        post(
            "/console/subscribers/mfr/replay",
            cookie,
            &[("csrf", &csrf), ("since", since), ("failed_only", "on")],
        ),
    )
    .await;
    let left = store.dead_letters("mfr", 100).await.expect("dl").len();
    assert_eq!(left, dead.len() - 1);
    assert!(p.body.contains(&format!("Yes, replay {left}")), "{}", p.body);
    assert!(p.body.contains("dead letters only"));
    let p = send(
        &app,
        post(
            "/console/subscribers/mfr/replay",
            cookie,
            &[
                ("csrf", &csrf),
                ("since", since),
                ("failed_only", "on"),
                ("confirm", "yes"),
            ],
        ),
    )
    .await;
    assert_eq!(p.status, StatusCode::SEE_OTHER, "{}", p.body);
    poll_until(Duration::from_secs(10), || {
        let ids: BTreeSet<String> = w.rx.accepted().iter().map(|h| h.id().to_string()).collect();
        let missing = dead.iter().filter(|d| !ids.contains(&d.id)).count();
        if missing == 0 {
            Ok(())
        } else {
            Err(format!("{missing} dead letters not yet delivered"))
        }
    })
    .await;
    // A replay that says nothing is refused; one for an unknown subscriber is 404.
    let p = send(
        &app,
        post("/console/subscribers/mfr/replay", cookie, &[("csrf", &csrf)]),
    )
    .await;
    assert_eq!(p.status, StatusCode::BAD_REQUEST);
    let p = send(
        &app,
        post(
            "/console/subscribers/nope/replay",
            cookie,
            &[("csrf", &csrf), ("failed_only", "on")],
        ),
    )
    .await;
    assert_eq!(p.status, StatusCode::NOT_FOUND);

    // Re-enable: the page offers it while disabled, asks first, then clears it.
    store
        .set_subscriber_state(&hubsync::store::SubscriberState {
            subscriber: "mfr".into(),
            disabled_at: Some(hubsync::store::now_ms()),
            disabled_reason: Some("HTTP 410".into()),
            disabled_url: Some(w.rx.url("/webhooks")),
            ..Default::default()
        })
        .await
        .expect("disable");
    let page = send(&app, get("/console/subscribers/mfr", cookie)).await;
    assert!(page.body.contains(">Disabled</span>"));
    assert!(page.body.contains("action=\"/console/subscribers/mfr/enable\""));
    let p = send(
        &app,
        post("/console/subscribers/mfr/enable", cookie, &[("csrf", &csrf)]),
    )
    .await;
    assert_eq!(p.status, StatusCode::OK);
    assert!(p.body.contains("Re-enable mfr?") && p.body.contains("HTTP 410"));
    let disabled = |states: Vec<hubsync::store::SubscriberState>| {
        states
            .iter()
            .any(|s| s.subscriber == "mfr" && s.disabled_at.is_some())
    };
    assert!(
        disabled(store.subscriber_states().await.expect("states")),
        "not yet"
    );
    let p = send(
        &app,
        post(
            "/console/subscribers/mfr/enable",
            cookie,
            &[("csrf", &csrf), ("confirm", "yes")],
        ),
    )
    .await;
    assert_eq!(p.status, StatusCode::SEE_OTHER);
    assert!(!disabled(store.subscriber_states().await.expect("states")));
    let audit = store.audit_recent(10).await.expect("audit");
    assert!(audit
        .iter()
        .any(|a| a.action == "enable" && a.operator == OPERATOR && a.detail == "re-enabled"));
    let activity = send(&app, get("/console/activity", cookie)).await;
    assert!(activity.body.contains("<td>replay</td>") && activity.body.contains("<td>enable</td>"));
    store.close().await;
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_can_be_switched_off() {
    let w = world(false).await;
    let app = w.router().await;
    for path in [
        "/console/login",
        "/console/feeds",
        "/console/static/console.js",
        "/",
    ] {
        let p = send(&app, get(path, None)).await;
        assert!(
            p.status == StatusCode::NOT_FOUND || p.status == StatusCode::UNAUTHORIZED,
            "{path}: {}",
            p.status
        );
        assert!(!p.body.contains("<html"), "{path}");
    }
    let mut req = get("/v1/subscribers", None);
    req.headers_mut().insert(
        header::AUTHORIZATION,
        format!("Bearer {ADMIN_TOKEN}").parse().expect("header"),
    );
    assert_eq!(send(&app, req).await.status, StatusCode::OK, "the API stays");
    w.stop().await;
}

/// Patient ids, last names and dates of birth in the ingested files.
fn phi_in_fixtures() -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for name in FILES {
        let mut r = csv::Reader::from_path(fixture(name)).expect("fixture reads");
        let headers = r.headers().expect("header").clone();
        for rec in r.records() {
            let rec = rec.expect("record");
            for (h, v) in headers.iter().zip(rec.iter()) {
                let v = v.trim();
                if v.is_empty() {
                    continue;
                }
                match h {
                    "Patient ID" | "Patient Last Name" => {
                        out.insert(v.to_string());
                    }
                    "Patient DOB" => {
                        out.insert(v.to_string());
                        // Also as a normalized date, in case one were shown.
                        if let Ok(d) = chrono::NaiveDate::parse_from_str(v, "%m/%d/%Y") {
                            out.insert(d.format("%Y-%m-%d").to_string());
                        }
                    }
                    _ => {}
                }
            }
        }
    }
    out
}

/// Every page the console can show for the ingested data, crawled through
/// its own links, carries none of the input's patient ids, names or DOBs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_page_shows_patient_identifiers() {
    let phi = phi_in_fixtures();
    assert!(phi.len() > 60, "the fixtures have PHI to look for: {}", phi.len());
    assert!(phi.contains("Nakamura") && phi.contains("P9471240") && phi.contains("11/13/1944"));
    let w = world(true).await;
    let app = w.router().await;
    let s = login(&app).await;
    let cookie = Some(s.as_str());

    // Crawl every /console link reachable from the navigation (GETs only).
    let mut todo = vec![
        "/console/feeds".to_string(),
        "/console/subscribers".to_string(),
        "/console/cases".to_string(),
        "/console/trends".to_string(),
        "/console/activity".to_string(),
    ];
    let store = w.hub.store().await;
    for c in store.recent_cases(1000).await.expect("cases") {
        todo.push(format!(
            "/console/cases?program={}&case_id={}",
            urlencode(&c.program),
            urlencode(&c.case_id)
        ));
    }
    let mut seen = HashSet::new();
    let mut pages = Vec::new();
    while let Some(path) = todo.pop() {
        if !seen.insert(path.clone()) || seen.len() > 400 {
            continue;
        }
        let p = send(&app, get(&path, cookie)).await;
        assert_eq!(p.status, StatusCode::OK, "{path}");
        for (i, _) in p.body.match_indices("href=\"/console/") {
            let start = i + 6;
            let end = start + p.body[start..].find('"').expect("href ends");
            let link = p.body[start..end].replace("&amp;", "&");
            if !link.starts_with("/console/static/") {
                todo.push(link);
            }
        }
        pages.push((path, p.body));
    }
    // Confirmation pages too.
    let csrf = {
        let p = send(&app, get("/console/subscribers/mfr", cookie)).await;
        p.csrf()
    };
    for form in [
        vec![("csrf", csrf.as_str()), ("failed_only", "on")],
        vec![("csrf", csrf.as_str()), ("since", "2000-01-01T00:00")],
    ] {
        let p = send(&app, post("/console/subscribers/mfr/replay", cookie, &form)).await;
        pages.push(("replay confirmation".into(), p.body));
    }
    let p = send(
        &app,
        post("/console/subscribers/mfr/enable", cookie, &[("csrf", &csrf)]),
    )
    .await;
    pages.push(("enable confirmation".into(), p.body));

    let kinds: HashSet<&str> = pages
        .iter()
        .map(|(p, _)| p.split(['?', '/']).nth(2).unwrap_or(p))
        .collect();
    for k in ["feeds", "files", "subscribers", "cases", "trends", "activity"] {
        assert!(kinds.contains(k), "crawled {k} pages: {kinds:?}");
    }
    assert!(pages.len() > 40, "crawled {} pages", pages.len());
    for (path, body) in &pages {
        for v in &phi {
            assert!(
                !body.contains(v.as_str()),
                "{path} shows `{v}` from the input files"
            );
        }
    }
    store.close().await;
    w.stop().await;
}

/// A case that stalled on a journey rule: its timeline page, through the
/// router with a session, shows the stall entry (rule, severity, deadline,
/// open) where it was found, and none of the input's patient identifiers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_case_timeline_shows_its_stall_and_no_phi() {
    // AC-100215 is approved in the first night's file and still only
    // approved in the second.
    const STALLED: &str = "AC-100215";
    let w = world_with_rules(
        true,
        Some(
            "program = \"ACME-ONC\"\n\n[[rule]]\nname = \"approved-not-dispensed\"\nseverity = \"critical\"\n\
             trigger = \"pa.approved\"\nawaits = [\"dispense.shipped\"]\ncancels = [\"case.cancelled\"]\n\
             deadline = \"1s\"\nfrom = \"learned_at\"\n",
        ),
    )
    .await;
    let store = w.hub.store().await;
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let timer = loop {
        let ts = store.journey_case(PROGRAM, STALLED).await.expect("timers");
        if let Some(t) = ts
            .into_iter()
            .find(|t| t.status == hubsync::journey::timer::TimerStatus::Stalled)
        {
            break t;
        }
        assert!(std::time::Instant::now() < deadline, "{STALLED} never stalled");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let app = w.router().await;
    let path = format!("/console/cases?program={PROGRAM}&case_id={STALLED}");
    assert_eq!(
        send(&app, get(&path, None)).await.status,
        StatusCode::SEE_OTHER,
        "a session is needed"
    );
    let s = login(&app).await;
    let p = send(&app, get(&path, Some(&s))).await;
    assert_eq!(p.status, StatusCode::OK, "{}", p.body);
    assert_security_headers(&p, "stalled case");
    assert_no_inline_code(&p, "stalled case");
    let at = p
        .body
        .find("Stalled: approved-not-dispensed")
        .unwrap_or_else(|| panic!("no stall entry in {}", p.body));
    let entry = &p.body[at..at + p.body[at..].find("</li>").expect("entry ends")];
    assert!(entry.contains("Severity <strong>critical</strong>"), "{entry}");
    assert!(
        entry.contains(&format!(
            "deadline {}",
            chrono::DateTime::from_timestamp_millis(timer.timer.deadline_ms)
                .expect("a deadline in range")
                .format("%Y-%m-%d %H:%M UTC")
        )),
        "{entry}"
    );
    assert!(entry.contains("<strong>Open</strong>"), "{entry}");
    assert!(entry.contains("journey.stalled sent"), "{entry}");
    // After the approval it waited on.
    let approval = p.body.find(">pa.approved<").expect("the approval is on the page");
    assert!(approval < at, "the stall follows the approval");
    for v in phi_in_fixtures() {
        assert!(
            !p.body.contains(v.as_str()),
            "the stalled case's page shows `{v}`"
        );
    }
    store.close().await;
    w.stop().await;
}

/// Debian's Chromium, driven by playwright-core (tests/browser/console.mjs):
/// log in, open a feed and a file, open a case's journey, replay a dead
/// letter from it and see it delivered (the receiver verifies the
/// signature), the other pages, log out; axe-core on every page; a
/// screenshot of each in target/console-screenshots/.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_walks_the_console_and_replays_a_dead_letter() {
    let browser_dir = repo().join("tests/browser");
    assert!(
        browser_dir.join("node_modules/playwright-core").is_dir(),
        "run `npm ci` in tests/browser first (scripts/test does)"
    );
    assert!(
        std::path::Path::new("/usr/bin/chromium").exists(),
        "install Debian's chromium: apt-get install chromium chromium-driver (.ci/run does)"
    );
    let w = world(true).await;
    let dead = {
        let store = w.hub.store().await;
        let d = store.dead_letters("mfr", 100).await.expect("dead letters");
        store.close().await;
        d
    };
    assert!(!dead.is_empty());
    let shots = repo().join("target/console-screenshots");
    std::fs::create_dir_all(&shots).expect("screenshot folder");
    let out = tokio::process::Command::new("node")
        .arg("console.mjs")
        .current_dir(&browser_dir)
        .env("CONSOLE_URL", format!("http://127.0.0.1:{}", w.port))
        .env("CONSOLE_TOKEN", ADMIN_TOKEN)
        .env("CONSOLE_PROGRAM", PROGRAM)
        .env("CONSOLE_CASE", DEAD_CASE)
        .env("SCREENSHOT_DIR", &shots)
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(120), out)
        .await
        .expect("the browser test finishes in 2 minutes")
        .expect("node runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "browser test failed:\n{stdout}\n{stderr}");
    // The script names the message it replayed; the receiver must have it,
    // signed, after refusing it once.
    let replayed = stdout
        .lines()
        .find_map(|l| l.strip_prefix("replayed "))
        .expect("the script reports the replayed message")
        .trim()
        .to_string();
    assert!(
        dead.iter().any(|d| d.id == replayed),
        "{replayed} was a dead letter"
    );
    let hits: Vec<_> = w.rx.hits().into_iter().filter(|h| h.id() == replayed).collect();
    assert!(hits.len() >= 2, "refused once, then delivered: {}", hits.len());
    assert!(
        hits.iter().any(|h| h.ok() && h.verified_by[0]),
        "delivered with a valid signature"
    );
    for page in [
        "login",
        "feeds",
        "feed",
        "file",
        "subscribers",
        "subscriber",
        "cases",
        "case",
        "confirm",
        "trends",
        "activity",
    ] {
        let png = shots.join(format!("{page}.png"));
        let meta = std::fs::metadata(&png).unwrap_or_else(|e| panic!("{}: {e}", png.display()));
        assert!(meta.len() > 5_000, "{} is a real screenshot", png.display());
    }
    w.stop().await;
}
