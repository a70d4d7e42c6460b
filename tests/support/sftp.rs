//! The SFTP harness: a real OpenSSH `sshd` on a loopback port (its own host
//! key, authorized key and config, killed on drop), a hubsync instance run
//! in-process on a temporary config, and [`SftpRig`], the set-up the SFTP
//! tests share.

use std::collections::HashMap;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use super::hub::lay_out;
use super::process::{children_of, kill9};
use super::{eventually, fixture, free_port, Receiver, Running, PSEUDONYM_KEY, SECRET};

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
            let port = free_port();
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
                if kill9(pid) {
                    killed += 1;
                }
            }
        }
        killed
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        self.kill_sessions();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A hubsync instance's files: config, connectors, mappings, data.
pub struct Instance {
    pub root: PathBuf,
    pub env: HashMap<String, String>,
}

impl Instance {
    /// Writes config.toml (subscribers given as TOML text) and copies the
    /// Acme mapping; connectors are added with [`Instance::connector`].
    pub fn new(root: &Path, subscribers_toml: &str) -> Result<Instance> {
        lay_out(root, &["acme-hub-status"]);
        std::fs::write(
            root.join("config.toml"),
            format!(
                "data_dir = \"data\"\n[pseudonymization]\nkey_env = \"TEST_PSEUDO\"\n\
                 [delivery]\npoll_interval = \"100ms\"\nshutdown_grace = \"1s\"\n{subscribers_toml}"
            ),
        )?;
        let mut env = HashMap::new();
        env.insert("TEST_PSEUDO".to_string(), PSEUDONYM_KEY.to_string());
        env.insert("TEST_WHSEC".to_string(), SECRET.to_string());
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

    /// Starts the daemon in-process; stop it with [`Running::stop`] (an SFTP
    /// session may take a while to close, hence the long grace).
    pub fn start(&self) -> Result<Running> {
        Ok(Running::start(self.load()?, Duration::from_secs(20)))
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
        "[[subscribers]]\nname = \"{name}\"\nurl = \"{}\"\nsecret_env = \"TEST_WHSEC\"\n\
         retry_schedule = [\"200ms\", \"500ms\", \"1s\", \"2s\"]\n{extra}\n",
        rx.url_at(path)
    )
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

/// The connector name the [`SftpRig`] tests use.
pub const CONNECTOR: &str = "acme-sftp";

/// What most SFTP tests start from: in one temp folder, a real sshd, the
/// remote drop folder it serves (`remote/drop`), a receiver, and a hubsync
/// instance whose subscribers post to that receiver.
pub struct SftpRig {
    pub tmp: tempfile::TempDir,
    pub sshd: Sshd,
    pub drop_dir: PathBuf,
    pub rx: Receiver,
    pub inst: Instance,
}

type Subscribers = Box<dyn FnOnce(&Receiver) -> String>;

/// How to start an [`SftpRig`]; by default an unprotected client key, the
/// plain sftp-server, and one subscriber `rx` at `/hooks`.
#[derive(Default)]
pub struct SftpRigBuilder {
    passphrase: String,
    prefix: String,
    flags: String,
    subscribers: Option<Subscribers>,
}

impl SftpRigBuilder {
    /// Protect the client key with `passphrase`.
    pub fn passphrase(mut self, passphrase: &str) -> Self {
        self.passphrase = passphrase.to_string();
        self
    }

    /// Run sftp-server behind `prefix` with extra `flags` (see [`Sshd::start_with`]).
    pub fn sftp_server(mut self, prefix: &str, flags: &str) -> Self {
        self.prefix = prefix.to_string();
        self.flags = flags.to_string();
        self
    }

    /// The `[[subscribers]]` tables, given the receiver.
    pub fn subscribers(mut self, f: impl FnOnce(&Receiver) -> String + 'static) -> Self {
        self.subscribers = Some(Box::new(f));
        self
    }

    pub async fn start(self) -> Result<SftpRig> {
        let tmp = tempfile::tempdir()?;
        let sshd = Sshd::start_with(
            &tmp.path().join("sshd"),
            &self.passphrase,
            &self.prefix,
            &self.flags,
        )?;
        let drop_dir = tmp.path().join("remote/drop");
        std::fs::create_dir_all(&drop_dir)?;
        let rx = Receiver::start().await;
        let subscribers = match self.subscribers {
            Some(f) => f(&rx),
            None => subscriber("rx", &rx, "/hooks", ""),
        };
        let inst = Instance::new(&tmp.path().join("hubsync"), &subscribers)?;
        Ok(SftpRig {
            tmp,
            sshd,
            drop_dir,
            rx,
            inst,
        })
    }
}

impl SftpRig {
    pub fn builder() -> SftpRigBuilder {
        SftpRigBuilder::default()
    }

    /// The default rig.
    pub async fn start() -> Result<SftpRig> {
        SftpRig::builder().start().await
    }

    /// The [`CONNECTOR`] file's text for this server and drop, `extra` lines in `[source]`.
    pub fn connector_text(&self, extra: &str) -> Result<String> {
        sftp_connector(&self.sshd, &self.drop_dir, "", extra)
    }

    /// Writes the [`CONNECTOR`] file, `extra` lines in `[source]`.
    pub fn connector(&self, extra: &str) -> Result<()> {
        self.inst.connector(CONNECTOR, &self.connector_text(extra)?)
    }

    /// The path `name` in the remote drop folder.
    pub fn remote(&self, name: &str) -> PathBuf {
        self.drop_dir.join(name)
    }

    /// Copies the fixture `name` into the remote drop folder, same name.
    pub fn put(&self, name: &str) -> Result<PathBuf> {
        let to = self.remote(name);
        std::fs::copy(fixture(name), &to)?;
        Ok(to)
    }

    /// How many webhooks the fixture `name` produces on an empty store.
    pub fn expected(&self, name: &str) -> Result<usize> {
        expected_webhooks(&self.inst.load()?, &fixture(name))
    }

    /// Waits until the receiver has accepted `n` webhooks.
    pub async fn wait_webhooks(&self, what: &str, n: usize, timeout: Duration) -> Result<()> {
        eventually(what, timeout, || (self.rx.count() >= n).then_some(())).await
    }

    /// The [`CONNECTOR`]'s SFTP source as the config loads it.
    pub fn source(&self) -> Result<hubsync::source::SftpSource> {
        match &self
            .inst
            .load()?
            .connectors
            .first()
            .context("no connector")?
            .source
        {
            hubsync::source::Source::Sftp(s) => Ok(s.clone()),
            other => bail!("not an sftp source: {other:?}"),
        }
    }
}
