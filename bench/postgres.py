#!/usr/bin/env python3
"""PostgreSQL figures: snapshot load and re-load on PostgreSQL vs SQLite, and
delivery throughput with 1, 2 and 3 `hubsync run` instances on one database.

    bench/postgres.py [--rows 1000000] [--deliveries 30000] [--pg postgres://postgres@127.0.0.1:5432/test]

Needs a release build (CARGO_TARGET_DIR honoured, or HUBSYNC_BIN) and the
PostgreSQL of the tests. Each run uses fresh databases it drops afterwards.
Prints a markdown table. Timings are measured, never asserted.
"""
import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
ENV = dict(os.environ, HUBSYNC_PSEUDONYM_KEY="dev-only-pseudonym-key-0123", HUBSYNC_LOCAL_SECRET=SECRET,
           RUST_LOG="error")
PORT = 19331


def sh(cmd, **kw):
    return subprocess.run(cmd, check=True, text=True, capture_output=True, env=ENV, **kw)


def binary():
    if os.environ.get("HUBSYNC_BIN"):
        return os.environ["HUBSYNC_BIN"]
    target = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
    sh(["cargo", "build", "--release", "--quiet", "--bin", "hubsync"], cwd=ROOT)
    return str(target / "release" / "hubsync")


def gen(rows, path, changed=0.0):
    if not path.exists():
        cmd = [sys.executable, str(ROOT / "scripts/gen-hub-csv.py"), str(rows), str(path)]
        if changed:
            cmd += ["--changed-pct", str(changed)]
        sh(cmd)
    return path


class Pg:
    """A throw-away database on the test PostgreSQL."""

    def __init__(self, admin):
        self.admin = admin
        self.name = f"hubsync_bench_{os.getpid()}_{int(time.time() * 1000) % 10**8}"
        self.url = admin.rsplit("/", 1)[0] + "/" + self.name
        self.psql(f"CREATE DATABASE {self.name}", self.admin)

    def psql(self, sql, url=None):
        return sh(["psql", url or self.url, "-Atc", sql]).stdout.strip()

    def drop(self):
        self.psql(f"DROP DATABASE IF EXISTS {self.name} WITH (FORCE)", self.admin)


def project(workdir, store_url, sub_url="http://127.0.0.1:9/", in_flight=32):
    (workdir / "connectors").mkdir(parents=True, exist_ok=True)
    (workdir / "mappings").mkdir(exist_ok=True)
    (workdir / "drop").mkdir(exist_ok=True)
    shutil.copy(ROOT / "mappings/acme-hub-status.toml", workdir / "mappings")
    (workdir / "connectors/acme-hub.toml").write_text(
        'program = "ACME-ONC"\nmapping = "acme-hub-status"\ntime_zone = "America/New_York"\n'
        '[source]\nkind = "local"\npath = "drop"\n[format]\nkind = "csv"\n')
    (workdir / "config.toml").write_text(
        f'data_dir = "data"\n[store]\nurl = "{store_url}"\n'
        '[pseudonymization]\nkey_env = "HUBSYNC_PSEUDONYM_KEY"\n'
        '[delivery]\npoll_interval = "200ms"\n'
        f'[[subscribers]]\nname = "mfr"\nurl = "{sub_url}"\nsecret_env = "HUBSYNC_LOCAL_SECRET"\n'
        f'max_in_flight = {in_flight}\n')
    return workdir / "config.toml"


def ingest(hs, config, path):
    """`hubsync ingest` of one file: (rows/s, state index load seconds)."""
    p = sh([hs, "ingest", "-c", str(config), "--connector", "acme-hub", str(path)])
    rate = float(re.search(r"\(([\d.]+) rows/s\):", p.stderr).group(1))
    index = float(re.search(r"loaded in ([\d.]+)s", p.stderr).group(1))
    return rate, index


def load_figures(hs, rows, admin):
    day1 = gen(rows, ROOT / "bench/out/data" / f"snap_{rows}_day1.csv")
    day2 = gen(rows, ROOT / "bench/out/data" / f"snap_{rows}_day2.csv", changed=1.0)
    out = {}
    for backend in ["sqlite", "postgres"]:
        with tempfile.TemporaryDirectory() as d:
            pg = Pg(admin) if backend == "postgres" else None
            try:
                url = pg.url if pg else f"sqlite://{d}/data/hubsync.db"
                cfg = project(Path(d), url)
                first, _ = ingest(hs, cfg, day1)
                reload, index = ingest(hs, cfg, day2)
                out[backend] = (first, reload, index, rows / (rows / reload + index))
            finally:
                if pg:
                    pg.drop()
    return out


def delivery_figure(hs, n_instances, messages_rows, admin):
    """Messages/s from `n_instances` draining one backlog to one receiver."""
    src = gen(messages_rows, ROOT / "bench/out/data" / f"snap_{messages_rows}_day1.csv")
    with tempfile.TemporaryDirectory() as d:
        pg = Pg(admin)
        listener = subprocess.Popen([hs, "listen", "--addr", f"127.0.0.1:{PORT}", "--secret-env", "HUBSYNC_LOCAL_SECRET"],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=ENV)
        procs = []
        try:
            cfg = project(Path(d), pg.url, f"http://127.0.0.1:{PORT}/hooks")
            ingest(hs, cfg, src)  # the backlog: outbox + pending deliveries, nothing sent yet
            total = int(pg.psql("SELECT COUNT(*) FROM deliveries WHERE status = 0"))
            time.sleep(0.3)
            t0 = time.perf_counter()
            for _ in range(n_instances):
                procs.append(subprocess.Popen([hs, "run", "-c", str(cfg)], stdout=subprocess.DEVNULL,
                                              stderr=subprocess.DEVNULL, env=ENV))
            while int(pg.psql("SELECT COUNT(*) FROM deliveries WHERE status = 0")) > 0:
                time.sleep(0.05)
            secs = time.perf_counter() - t0
            # From the attempts themselves: first to last, without start-up.
            span_ms = int(pg.psql("SELECT MAX(at) - MIN(at) FROM attempts"))
            delivered = int(pg.psql("SELECT COUNT(*) FROM deliveries WHERE status = 1"))
            return total, delivered, secs, total / secs, total / max(span_ms / 1000, 1e-9)
        finally:
            for p in procs:
                p.terminate()
            for p in procs:
                p.wait()
            listener.terminate()
            listener.wait()
            pg.drop()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--deliveries", type=int, default=30_000, help="rows of the file whose milestones are delivered")
    ap.add_argument("--pg", default=os.environ.get("HUBSYNC_TEST_PG", "postgres://postgres@127.0.0.1:5432/test"))
    ap.add_argument("--skip-load", action="store_true")
    a = ap.parse_args()
    (ROOT / "bench/out/data").mkdir(parents=True, exist_ok=True)
    hs = binary()
    print(f"machine: {os.cpu_count()} cores; PostgreSQL {Pg.__name__}: {a.pg}", file=sys.stderr)
    if not a.skip_load:
        f = load_figures(hs, a.rows, a.pg)
        print(f"\n| {a.rows:,}-row snapshot | SQLite | PostgreSQL |\n|---|---|---|")
        labels = ["first load, rows/s", "re-load 1% changed, rows/s (index in memory)", "state index load, s",
                  "re-load 1% changed, rows/s (including index load)"]
        for i, label in enumerate(labels):
            fmt = (lambda v: f"{v:.2f}") if i == 2 else (lambda v: f"{v:,.0f}")
            print(f"| {label} | {fmt(f['sqlite'][i])} | {fmt(f['postgres'][i])} |")
    print("\n| instances | messages | wall s (incl. start-up) | msg/s (wall) | msg/s (first to last attempt) |\n|---|---|---|---|---|")
    for n in [1, 2, 3]:
        total, delivered, secs, wall_rate, span_rate = delivery_figure(hs, n, a.deliveries, a.pg)
        assert delivered == total, (delivered, total)
        print(f"| {n} | {total:,} | {secs:.1f} | {wall_rate:,.0f} | {span_rate:,.0f} |", flush=True)


if __name__ == "__main__":
    main()
