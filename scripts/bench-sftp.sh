#!/usr/bin/env bash
# SFTP figures (docs/bench-sftp.md): download throughput of hubsync's fetch vs
# OpenSSH's `sftp get` on loopback, and stable-to-first-webhook latency.
# Needs Debian's openssh-server and openssh-client (sshd, sftp-server, sftp,
# ssh-keygen); runs sshd itself on a free 127.0.0.1 port, as root or not.
#   scripts/bench-sftp.sh [MiB=200] [runs=3]
set -euo pipefail
cd "$(dirname "$0")/.."
cargo run --release --example sftp_bench -- "${1:-200}" "${2:-3}"
