//! Test harness for the SFTP tests: a real OpenSSH `sshd` on a loopback port
//! (its own host key, authorized key and config, killed on drop), a webhook
//! receiver that verifies Standard Webhooks signatures, and a hubsync daemon
//! run in-process on a temporary config.

#![allow(dead_code)]

use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener as StdListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use tokio_util::sync::CancellationToken;

/// Polls `f` every 50 ms until it returns `Some`, or fails after `timeout`.
pub async fn eventually<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Result<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Ok(v);
        }
        if Instant::now() > deadline {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn run(cmd: &mut Command) -> Result<String> {
    let out = cmd.output().with_context(|| format!("running {cmd:?}"))?;
    if !out.status.success() {
        bail!("{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Generates an ed25519 key pair at `path` (+ `.pub`).
pub fn keygen(path: &Path, passphrase: &str) -> Result<()> {
    run(Command::new("ssh-keygen")
        .args([
            "-q",
            "-t",
            "ed25519",
            "-N",
            passphrase,
            "-C",
            "hubsync-test",
            "-f",
        ])
        .arg(path))?;
    Ok(())
}

/// `SHA256:…` of a public key file.
pub fn fingerprint_of(pub_path: &Path) -> Result<String> {
    let out = run(Command::new("ssh-keygen").arg("-lf").arg(pub_path))?;
    out.split_whitespace()
        .nth(1)
        .map(str::to_string)
        .context("ssh-keygen -l printed no fingerprint")
}

/// A free loopback port (bound, then released for sshd to take).
fn free_port() -> Result<u16> {
    let l = StdListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

/// Debian's OpenSSH server, started for one test.
pub struct Sshd {
    pub dir: PathBuf,
    pub port: u16,
    pub user: String,
    pub host_key_pub: PathBuf,
    pub client_key: PathBuf,
    pub client_passphrase: String,
    child: Child,
}

impl Sshd {
    /// Starts sshd with a fresh host key and a client key (with `passphrase`,
    /// which may be empty) in `dir`.
    pub fn start(dir: &Path, passphrase: &str) -> Result<Sshd> {
        Sshd::start_with(dir, passphrase, "", "")
    }

    /// [`Sshd::start`] with the SFTP server run behind `prefix` (e.g.
    /// `setpriv …` to drop to another user) and extra sftp-server `flags`
    /// (e.g. `-R`: a read-only account).
    pub fn start_with(dir: &Path, passphrase: &str, prefix: &str, flags: &str) -> Result<Sshd> {
        let sshd = ["/usr/sbin/sshd", "/usr/bin/sshd"]
            .into_iter()
            .find(|p| Path::new(p).exists())
            .context("sshd not found: install openssh-server (apt-get install -y openssh-server)")?;
        // sshd refuses to start as root without its privilege-separation dir.
        std::fs::create_dir_all("/run/sshd").context("creating /run/sshd")?;
        std::fs::create_dir_all(dir)?;
        let host_key = dir.join("host_key");
        let client_key = dir.join("client_key");
        keygen(&host_key, "")?;
        keygen(&client_key, passphrase)?;
        std::fs::copy(dir.join("client_key.pub"), dir.join("authorized_keys"))?;
        let user = run(Command::new("id").arg("-un"))?.trim().to_string();
        // Debian's sftp-server behind a wrapper that keeps its log (which
        // names every file opened) where the tests can read it.
        let sftp_server = "/usr/lib/openssh/sftp-server";
        if !Path::new(sftp_server).exists() {
            bail!("{sftp_server} not found: install openssh-server (apt-get install -y openssh-server)");
        }
        let wrapper = dir.join("sftp-server.sh");
        std::fs::write(
            &wrapper,
            format!(
                "#!/bin/sh\nexec {prefix} {sftp_server} -e -l INFO {flags} 2>>{}\n",
                dir.join("sftp.log").display()
            ),
        )?;
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755))?;
        }
        let mut last_err = None;
        for _ in 0..5 {
            let port = free_port()?;
            let config = dir.join("sshd_config");
            std::fs::write(
                &config,
                format!(
                    "Port {port}\nListenAddress 127.0.0.1\nHostKey {hk}\nPidFile {dir}/sshd.pid\n\
                     AuthorizedKeysFile {dir}/authorized_keys\nStrictModes no\nPubkeyAuthentication yes\n\
                     PasswordAuthentication no\nKbdInteractiveAuthentication no\nPermitRootLogin prohibit-password\n\
                     UsePAM no\nSubsystem sftp {wrapper}\nLogLevel INFO\nAllowUsers {user}\nMaxStartups 100\n\
                     MaxSessions 100\nClientAliveInterval 0\n",
                    hk = host_key.display(),
                    dir = dir.display(),
                    wrapper = wrapper.display(),
                ),
            )?;
            let child = Command::new(sshd)
                .arg("-D")
                .arg("-e")
                .arg("-f")
                .arg(&config)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::from(std::fs::File::create(dir.join("sshd.log"))?))
                .spawn()
                .context("spawning sshd")?;
            let mut server = Sshd {
                dir: dir.to_path_buf(),
                port,
                user: user.clone(),
                host_key_pub: dir.join("host_key.pub"),
                client_key: client_key.clone(),
                client_passphrase: passphrase.to_string(),
                child,
            };
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(status)) = server.child.try_wait() {
                    last_err = Some(format!(
                        "sshd exited with {status}: {}",
                        std::fs::read_to_string(dir.join("sshd.log")).unwrap_or_default()
                    ));
                    break;
                }
                if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    return Ok(server);
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = server.child.kill();
        }
        bail!("sshd did not start: {}", last_err.unwrap_or_default())
    }

    /// How many times the SFTP server opened `path` for reading (from
    /// sftp-server's INFO log).
    pub fn opens_of(&self, path: &Path) -> usize {
        let log = std::fs::read_to_string(self.dir.join("sftp.log")).unwrap_or_default();
        let needle = format!("open \"{}\" flags READ", path.display());
        log.lines().filter(|l| l.contains(&needle)).count()
    }

    /// sshd's and sftp-server's logs: for failure messages.
    pub fn log(&self) -> String {
        let read = |n: &str| std::fs::read_to_string(self.dir.join(n)).unwrap_or_default();
        format!("{}{}", read("sshd.log"), read("sftp.log"))
    }

    pub fn host_fingerprint(&self) -> Result<String> {
        fingerprint_of(&self.host_key_pub)
    }

    /// A known_hosts line for this server.
    pub fn known_hosts_line(&self) -> Result<String> {
        let key = std::fs::read_to_string(&self.host_key_pub)?;
        let mut parts = key.split_whitespace();
        let (algo, b64) = (parts.next().context("algo")?, parts.next().context("key")?);
        Ok(format!("[127.0.0.1]:{} {algo} {b64}\n", self.port))
    }

    /// Kills every per-connection sshd process (the listener's descendants):
    /// what a dropped connection looks like to the client.
    pub fn kill_sessions(&self) -> usize {
        let mut killed = 0;
        let mut parents = vec![self.child.id()];
        while let Some(parent) = parents.pop() {
            for pid in children_of(parent) {
                parents.push(pid);
                // SAFETY-free: plain `kill -9` through the command line.
                if Command::new("kill")
                    .arg("-9")
                    .arg(pid.to_string())
                    .status()
                    .is_ok_and(|s| s.success())
                {
                    killed += 1;
                }
            }
        }
        killed
    }
}

/// Child pids of `parent`, from /proc.
fn children_of(parent: u32) -> Vec<u32> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return out;
    };
    for e in rd.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else {
            continue;
        };
        // Field 4 (ppid) follows the parenthesized command name, which may contain spaces.
        let Some(rest) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
            continue;
        };
        let ppid = rest.split_whitespace().nth(1).and_then(|s| s.parse::<u32>().ok());
        if ppid == Some(parent) {
            out.push(pid);
        }
    }
    out
}

impl Drop for Sshd {
    fn drop(&mut self) {
        self.kill_sessions();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One webhook the receiver accepted.
#[derive(Debug, Clone)]
pub struct Received {
    pub path: String,
    pub id: String,
    pub body: serde_json::Value,
    pub at: Instant,
}

/// A webhook receiver on 127.0.0.1:0 that verifies signatures (401 otherwise)
/// and records what it accepted.
pub struct Receiver {
    pub addr: SocketAddr,
    pub secret: String,
    pub got: Arc<Mutex<Vec<Received>>>,
    pub refused: Arc<Mutex<usize>>,
    stop: CancellationToken,
}

impl Receiver {
    pub async fn start() -> Result<Receiver> {
        use axum::body::Bytes;
        use axum::http::{HeaderMap, StatusCode, Uri};
        use base64::Engine;
        let key = b"hubsync-sftp-test-signing-key-32".to_vec();
        let secret = format!("whsec_{}", base64::engine::general_purpose::STANDARD.encode(&key));
        let got: Arc<Mutex<Vec<Received>>> = Arc::default();
        let refused: Arc<Mutex<usize>> = Arc::default();
        let (g, r) = (got.clone(), refused.clone());
        let keys = Arc::new(vec![key]);
        let handler = move |uri: Uri, headers: HeaderMap, body: Bytes| {
            let (g, r, keys) = (g.clone(), r.clone(), keys.clone());
            async move {
                let h = |n: &str| {
                    headers
                        .get(n)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("")
                        .to_string()
                };
                let (id, ts, sig) = (h("webhook-id"), h("webhook-timestamp"), h("webhook-signature"));
                let now = chrono::Utc::now().timestamp();
                if hubsync::deliver::sign::verify(&keys, &id, &ts, &sig, &body, now, 300).is_err() {
                    *r.lock().expect("lock") += 1;
                    return StatusCode::UNAUTHORIZED;
                }
                let Ok(body) = serde_json::from_slice(&body) else {
                    return StatusCode::BAD_REQUEST;
                };
                g.lock().expect("lock").push(Received {
                    path: uri.path().to_string(),
                    id,
                    body,
                    at: Instant::now(),
                });
                StatusCode::NO_CONTENT
            }
        };
        let app = axum::Router::new().fallback(axum::routing::post(handler));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let stop = CancellationToken::new();
        let s = stop.clone();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async move { s.cancelled().await })
                .await;
        });
        Ok(Receiver {
            addr,
            secret,
            got,
            refused,
            stop,
        })
    }

    pub fn all(&self) -> Vec<Received> {
        self.got.lock().expect("lock").clone()
    }

    pub fn count(&self) -> usize {
        self.got.lock().expect("lock").len()
    }

    /// Accepted webhooks whose body says it came from file `name`.
    pub fn count_from_file(&self, name: &str) -> usize {
        self.all()
            .iter()
            .filter(|r| r.body["data"]["source"]["file"] == name)
            .count()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// A hubsync instance's files: config, connectors, mappings, data.
pub struct Instance {
    pub root: PathBuf,
    pub env: HashMap<String, String>,
}

pub const PSEUDO_KEY: &str = "test-pseudonymization-key-0123456789";

impl Instance {
    /// Writes config.toml (subscribers given as TOML text) and copies the
    /// Acme mapping; connectors are added with [`Instance::connector`].
    pub fn new(root: &Path, subscribers_toml: &str, secret: &str) -> Result<Instance> {
        std::fs::create_dir_all(root.join("connectors"))?;
        std::fs::create_dir_all(root.join("mappings"))?;
        let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
        std::fs::copy(
            repo.join("mappings/acme-hub-status.toml"),
            root.join("mappings/acme-hub-status.toml"),
        )?;
        std::fs::write(
            root.join("config.toml"),
            format!(
                "data_dir = \"data\"\n[pseudonymization]\nkey_env = \"TEST_PSEUDO\"\n\
                 [delivery]\npoll_interval = \"100ms\"\nshutdown_grace = \"1s\"\n{subscribers_toml}"
            ),
        )?;
        let mut env = HashMap::new();
        env.insert("TEST_PSEUDO".to_string(), PSEUDO_KEY.to_string());
        env.insert("TEST_WHSEC".to_string(), secret.to_string());
        Ok(Instance {
            root: root.to_path_buf(),
            env,
        })
    }

    pub fn connector(&self, name: &str, toml: &str) -> Result<()> {
        std::fs::write(self.root.join("connectors").join(format!("{name}.toml")), toml)?;
        Ok(())
    }

    pub fn load(&self) -> Result<hubsync::setup::Config> {
        let env = self.env.clone();
        hubsync::setup::load_with_env(&self.root.join("config.toml"), &move |k| env.get(k).cloned())
            .map_err(|d| anyhow::anyhow!("config has errors:\n{d}"))
    }

    /// Starts the daemon in-process; stop it with [`Running::stop`].
    pub fn start(&self) -> Result<Running> {
        let config = self.load()?;
        let token = CancellationToken::new();
        let t = token.clone();
        let task = tokio::spawn(async move { hubsync::runtime::run(config, t).await });
        Ok(Running { token, task })
    }

    pub fn staging(&self, connector: &str) -> PathBuf {
        self.root.join("data/staging").join(connector)
    }

    pub async fn store(&self) -> Result<hubsync::store::Store> {
        Ok(hubsync::store::Store::open(&format!(
            "sqlite://{}",
            self.root.join("data/hubsync.db").display()
        ))
        .await?)
    }
}

pub struct Running {
    token: CancellationToken,
    task: tokio::task::JoinHandle<Result<(), hubsync::runtime::RuntimeError>>,
}

impl Running {
    pub async fn stop(self) -> Result<()> {
        self.token.cancel();
        tokio::time::timeout(Duration::from_secs(20), self.task)
            .await
            .context("daemon did not stop within 20s")???;
        Ok(())
    }
}

/// An sftp connector file for `sshd`, polling `remote_dir`; `extra` lines go
/// into `[source]`, `top` lines before it.
pub fn sftp_connector(sshd: &Sshd, remote_dir: &Path, top: &str, extra: &str) -> Result<String> {
    Ok(format!(
        "program = \"ACME-ONC\"\nmapping = \"acme-hub-status\"\ntime_zone = \"America/New_York\"\n{top}\n\
         [source]\nkind = \"sftp\"\nhost = \"127.0.0.1\"\nport = {port}\nuser = \"{user}\"\n\
         key_file = \"{key}\"\nhost_key_fingerprint = \"{fp}\"\npath = \"{dir}\"\npattern = \"status_*.csv\"\n\
         settle = \"1s\"\npoll_interval = \"200ms\"\ntimeout = \"10s\"\n{extra}\n[format]\nkind = \"csv\"\n",
        port = sshd.port,
        user = sshd.user,
        key = sshd.client_key.display(),
        fp = sshd.host_fingerprint()?,
        dir = remote_dir.display(),
    ))
}

/// The subscriber block for a receiver, at URL path `path`.
pub fn subscriber(name: &str, rx: &Receiver, path: &str, extra: &str) -> String {
    format!(
        "[[subscribers]]\nname = \"{name}\"\nurl = \"http://{}{path}\"\nsecret_env = \"TEST_WHSEC\"\n\
         retry_schedule = [\"200ms\", \"500ms\", \"1s\", \"2s\"]\n{extra}\n",
        rx.addr
    )
}

/// The fixture file `name` from the repository.
pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/acme-hub")
        .join(name)
}

/// How many webhooks a file produces on an empty store (the dry run).
pub fn expected_webhooks(config: &hubsync::setup::Config, file: &Path) -> Result<usize> {
    let connector = config.connectors.first().context("no connector")?;
    let dry = hubsync::pipeline::dry_run(config, connector, file)?;
    if let Some(f) = dry.failed {
        bail!("fixture fails: {f}");
    }
    Ok(dry.milestones.len())
}
