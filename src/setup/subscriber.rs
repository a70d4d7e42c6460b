//! `[[subscribers]]` and `[delivery]`: each webhook endpoint checked (URL
//! against the allowed hosts, signing secrets from the environment, retry
//! schedule, filters, mTLS identity) and built into a [`Subscriber`].

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use toml::Spanned;

use super::Admin;
use crate::config::diag::{Diagnostics, SourceFile};
use crate::config::{duration, ConfigSpec, PayloadMode, DEFAULT_RETRY_SCHEDULE};
use crate::deliver::sign::decode_secret;
use crate::deliver::{ClientIdentity, Subscriber};

/// The subscribers of `spec`; every problem is pushed to `diags`.
pub(super) fn load_subscribers(
    spec: &ConfigSpec,
    src: &SourceFile,
    admin: Option<&Admin>,
    resolve: &dyn Fn(&Path) -> PathBuf,
    env: &dyn Fn(&str) -> Option<String>,
    diags: &mut Diagnostics,
) -> Vec<Arc<Subscriber>> {
    let mut subscribers = Vec::new();
    let mut allowed_hosts = Vec::new();
    for h in &spec.delivery.allowed_hosts {
        match globset::Glob::new(&h.get_ref().to_ascii_lowercase()) {
            Ok(g) => allowed_hosts.push(g.compile_matcher()),
            Err(e) => diags.push(src.diag(h.span(), format!("invalid host pattern: {e}"))),
        }
    }
    let mut names = std::collections::HashSet::new();
    for s in &spec.subscribers {
        if !names.insert(s.name.get_ref().clone()) {
            diags.push(src.diag(
                s.name.span(),
                format!("duplicate subscriber name `{}`", s.name.get_ref()),
            ));
        }
        let url = match reqwest::Url::parse(s.url.get_ref()) {
            Ok(u) if u.scheme() == "http" || u.scheme() == "https" => {
                match crate::deliver::guard::check_url(&u, &allowed_hosts, spec.delivery.allow_link_local) {
                    Ok(()) => Some(u),
                    Err(why) => {
                        diags.push(src.diag(s.url.span(), why).with_hint(
                            "[delivery] allowed_hosts lists the hosts subscribers may use; allow_link_local = true permits link-local addresses",
                        ));
                        None
                    }
                }
            }
            Ok(_) => {
                diags.push(src.diag(s.url.span(), "subscriber url must be http or https"));
                None
            }
            Err(e) => {
                diags.push(src.diag(s.url.span(), format!("invalid url: {e}")));
                None
            }
        };
        let env_name = s.secret_env.get_ref();
        let mut keys = Vec::new();
        match env(env_name) {
            None => diags.push(
                src.diag(
                    s.secret_env.span(),
                    format!("environment variable `{env_name}` is not set"),
                )
                .with_hint("it holds the subscriber's whsec_… signing secret"),
            ),
            Some(v) => {
                for secret in v.split_whitespace() {
                    match decode_secret(secret) {
                        Ok(k) => keys.push(k),
                        Err(e) => diags.push(src.diag(s.secret_env.span(), format!("${env_name}: {e}"))),
                    }
                }
                if keys.is_empty() && !v.trim().is_empty() {
                    // already reported
                } else if keys.is_empty() {
                    diags.push(src.diag(s.secret_env.span(), format!("${env_name} is empty")));
                }
            }
        }
        let retry_schedule = match &s.retry_schedule {
            None => DEFAULT_RETRY_SCHEDULE
                .iter()
                .map(|s| Duration::from_secs(*s))
                .collect(),
            Some(list) => list
                .iter()
                .filter_map(|d| match duration::parse_duration(d.get_ref()) {
                    Ok(d) => Some(d),
                    Err(e) => {
                        diags.push(src.diag(d.span(), e));
                        None
                    }
                })
                .collect(),
        };
        let mut milestones = Vec::new();
        for pat in &s.milestones {
            match globset::Glob::new(pat) {
                Ok(g) => milestones.push(g.compile_matcher()),
                Err(e) => diags.push(src.diag(s.name.span(), format!("bad milestone pattern `{pat}`: {e}"))),
            }
        }
        if s.max_in_flight == 0 {
            diags.push(src.diag(s.name.span(), "max_in_flight must be at least 1"));
        }
        let identity = match (&s.client_cert, &s.client_key) {
            (None, None) => None,
            (Some(c), None) => {
                diags.push(src.diag(c.span(), "client_cert needs client_key"));
                None
            }
            (None, Some(k)) => {
                diags.push(src.diag(k.span(), "client_key needs client_cert"));
                None
            }
            (Some(c), Some(k)) => {
                let mut read = |p: &Spanned<PathBuf>| match std::fs::read(resolve(p.get_ref())) {
                    Ok(b) => Some(b),
                    Err(e) => {
                        diags.push(src.diag(p.span(), format!("cannot read {}: {e}", p.get_ref().display())));
                        None
                    }
                };
                match (read(c), read(k)) {
                    (Some(mut pem), Some(key)) => {
                        pem.push(b'\n');
                        pem.extend_from_slice(&key);
                        match reqwest::Identity::from_pem(&pem) {
                            Ok(id) => Some(ClientIdentity(id)),
                            Err(e) => {
                                diags.push(
                                    src.diag(
                                        k.span(),
                                        format!("client certificate or key is not usable PEM: {e}"),
                                    )
                                    .with_hint(
                                        "the key must be PKCS#8, RSA or SEC1 PEM without a passphrase",
                                    ),
                                );
                                None
                            }
                        }
                    }
                    _ => None,
                }
            }
        };
        if s.payload == PayloadMode::Thin && spec.admin.is_none() {
            diags.push(
                src.diag(
                    s.name.span(),
                    "payload = \"thin\" links to the admin API, which is not configured",
                )
                .with_hint("add an [admin] table with listen and token_env (and public_url)"),
            );
        }
        if s.breaker_probe_interval.0.is_zero() {
            diags.push(src.diag(s.name.span(), "breaker_probe_interval must be more than 0"));
        }
        if let Some(url) = url {
            subscribers.push(Arc::new(Subscriber {
                name: s.name.get_ref().clone(),
                url,
                keys,
                timeout: s.timeout.0,
                max_in_flight: s.max_in_flight.max(1),
                retry_schedule,
                retry_after_max: s.retry_after_max.0,
                milestones,
                programs: s.programs.clone(),
                connectors: s.connectors.clone(),
                headers: s.headers.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
                identity,
                payload: s.payload,
                link_base: admin.map(|a| format!("{}/v1/messages/", a.public_url)),
                envelope: s.envelope,
                coalesce: s.coalesce,
                breaker_failures: s.breaker_failures,
                breaker_probe_interval: s.breaker_probe_interval.0,
                feed_missing: s.feed_missing,
                allow_link_local: spec.delivery.allow_link_local,
            }));
        }
    }
    subscribers
}
