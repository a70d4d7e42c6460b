//! Requests against a running daemon's admin API, with or without the test token.

use std::time::{Duration, Instant};

use super::ADMIN_TOKEN;

/// GET/POST against the admin API.
pub async fn admin_get(port: u16, path: &str, token: Option<&str>) -> (u16, String) {
    let mut req = reqwest::Client::new().get(format!("http://127.0.0.1:{port}{path}"));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.expect("admin API answers");
    let status = resp.status().as_u16();
    (status, resp.text().await.expect("body"))
}

pub async fn admin_post(
    port: u16,
    path: &str,
    token: Option<&str>,
    body: serde_json::Value,
) -> (u16, String) {
    let mut req = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{port}{path}"))
        .header("content-type", "application/json")
        .body(body.to_string());
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.expect("admin API answers");
    let status = resp.status().as_u16();
    (status, resp.text().await.expect("body"))
}

/// Waits until the admin API answers /healthz.
pub async fn wait_admin(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Ok(r) = reqwest::Client::new()
            .get(format!("http://127.0.0.1:{port}/healthz"))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
        {
            if r.status().is_success() {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("admin API did not come up on port {port}");
}
