//! SFTP figures for BENCHMARKS.md, against a real OpenSSH server on loopback
//! (started here exactly as the tests start it):
//!
//! 1. download throughput: hubsync's fetch (stream to staging + sha256) vs
//!    OpenSSH's `sftp` client `get` of the same file;
//! 2. latency from a file becoming stable on the server to its first webhook.
//!
//! Run: `scripts/bench-sftp.sh` (or `cargo run --release --example sftp_bench -- [MB] [runs]`).

#[path = "../tests/support/mod.rs"]
mod support;

use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use hubsync::source::sftp::{RemoteFile, SftpDrop};
use support::sftp::{sftp_connector, subscriber, Instance, Sshd};
use support::{eventually, fixture, Receiver};

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let mb: u64 = args.get(1).map_or(Ok(200), |s| s.parse()).context("MB")?;
    let runs: usize = args.get(2).map_or(Ok(3), |s| s.parse()).context("runs")?;
    let tmp = tempfile::tempdir()?;
    let sshd = Sshd::start(&tmp.path().join("sshd"), "")?;
    let drop_dir = tmp.path().join("remote/drop");
    std::fs::create_dir_all(&drop_dir)?;

    // Incompressible content, so neither side gains from compression.
    let big = drop_dir.join("big.bin");
    {
        use rand::RngCore;
        use std::io::Write;
        let mut f = std::io::BufWriter::new(std::fs::File::create(&big)?);
        let mut buf = vec![0u8; 1 << 20];
        let mut rng = rand::rng();
        for _ in 0..mb {
            rng.fill_bytes(&mut buf);
            f.write_all(&buf)?;
        }
        f.flush()?;
    }
    let size = std::fs::metadata(&big)?.len();
    let mtime = {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(&big)?.mtime() as u32
    };
    println!("file: {mb} MiB on 127.0.0.1:{} (OpenSSH sftp-server)", sshd.port);

    // hubsync: connect once, then fetch (download + sha256 + fsync into staging).
    let rx = Receiver::start().await;
    let inst = Instance::new(&tmp.path().join("hubsync"), &subscriber("rx", &rx, "/h", ""))?;
    inst.connector(
        "bench",
        &sftp_connector(&sshd, &drop_dir, "", "after_commit = \"leave\"\n")?,
    )?;
    let config = inst.load()?;
    let hubsync::source::Source::Sftp(src) = &config.connectors[0].source else {
        bail!("not sftp");
    };
    let mut remote = SftpDrop::new(src.clone());
    remote.prepare()?;
    remote.connect().await?;
    let file = RemoteFile {
        path: big.display().to_string(),
        name: "big.bin".into(),
        size,
        mtime,
        marker: None,
    };
    let mut ours = Vec::new();
    for _ in 0..runs {
        let t = Instant::now();
        let staged = remote.fetch(&file).await?;
        let secs = t.elapsed().as_secs_f64();
        remote.discard(&staged.path);
        ours.push(size as f64 / secs / 1e6);
    }
    remote.disconnect().await;

    // OpenSSH's client, same server, same file, to a local file (no hashing,
    // no fsync): once with its default cipher (chacha20-poly1305), once with
    // the AES-GCM cipher hubsync prefers.
    let batch = tmp.path().join("batch");
    let out = tmp.path().join("out.bin");
    std::fs::write(&batch, format!("get {} {}\n", big.display(), out.display()))?;
    let mut results = vec![("hubsync fetch (aes256-gcm, sha256, fsync)".to_string(), ours)];
    for cipher in [None, Some("aes256-gcm@openssh.com")] {
        let mut theirs = Vec::new();
        for _ in 0..runs {
            let mut cmd = Command::new("sftp");
            cmd.args(["-q", "-b"])
                .arg(&batch)
                .arg("-i")
                .arg(&sshd.client_key)
                .args([
                    "-o",
                    "StrictHostKeyChecking=no",
                    "-o",
                    "UserKnownHostsFile=/dev/null",
                    "-o",
                    "LogLevel=ERROR",
                ]);
            if let Some(c) = cipher {
                cmd.args(["-c", c]);
            }
            let t = Instant::now();
            let st = cmd
                .arg("-P")
                .arg(sshd.port.to_string())
                .arg(format!("{}@127.0.0.1", sshd.user))
                .stdout(std::process::Stdio::null())
                .status()?;
            if !st.success() {
                bail!("sftp get failed");
            }
            theirs.push(size as f64 / t.elapsed().as_secs_f64() / 1e6);
            std::fs::remove_file(&out)?;
        }
        results.push((
            format!("OpenSSH sftp get ({})", cipher.unwrap_or("default cipher")),
            theirs,
        ));
    }
    for (what, v) in results {
        println!(
            "download MB/s, {what}: median {:.0} of {runs} runs {:?}",
            median(v.clone()),
            v.iter().map(|x| x.round()).collect::<Vec<_>>()
        );
    }
    std::fs::remove_file(&big)?;

    // Latency: the daemon polls every 200 ms with a 1 s settle window. The
    // file is renamed into the drop whole, so it is stable from that instant.
    inst.connector("bench", &sftp_connector(&sshd, &drop_dir, "", "")?)?;
    let daemon = inst.start()?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut lat = Vec::new();
    let days = ["status_20261122.csv", "status_20261123.csv"];
    for day in days {
        let staged = tmp.path().join("remote").join(day);
        std::fs::copy(fixture(day), &staged)?;
        let before = rx.count();
        let stable = Instant::now();
        std::fs::rename(&staged, drop_dir.join(day))?;
        let first = eventually("first webhook", Duration::from_secs(60), || {
            rx.accepted().get(before).map(|r| r.at)
        })
        .await?;
        lat.push(first.duration_since(stable).as_secs_f64() * 1000.0);
        eventually("archived", Duration::from_secs(60), || {
            drop_dir.join("archive").join(day).is_file().then_some(())
        })
        .await?;
    }
    daemon.stop().await;
    println!(
        "stable-to-first-webhook ms (settle 1s, poll 200ms): {:?}",
        lat.iter().map(|v| v.round()).collect::<Vec<_>>()
    );
    Ok(())
}
