//! An isolated hubsync for one test ([`Hub`]: temp folder, real SQLite
//! file, the acme-hub connector and mapping, config on disk), the config
//! text the tests write into it, and the daemon it runs in-process.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{poll_until, repo, ADMIN_TOKEN, PSEUDONYM_KEY, SECRET, SECRET2};

/// Makes `root` a hubsync folder: `connectors/` (empty) and `mappings/`
/// with copies of the repository's `mappings` (names without `.toml`).
pub fn lay_out(root: &Path, mappings: &[&str]) {
    std::fs::create_dir_all(root.join("connectors")).expect("mkdir connectors");
    std::fs::create_dir_all(root.join("mappings")).expect("mkdir mappings");
    for m in mappings {
        std::fs::copy(
            repo().join(format!("mappings/{m}.toml")),
            root.join(format!("mappings/{m}.toml")),
        )
        .expect("copy a mapping");
    }
}

/// An isolated hubsync: its own folder, SQLite file, connector and mapping.
pub struct Hub {
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
}

impl Hub {
    /// A hub with the acme-hub connector and mapping, pointing at `receiver_url`.
    /// `subscriber_extra` and `connector_extra` are appended TOML lines.
    pub fn new(receiver_url: &str, subscriber_extra: &str, connector_extra: &str, chunk_rows: usize) -> Hub {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        lay_out(root, &["acme-hub-status"]);
        std::fs::write(
            root.join("connectors/acme-hub.toml"),
            format!(
                "program = \"ACME-ONC\"\nmapping = \"acme-hub-status\"\ntime_zone = \"America/New_York\"\n{connector_extra}\n\
                 [source]\nkind = \"local\"\npath = \"drop\"\npattern = \"*.csv\"\nsettle = \"300ms\"\nrescan = \"200ms\"\n\
                 [format]\nkind = \"csv\"\n"
            ),
        )
        .expect("write connector");
        std::fs::write(
            root.join("config.toml"),
            format!(
                "data_dir = \"data\"\n[store]\nchunk_rows = {chunk_rows}\n[pseudonymization]\nkey_env = \"HUBSYNC_PSEUDONYM_KEY\"\n\
                 [delivery]\npoll_interval = \"100ms\"\nshutdown_grace = \"2s\"\n\
                 [[subscribers]]\nname = \"mfr\"\nurl = \"{receiver_url}\"\nsecret_env = \"HUBSYNC_TEST_SECRET\"\ntimeout = \"5s\"\n{subscriber_extra}\n"
            ),
        )
        .expect("write config");
        std::fs::create_dir_all(root.join("drop")).expect("mkdir drop");
        Hub {
            config: root.join("config.toml"),
            dir,
        }
    }

    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    pub fn drop_dir(&self) -> PathBuf {
        self.root().join("drop")
    }

    pub fn env() -> impl Fn(&str) -> Option<String> {
        |k| match k {
            "HUBSYNC_PSEUDONYM_KEY" => Some(PSEUDONYM_KEY.to_string()),
            "HUBSYNC_TEST_SECRET" => Some(SECRET.to_string()),
            "HUBSYNC_TEST_SECRETS_ROTATING" => Some(format!("{SECRET} {SECRET2}")),
            "HUBSYNC_TEST_ADMIN_TOKEN" => Some(ADMIN_TOKEN.to_string()),
            _ => None,
        }
    }

    pub fn load(&self) -> hubsync::setup::Config {
        hubsync::setup::load_with_env(&self.config, &Hub::env())
            .unwrap_or_else(|d| panic!("config loads:\n{d}"))
    }

    /// Drops a file the way hubs do: written under a temporary name, then renamed.
    pub fn drop_file(&self, from: &Path, name: &str) {
        let tmp = self.drop_dir().join(format!(".{name}.part"));
        std::fs::copy(from, &tmp).expect("copy into drop");
        std::fs::rename(&tmp, self.drop_dir().join(name)).expect("rename into drop");
    }

    /// Starts the daemon in this process.
    pub fn start(&self) -> Running {
        Running::start(self.load(), Duration::from_secs(10))
    }

    /// Starts the daemon as a child process (for crash tests).
    pub fn spawn(&self) -> std::process::Child {
        self.command(&["run"])
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("spawn hubsync")
    }

    /// `hubsync ARGS --config <this hub>` with the hub's environment.
    pub fn command(&self, args: &[&str]) -> std::process::Command {
        let mut cmd = std::process::Command::new(super::bin());
        cmd.args(args)
            .arg("--config")
            .arg(&self.config)
            .env("HUBSYNC_PSEUDONYM_KEY", PSEUDONYM_KEY)
            .env("HUBSYNC_TEST_SECRET", SECRET)
            .env("HUBSYNC_TEST_SECRETS_ROTATING", format!("{SECRET} {SECRET2}"))
            .env("HUBSYNC_TEST_ADMIN_TOKEN", ADMIN_TOKEN)
            .env("RUST_LOG", "warn");
        cmd
    }

    pub async fn store(&self) -> hubsync::store::Store {
        let c = self.load();
        hubsync::store::Store::open(&c.store_url)
            .await
            .expect("open store")
    }

    /// Waits until the drop folder has no partner files left.
    pub async fn wait_drained(&self, timeout: Duration) {
        poll_until(timeout, || {
            let left: Vec<_> = std::fs::read_dir(self.drop_dir())
                .expect("read drop")
                .filter_map(Result::ok)
                .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
                .map(|e| e.file_name())
                .collect();
            if left.is_empty() {
                Ok(())
            } else {
                Err(format!("drop folder not drained: {left:?}"))
            }
        })
        .await
    }

    /// Files under `sub` (archive or error), recursively, sorted.
    pub fn files_under(&self, sub: &str) -> Vec<PathBuf> {
        let mut out = super::files_in(&self.root().join("data").join(sub));
        out.sort();
        out
    }
}

/// A daemon running in this process; dropping it cancels the daemon.
pub struct Running {
    token: tokio_util::sync::CancellationToken,
    task: Option<tokio::task::JoinHandle<Result<(), hubsync::runtime::RuntimeError>>>,
    /// How long [`Running::stop`] waits before it fails the test.
    grace: Duration,
}

impl Running {
    /// Runs `config` on this test's runtime.
    pub fn start(config: hubsync::setup::Config, grace: Duration) -> Running {
        let token = tokio_util::sync::CancellationToken::new();
        let t = token.clone();
        let task = tokio::spawn(async move { hubsync::runtime::run(config, t).await });
        Running {
            token,
            task: Some(task),
            grace,
        }
    }

    /// Cancels the daemon and fails the test unless it stops cleanly in time.
    pub async fn stop(mut self) {
        self.token.cancel();
        if let Some(t) = self.task.take() {
            tokio::time::timeout(self.grace, t)
                .await
                .unwrap_or_else(|_| panic!("daemon did not stop within {:?}", self.grace))
                .expect("daemon task")
                .expect("daemon runs");
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.token.cancel();
    }
}

/// Writes a synthetic acme-hub snapshot of `n` cases. Rows whose index is a
/// multiple of `change_every` (if any) get a later status date, so a re-load
/// changes exactly those.
pub fn write_snapshot(path: &Path, n: usize, change_every: Option<usize>) {
    use std::io::Write;
    let mut w = std::io::BufWriter::new(std::fs::File::create(path).expect("create snapshot"));
    writeln!(w, "Case ID,Patient ID,Status Code,Status Date,Payer,PA Number").expect("write");
    let codes = ["REF", "BI", "BC", "PAS", "PAP", "PAD", "CPE"];
    for i in 0..n {
        let day = if change_every.is_some_and(|k| i % k == 0) {
            21
        } else {
            20
        };
        writeln!(
            w,
            "C{i:08},P{:09},{},11/{day}/2026,Aetna,PA{i:08}",
            i * 7 + 3,
            codes[i % codes.len()]
        )
        .expect("write");
    }
    w.flush().expect("flush");
}

impl Hub {
    /// Replaces the config's subscriber section (and anything after it) with
    /// `tail`: several `[[subscribers]]`, an `[admin]` table, and so on.
    pub fn set_tail(&self, tail: &str) {
        let text = std::fs::read_to_string(&self.config).expect("read config");
        let head = &text[..text.find("[[subscribers]]").expect("config has a subscriber")];
        std::fs::write(&self.config, format!("{head}{tail}\n")).expect("write config");
    }

    /// Inserts `lines` into the `[delivery]` table.
    pub fn set_delivery(&self, lines: &str) {
        let text = std::fs::read_to_string(&self.config).expect("read config");
        let text = text.replacen("[delivery]\n", &format!("[delivery]\n{lines}\n"), 1);
        std::fs::write(&self.config, text).expect("write config");
    }

    /// Runs the `hubsync` binary with this hub's config and environment.
    pub fn cli(&self, args: &[&str]) -> std::process::Output {
        self.command(args).output().expect("run hubsync")
    }
}

/// A `[[subscribers]]` table for `url`, signing with the test secret.
pub fn subscriber(name: &str, url: &str, extra: &str) -> String {
    format!(
        "[[subscribers]]\nname = \"{name}\"\nurl = \"{url}\"\nsecret_env = \"HUBSYNC_TEST_SECRET\"\ntimeout = \"5s\"\n{extra}\n"
    )
}

/// An `[admin]` table listening on `port`, with the test token.
pub fn admin_table(port: u16) -> String {
    format!("[admin]\nlisten = \"127.0.0.1:{port}\"\ntoken_env = \"HUBSYNC_TEST_ADMIN_TOKEN\"\n")
}
