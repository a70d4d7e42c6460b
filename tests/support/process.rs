//! Child processes in tests: which binary to run, and killing what a
//! process started (by pid, never by name).

use std::path::{Path, PathBuf};
use std::process::Command;

/// The `hubsync` binary cargo built for these tests.
pub fn bin() -> PathBuf {
    // option_env!, not env!: examples that share this module get no
    // CARGO_BIN_EXE_*; theirs is `target/<profile>/examples/NAME`, beside
    // which cargo put the binary one folder up.
    option_env!("CARGO_BIN_EXE_hubsync").map_or_else(
        || {
            let exe = std::env::current_exe().expect("the running executable has a path");
            exe.parent()
                .and_then(Path::parent)
                .expect("an example runs from target/<profile>/examples")
                .join("hubsync")
        },
        PathBuf::from,
    )
}

/// The binary under test, unless `HUBSYNC_TEST_BIN` names another (a
/// release build, or a private copy when several worktrees share one target
/// directory, or a long chaos run that must not see a rebuild).
pub fn bin_under_test() -> PathBuf {
    std::env::var_os("HUBSYNC_TEST_BIN").map_or_else(bin, Into::into)
}

/// `kill -9 pid`: the process gets no chance to release anything.
pub fn kill9(pid: u32) -> bool {
    Command::new("kill")
        .arg("-9")
        .arg(pid.to_string())
        .status()
        .is_ok_and(|s| s.success())
}

/// `kill -TERM pid`: a graceful stop.
pub fn sigterm(pid: u32) {
    let _ = Command::new("kill").arg("-TERM").arg(pid.to_string()).status();
}

/// Child pids of `parent`, from /proc.
pub fn children_of(parent: u32) -> Vec<u32> {
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
