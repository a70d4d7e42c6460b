//! Setup: the step between reading config files and running. It takes the
//! serde specs of [`crate::config`] (which imports no stage) and builds the
//! runtime parts each stage owns, as Vector's `Config` → `build()` does:
//! connectors with their compiled mappings and parse options, sources with
//! decoded SFTP keys, subscribers with decoded signing keys, journey rules.
//!
//! Nothing here has side effects: files and the environment are read, never
//! written. Every problem is a [`Diagnostic`] with `file:line:col` and a
//! caret, and all of them are reported at once, so a bad file fails at load
//! rather than at 3 a.m.

/// `[(key, where it stands)]` for optional keys of a spec, for "this key does
/// not apply here" diagnostics. The key is the field's name, as serde reads
/// it from the file, so the two cannot drift apart.
macro_rules! key_spans {
    ($spec:expr; $($key:ident),+ $(,)?) => {
        [$((stringify!($key), $spec.$key.as_ref().map(toml::Spanned::span))),+]
    };
}

mod format;
mod source;
mod subscriber;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::config::connector::{self, ConnectorSpec, Expectation, OnRowError, SourceKind};
use crate::config::diag::{parse_toml, Diagnostic, Diagnostics, SourceFile};
use crate::config::{AdminSpec, ConfigSpec, LogFormat};
use crate::deliver::Subscriber;
use crate::map::{Mapping, Pseudonymizer, TimePolicy};
use crate::parse::csv::CsvFormat;
use crate::source::Source;

/// The validated configuration the runtime runs on.
#[derive(Debug, Clone)]
pub struct Config {
    pub path: PathBuf,
    pub data_dir: PathBuf,
    pub mappings_dir: PathBuf,
    pub store_url: String,
    pub chunk_rows: usize,
    pub state_cache_entries: usize,
    pub lease: Duration,
    pub connectors: Vec<Arc<Connector>>,
    pub subscribers: Vec<Arc<Subscriber>>,
    pub pseudonymizer: Arc<Pseudonymizer>,
    /// Seeds content hashes; derived from the pseudonymization key.
    pub content_seed: u64,
    pub poll_interval: Duration,
    pub shutdown_grace: Duration,
    pub log_format: LogFormat,
    pub log_level: Option<String>,
    pub payload_retention: Duration,
    pub cleaner_interval: Duration,
    pub admin: Option<Admin>,
    /// Journey rules per program (`[journeys]`, `journeys/*.toml`).
    pub journeys: Arc<crate::journey::Journeys>,
}

/// The admin API, ready to start.
#[derive(Clone)]
pub struct Admin {
    pub listen: std::net::SocketAddr,
    pub token: String,
    pub public_url: String,
    /// Serve the operator console (`[admin] console`, default on).
    pub console: bool,
}

impl std::fmt::Debug for Admin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Admin")
            .field("listen", &self.listen)
            .field("token", &"<redacted>")
            .field("public_url", &self.public_url)
            .field("console", &self.console)
            .finish()
    }
}

/// One connector, ready to run.
#[derive(Debug)]
pub struct Connector {
    pub name: String,
    pub program: String,
    pub mapping: Arc<Mapping>,
    pub time: TimePolicy,
    pub source: Source,
    pub format: Format,
    pub on_row_error: OnRowError,
    pub max_rejects: Option<u64>,
    /// When the feed's file is due, if the connector says.
    pub expect: Option<Expectation>,
    pub extra_columns: connector::ExtraColumns,
}

#[derive(Debug, Clone)]
pub enum Format {
    Csv(CsvFormat),
    /// Sheet rules, each with the mapping its sheets use.
    Excel(Vec<(crate::parse::excel::SheetRule, Arc<Mapping>)>),
    X12(crate::parse::x12::X12Format),
    Xml(crate::parse::xml::XmlFormat),
}

/// Loads and validates everything reachable from the config file at `path`.
/// Reads files and the environment; writes nothing.
pub fn load(path: &Path) -> Result<Config, Diagnostics> {
    load_with_env(path, &|k| std::env::var(k).ok())
}

/// [`load`] with an injectable environment (for tests).
pub fn load_with_env(path: &Path, env: &dyn Fn(&str) -> Option<String>) -> Result<Config, Diagnostics> {
    let src = SourceFile::read(path)?;
    let spec: ConfigSpec = parse_toml(&src)?;
    let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let base = if base.as_os_str().is_empty() {
        PathBuf::from(".")
    } else {
        base
    };
    let resolve = |p: &Path| {
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            base.join(p)
        }
    };
    let mut diags = Diagnostics::default();

    let data_dir = resolve(&spec.data_dir);
    let store_url = match &spec.store.url {
        None => format!("sqlite://{}", data_dir.join("hubsync.db").display()),
        Some(u) if u.starts_with("sqlite://") => {
            let p = Path::new(&u["sqlite://".len()..]);
            format!("sqlite://{}", resolve(p).display())
        }
        Some(u) => u.clone(),
    };
    if spec.store.chunk_rows == 0 {
        diags.push(Diagnostic::file_level(
            path,
            "store.chunk_rows must be at least 1",
        ));
    }
    if spec.store.lease.0 < Duration::from_secs(1) {
        // Renewals run every third of a lease; shorter ones would be lost to
        // ordinary database latency and hand live work to other instances.
        diags.push(Diagnostic::file_level(path, "store.lease must be at least 1s"));
    }

    let key_env = spec.pseudonymization.key_env.get_ref();
    let key = match env(key_env) {
        Some(k) if k.len() >= 16 => k.into_bytes(),
        Some(_) => {
            diags.push(src.diag(
                spec.pseudonymization.key_env.span(),
                format!("the pseudonymization key in ${key_env} is shorter than 16 bytes"),
            ));
            Vec::new()
        }
        None => {
            diags.push(
                src.diag(
                    spec.pseudonymization.key_env.span(),
                    format!("environment variable `{key_env}` is not set"),
                )
                .with_hint("it holds the HMAC key for patient references; secrets never go in config files"),
            );
            Vec::new()
        }
    };
    let pseudonymizer = Arc::new(Pseudonymizer::new(&key));
    let seed_bytes = pseudonymizer.raw("hubsync:content-hash:v1", "");
    let content_seed = u64::from_le_bytes(seed_bytes[..8].try_into().expect("16 bytes hold 8"));

    // The admin API, before subscribers: thin payloads link to it.
    let admin = spec
        .admin
        .as_ref()
        .and_then(|a| load_admin(a, &src, env, &mut diags));
    let subscribers = subscriber::load_subscribers(&spec, &src, admin.as_ref(), &resolve, env, &mut diags);

    // Mappings, then connectors that name them.
    let mappings_dir = resolve(&spec.mappings_dir);
    let mut mappings: BTreeMap<String, Arc<Mapping>> = BTreeMap::new();
    // Mappings that exist but have errors: a connector naming one is not
    // reported again as "no mapping named …".
    let mut broken: Vec<String> = Vec::new();
    for file in crate::config::toml_files(&mappings_dir) {
        match Mapping::load(&file) {
            Ok(m) => {
                mappings.insert(m.name.clone(), Arc::new(m));
            }
            Err(d) => {
                broken.extend(file.file_stem().map(|s| s.to_string_lossy().into_owned()));
                diags.extend(d);
            }
        }
    }
    let connectors_dir = resolve(&spec.connectors_dir);
    let mut connectors = Vec::new();
    for file in crate::config::toml_files(&connectors_dir) {
        match load_connector(&file, &mappings, &resolve, &data_dir, env) {
            Ok(c) => connectors.push(Arc::new(c)),
            Err(d) => diags.extend(Diagnostics(
                d.0.into_iter()
                    .filter(|x| {
                        !broken
                            .iter()
                            .any(|b| x.message == format!("no mapping named `{b}` in the mappings folder"))
                    })
                    .collect(),
            )),
        }
    }
    let mut seen = std::collections::HashSet::new();
    for c in &connectors {
        if !seen.insert(c.name.clone()) {
            diags.push(Diagnostic::file_level(
                &connectors_dir,
                format!("two connectors are named `{}`", c.name),
            ));
        }
    }

    let programs: Vec<&str> = connectors.iter().map(|c| c.program.as_str()).collect();
    let fed = diags.is_empty().then_some(programs.as_slice());
    let journeys = match crate::journey::load(&resolve(&spec.journeys.dir), spec.journeys.horizon.0, fed) {
        Ok(j) => j,
        Err(d) => {
            diags.extend(d);
            crate::journey::Journeys::default()
        }
    };

    if !diags.is_empty() {
        return Err(diags);
    }
    Ok(Config {
        path: path.to_path_buf(),
        data_dir,
        mappings_dir,
        store_url,
        chunk_rows: spec.store.chunk_rows,
        state_cache_entries: spec.store.state_cache_entries,
        lease: spec.store.lease.0,
        connectors,
        subscribers,
        pseudonymizer,
        content_seed,
        poll_interval: spec.delivery.poll_interval.0,
        shutdown_grace: spec.delivery.shutdown_grace.0,
        log_format: spec.log.format,
        log_level: spec.log.level,
        payload_retention: spec.delivery.payload_retention.0,
        cleaner_interval: spec.delivery.cleaner_interval.0,
        admin,
        journeys: Arc::new(journeys),
    })
}

/// `[admin]`: listen address, bearer token (from the environment) and the
/// public URL thin payloads link to.
fn load_admin(
    a: &AdminSpec,
    src: &SourceFile,
    env: &dyn Fn(&str) -> Option<String>,
    diags: &mut Diagnostics,
) -> Option<Admin> {
    let listen = match a.listen.get_ref().parse::<std::net::SocketAddr>() {
        Ok(l) => Some(l),
        Err(e) => {
            diags.push(src.diag(a.listen.span(), format!("admin.listen must be host:port: {e}")));
            None
        }
    };
    let token_env = a.token_env.get_ref();
    let token = match env(token_env) {
        Some(t) if t.trim().len() >= 16 => Some(t.trim().to_string()),
        Some(_) => {
            diags.push(src.diag(
                a.token_env.span(),
                format!("the admin token in ${token_env} is shorter than 16 characters"),
            ));
            None
        }
        None => {
            diags.push(
                src.diag(
                    a.token_env.span(),
                    format!("environment variable `{token_env}` is not set"),
                )
                .with_hint("it holds the bearer token of the admin API"),
            );
            None
        }
    };
    let public_url = match &a.public_url {
        Some(u) => match reqwest::Url::parse(u.get_ref()) {
            Ok(_) => Some(u.get_ref().trim_end_matches('/').to_string()),
            Err(e) => {
                diags.push(src.diag(u.span(), format!("invalid url: {e}")));
                None
            }
        },
        None => listen.map(|l| format!("http://{l}")),
    };
    match (listen, token, public_url) {
        (Some(listen), Some(token), Some(public_url)) => Some(Admin {
            listen,
            token,
            public_url,
            console: a.console,
        }),
        _ => None,
    }
}

fn load_connector(
    path: &Path,
    mappings: &BTreeMap<String, Arc<Mapping>>,
    resolve: &dyn Fn(&Path) -> PathBuf,
    data_dir: &Path,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Connector, Diagnostics> {
    let src = SourceFile::read(path)?;
    let spec: ConnectorSpec = parse_toml(&src)?;
    let mut diags = Diagnostics::default();
    let name = spec.name.clone().unwrap_or_else(|| {
        path.file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default()
    });
    let mapping = match mappings.get(spec.mapping.get_ref()) {
        Some(m) => Some(m.clone()),
        None => {
            let known: Vec<String> = mappings.keys().cloned().collect();
            let mut d = src.diag(
                spec.mapping.span(),
                format!(
                    "no mapping named `{}` in the mappings folder",
                    spec.mapping.get_ref()
                ),
            );
            d = d.with_hint(match crate::text::closest(spec.mapping.get_ref(), &known) {
                Some(c) => format!("did you mean `{c}`?"),
                None if known.is_empty() => "the mappings folder has no loadable mapping".to_string(),
                None => format!("mappings: {}", known.join(", ")),
            });
            diags.push(d);
            None
        }
    };
    let tz = match spec.time_zone.get_ref().parse::<chrono_tz::Tz>() {
        Ok(tz) => Some(tz),
        Err(_) => {
            diags.push(
                src.diag(
                    spec.time_zone.span(),
                    format!("unknown time zone `{}`", spec.time_zone.get_ref()),
                )
                .with_hint("use an IANA name such as America/New_York"),
            );
            None
        }
    };
    if spec.program.get_ref().trim().is_empty() {
        diags.push(src.diag(spec.program.span(), "program cannot be empty"));
    }
    let dirs = source::Folders {
        resolver: resolve,
        data_dir,
        name: &name,
    };
    let source = match spec.source.kind.get_ref() {
        SourceKind::Local => source::load_local(&spec.source, &src, &mut diags, &dirs),
        SourceKind::Sftp => source::load_sftp(&spec.source, &src, &mut diags, &dirs, env),
    };
    let format = match (spec.format.kind.get_ref(), &mapping) {
        (_, None) => None,
        (kind, Some(mapping)) => {
            let before = diags.0.len();
            let f = format::load_format(&src, &spec.format, *kind, mapping, mappings, &mut diags);
            f.filter(|_| diags.0.len() == before)
        }
    };
    // `ack_outbox` pushes the TA1 and 999 an X12 connector writes: it means
    // nothing for another format, or when no acknowledgment is written.
    if let Some(o) = &spec.source.ack_outbox {
        let acks = spec.format.acknowledgments.as_ref().is_some_and(|a| *a.get_ref());
        if *spec.format.kind.get_ref() != connector::FormatKind::X12 {
            diags.push(
                src.diag(o.span(), "`ack_outbox` applies to X12 connectors only")
                    .with_hint(format!(
                        "this connector reads kind = \"{}\"; only X12 interchanges are acknowledged",
                        spec.format.kind.get_ref().name()
                    )),
            );
        } else if !acks && *spec.source.kind.get_ref() == SourceKind::Sftp {
            diags.push(
                src.diag(
                    o.span(),
                    "`ack_outbox` needs `acknowledgments = true` in [format]",
                )
                .with_hint("without it no TA1 or 999 is written, so there is nothing to push"),
            );
        }
    }
    let expect = spec
        .expect
        .as_ref()
        .and_then(|e| source::load_expect(e, &src, &mut diags));
    match (mapping, tz, source, format) {
        (Some(mapping), Some(tz), Some(source), Some(format)) if diags.is_empty() => Ok(Connector {
            name,
            program: spec.program.get_ref().trim().to_string(),
            mapping,
            time: TimePolicy {
                tz,
                ambiguous: spec.dst_ambiguous,
                gap: spec.dst_gap,
            },
            source,
            format,
            on_row_error: spec.on_row_error,
            max_rejects: spec.max_rejects,
            expect,
            extra_columns: spec.header.extra_columns,
        }),
        _ => Err(diags),
    }
}
