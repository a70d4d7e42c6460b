//! `[source]` of a connector (local folder or SFTP drop) and its `[expect]`
//! deadline, checked key by key at their spans and turned into the source
//! stage's runtime parts. SFTP secrets come from the environment only; the
//! client key is decoded here so `hubsync check` catches a bad key.

use std::path::{Path, PathBuf};
use std::time::Duration;

use toml::Spanned;

use crate::config::connector::{AfterCommit, ExpectSpec, Expectation, SourceSpec};
use crate::config::diag::{Diagnostics, SourceFile};
use crate::config::Secret;
use crate::source::sftp::{AckOutbox, HostKeyCheck, SftpAuth};
use crate::source::{ssh_keys, LocalSource, SftpSource, Source};

fn load_pattern(l: &SourceSpec, src: &SourceFile, diags: &mut Diagnostics) -> Option<globset::GlobMatcher> {
    match globset::Glob::new(l.pattern.get_ref()) {
        Ok(g) => Some(g.compile_matcher()),
        Err(e) => {
            diags.push(src.diag(l.pattern.span(), format!("bad file pattern: {e}")));
            None
        }
    }
}

fn check_done_marker(l: &SourceSpec, src: &SourceFile, diags: &mut Diagnostics) {
    if let Some(m) = &l.done_marker {
        if !m.get_ref().contains("{name}") {
            diags.push(src.diag(m.span(), "done_marker must contain `{name}`, e.g. `{name}.done`"));
        }
    }
}

/// Where a connector's local folders go: paths its file names resolve
/// against the main config file; the defaults sit under the data dir, one
/// folder per connector.
pub(super) struct Folders<'a> {
    pub(super) resolver: &'a dyn Fn(&Path) -> PathBuf,
    pub(super) data_dir: &'a Path,
    pub(super) name: &'a str,
}

impl Folders<'_> {
    fn resolve(&self, path: &Path) -> PathBuf {
        (self.resolver)(path)
    }

    /// `<data_dir>/<what>/<connector>`.
    fn under_data_dir(&self, what: &str) -> PathBuf {
        self.data_dir.join(what).join(self.name)
    }

    /// Failed files go to a local folder for both kinds of source.
    fn error(&self, l: &SourceSpec) -> PathBuf {
        l.error
            .as_deref()
            .map_or_else(|| self.under_data_dir("error"), |e| self.resolve(e))
    }
}

pub(super) fn load_local(
    l: &SourceSpec,
    src: &SourceFile,
    diags: &mut Diagnostics,
    dirs: &Folders<'_>,
) -> Option<Source> {
    // Keys that only make sense for a remote drop are mistakes here, not noise.
    let sftp_only = key_spans!(l; host, port, user, key_file, key_passphrase_env, password_env,
        host_key_fingerprint, known_hosts, recursive, poll_interval, after_commit, remote_archive, timeout,
        ack_outbox);
    for (key, span) in sftp_only {
        if let Some(span) = span {
            diags.push(
                src.diag(span, format!("`{key}` applies to `kind = \"sftp\"` sources only"))
                    .with_hint("this source is `kind = \"local\"`"),
            );
        }
    }
    let pattern = load_pattern(l, src, diags);
    check_done_marker(l, src, diags);
    pattern.map(|pattern| {
        Source::Local(LocalSource {
            path: dirs.resolve(l.path.get_ref()),
            pattern,
            settle: l.settle.get_ref().0,
            done_marker: l.done_marker.as_ref().map(|m| m.get_ref().clone()),
            rescan: l
                .rescan
                .as_ref()
                .map_or(Duration::from_secs(5), |r| r.get_ref().0),
            archive: l
                .archive
                .as_ref()
                .map_or_else(|| dirs.under_data_dir("archive"), |a| dirs.resolve(a.get_ref())),
            error: dirs.error(l),
        })
    })
}

/// Validates an sftp `[source]`: every missing or misplaced key is a
/// diagnostic at its span, secrets come from the environment only.
pub(super) fn load_sftp(
    l: &SourceSpec,
    src: &SourceFile,
    diags: &mut Diagnostics,
    dirs: &Folders<'_>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Option<Source> {
    let before = diags.0.len();
    let kind_span = l.kind.span();
    let local_only: [(&str, Option<std::ops::Range<usize>>, &str); 2] = [
        (
            "rescan",
            l.rescan.as_ref().map(|v| v.span()),
            "use `poll_interval`",
        ),
        (
            "archive",
            l.archive.as_ref().map(|v| v.span()),
            "use `after_commit` and `remote_archive`",
        ),
    ];
    for (key, span, hint) in local_only {
        if let Some(span) = span {
            diags.push(
                src.diag(
                    span,
                    format!("`{key}` applies to `kind = \"local\"` sources only"),
                )
                .with_hint(hint),
            );
        }
    }
    let required = |v: Option<&Spanned<String>>, key: &str, diags: &mut Diagnostics| -> Option<String> {
        match v {
            Some(v) if !v.get_ref().trim().is_empty() => Some(v.get_ref().trim().to_string()),
            Some(v) => {
                diags.push(src.diag(v.span(), format!("`{key}` cannot be empty")));
                None
            }
            None => {
                diags.push(src.diag(kind_span.clone(), format!("an sftp source needs `{key}`")));
                None
            }
        }
    };
    let host = required(l.host.as_ref(), "host", diags);
    let user = required(l.user.as_ref(), "user", diags);
    let port = l.port.as_ref().map_or(22, |p| *p.get_ref());
    if port == 0 {
        if let Some(p) = &l.port {
            diags.push(src.diag(p.span(), "port must be 1-65535"));
        }
    }
    let secret = |key_env: &Spanned<String>, what: &str, diags: &mut Diagnostics| -> Option<Secret> {
        match env(key_env.get_ref()) {
            Some(v) if !v.is_empty() => Some(Secret(v)),
            _ => {
                diags.push(
                    src.diag(
                        key_env.span(),
                        format!("environment variable `{}` is not set", key_env.get_ref()),
                    )
                    .with_hint(format!("it holds the {what}; secrets never go in config files")),
                );
                None
            }
        }
    };
    let auth = match (&l.key_file, &l.password_env) {
        (Some(_), Some(p)) => {
            diags.push(
                src.diag(p.span(), "give either `key_file` or `password_env`, not both")
                    .with_hint("key authentication is preferred"),
            );
            None
        }
        (None, None) => {
            diags.push(src.diag(
                kind_span.clone(),
                "an sftp source needs `key_file` or `password_env`",
            ));
            None
        }
        (None, Some(p)) => {
            if let Some(k) = &l.key_passphrase_env {
                diags.push(src.diag(k.span(), "`key_passphrase_env` needs `key_file`"));
            }
            secret(p, "SFTP password", diags).map(SftpAuth::Password)
        }
        (Some(k), None) => {
            let passphrase = match &l.key_passphrase_env {
                Some(e) => secret(e, "key file's passphrase", diags),
                None => Some(Secret(String::new())),
            };
            passphrase.and_then(|pass| {
                let pass = (!pass.0.is_empty()).then_some(pass);
                match ssh_keys::load_key(&dirs.resolve(k.get_ref()), pass.as_ref()) {
                    Ok(key) => Some(SftpAuth::Key(key)),
                    Err(e) => {
                        diags.push(src.diag(k.span(), e.to_string()));
                        None
                    }
                }
            })
        }
    };
    let host_key = match (&l.host_key_fingerprint, &l.known_hosts) {
        (Some(f), None) => {
            let fp = f.get_ref().trim();
            if ssh_keys::is_fingerprint(fp) {
                Some(HostKeyCheck::Fingerprint(fp.to_string()))
            } else {
                diags.push(
                    src.diag(f.span(), "host_key_fingerprint must look like `SHA256:<43 base64 characters>`")
                        .with_hint("print it with `ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub` on the server, or `ssh-keyscan HOST | ssh-keygen -lf -`"),
                );
                None
            }
        }
        (None, Some(k)) => {
            let path = dirs.resolve(k.get_ref());
            if path.is_file() {
                Some(HostKeyCheck::KnownHosts(path))
            } else {
                diags.push(src.diag(
                    k.span(),
                    format!("known_hosts file {} does not exist", path.display()),
                ));
                None
            }
        }
        (Some(_), Some(k)) => {
            diags.push(src.diag(
                k.span(),
                "give either `host_key_fingerprint` or `known_hosts`, not both",
            ));
            None
        }
        (None, None) => {
            diags.push(
                src.diag(
                    kind_span.clone(),
                    "an sftp source needs `host_key_fingerprint` or `known_hosts`",
                )
                .with_hint("host keys are always verified; there is no accept-any mode"),
            );
            None
        }
    };
    let settle = l.settle.get_ref().0;
    if l.done_marker.is_none() && settle < Duration::from_secs(1) {
        diags.push(
            src.diag(l.settle.span(), "an sftp settle window must be at least 1s")
                .with_hint("remote mtimes have one-second precision"),
        );
    }
    let remote_dir = l
        .path
        .get_ref()
        .to_string_lossy()
        .trim_end_matches('/')
        .to_string();
    let remote_dir = if remote_dir.is_empty() {
        "/".to_string()
    } else {
        remote_dir
    };
    let after_commit = l
        .after_commit
        .as_ref()
        .map_or(AfterCommit::default(), |a| *a.get_ref());
    if let (Some(r), Some(a)) = (&l.remote_archive, &l.after_commit) {
        if *a.get_ref() != AfterCommit::Archive {
            diags.push(src.diag(
                r.span(),
                "`remote_archive` is only used with `after_commit = \"archive\"`",
            ));
        }
    }
    let remote_archive = l.remote_archive.as_ref().map_or_else(
        || format!("{}/archive", remote_dir.trim_end_matches('/')),
        |r| r.get_ref().trim_end_matches('/').to_string(),
    );
    let recursive = l.recursive.as_ref().is_some_and(|r| *r.get_ref());
    let pattern = load_pattern(l, src, diags);
    check_done_marker(l, src, diags);
    let poll_interval = l
        .poll_interval
        .as_ref()
        .map_or(Duration::from_secs(30), |p| p.get_ref().0);
    if poll_interval.is_zero() {
        if let Some(p) = &l.poll_interval {
            diags.push(src.diag(p.span(), "poll_interval must be more than 0"));
        }
    }
    let ack_outbox = l.ack_outbox.as_ref().and_then(|o| {
        let raw = o.get_ref().trim();
        let dir = match raw.trim_end_matches('/') {
            "" if raw.starts_with('/') => "/",
            d => d,
        };
        if dir.is_empty() {
            diags.push(src.diag(o.span(), "`ack_outbox` cannot be empty"));
            return None;
        }
        if dir == remote_dir {
            // The acknowledgments would be listed (and, with a loose pattern,
            // fetched) as partner files.
            diags.push(
                src.diag(o.span(), "`ack_outbox` must not be the drop folder itself")
                    .with_hint("hubs give acknowledgments their own folder, e.g. `/outbox`"),
            );
        }
        Some(Box::new(AckOutbox {
            remote: dir.to_string(),
            spool: dirs.under_data_dir("acks"),
        }))
    });
    if diags.0.len() != before {
        return None;
    }
    Some(Source::Sftp(SftpSource {
        host: host?,
        port,
        user: user?,
        auth: auth?,
        host_key: host_key?,
        path: remote_dir,
        pattern: pattern?,
        recursive,
        poll_interval,
        settle,
        done_marker: l.done_marker.as_ref().map(|m| m.get_ref().clone()),
        after_commit,
        remote_archive,
        timeout: l
            .timeout
            .as_ref()
            .map_or(Duration::from_secs(30), |t| t.get_ref().0),
        ack_outbox,
        staging: dirs.under_data_dir("staging"),
        archive: dirs.under_data_dir("archive"),
        error: dirs.error(l),
    }))
}

pub(super) fn load_expect(e: &ExpectSpec, src: &SourceFile, diags: &mut Diagnostics) -> Option<Expectation> {
    let raw = e.daily_by.get_ref().trim();
    let daily_by = chrono::NaiveTime::parse_from_str(raw, "%H:%M:%S")
        .or_else(|_| chrono::NaiveTime::parse_from_str(raw, "%H:%M"));
    let daily_by = match daily_by {
        Ok(t) => Some(t),
        Err(_) => {
            diags.push(src.diag(
                e.daily_by.span(),
                format!("`{raw}` is not a time of day; use HH:MM or HH:MM:SS"),
            ));
            None
        }
    };
    let mut days = Vec::new();
    for d in &e.days {
        match d.get_ref().trim().parse::<chrono::Weekday>() {
            Ok(w) => days.push(w),
            Err(_) => diags.push(src.diag(
                d.span(),
                format!("`{}` is not a weekday (mon … sun)", d.get_ref()),
            )),
        }
    }
    daily_by.map(|daily_by| Expectation { daily_by, days })
}
