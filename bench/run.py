#!/usr/bin/env python3
"""hubsync's benchmark suite: one command, generated data, peers in the same run.

    bench/run            # full sizes, 3 runs each (medians)
    bench/run --quick    # small sizes, 1 run: keeps the scripts working in CI

Writes bench/out/results.md (a markdown table for BENCHMARKS.md) and prints it.
Peers are installed from the package registries into bench/.peers/ on first use.
Timings are never asserted: this measures, it does not test.
"""
import argparse
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out"
PEERS = ROOT / "bench" / ".peers"
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
ENV = dict(os.environ, HUBSYNC_PSEUDONYM_KEY="dev-only-pseudonym-key-0123", HUBSYNC_LOCAL_SECRET=SECRET,
           RUST_LOG="error")


def sh(cmd, **kw):
    return subprocess.run(cmd, check=True, text=True, capture_output=True, env=ENV, **kw)


def binary(quick):
    """Release build for real figures; quick mode (CI) reuses the debug build
    the tests already made, since its figures are not reported."""
    target = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
    profile = [] if quick else ["--release"]
    sh(["cargo", "build", "--quiet", *profile], cwd=ROOT)
    return str(target / ("debug" if quick else "release") / "hubsync")


def gen(cases, path, changed=0.0, repeat=1):
    if not path.exists():
        cmd = [sys.executable, str(ROOT / "scripts/gen-hub-csv.py"), str(cases), str(path), "--repeat", str(repeat)]
        if changed:
            cmd += ["--changed-pct", str(changed)]
        sh(cmd)
    return path


def project(workdir):
    """A hubsync project in workdir using the shipped acme-hub mapping."""
    (workdir / "connectors").mkdir(parents=True, exist_ok=True)
    (workdir / "mappings").mkdir(exist_ok=True)
    shutil.copy(ROOT / "mappings/acme-hub-status.toml", workdir / "mappings")
    (workdir / "connectors/acme-hub.toml").write_text(
        'program = "ACME-ONC"\nmapping = "acme-hub-status"\ntime_zone = "America/New_York"\n'
        '[source]\nkind = "local"\npath = "drop"\n[format]\nkind = "csv"\n')
    (workdir / "config.toml").write_text(
        'data_dir = "data"\n[pseudonymization]\nkey_env = "HUBSYNC_PSEUDONYM_KEY"\n'
        '[[subscribers]]\nname = "mfr"\nurl = "http://127.0.0.1:9/"\nsecret_env = "HUBSYNC_LOCAL_SECRET"\n')
    return workdir / "config.toml"


def ingest(hs, config, files, seed=False):
    """Runs `hubsync ingest`; returns per-file rows/s, the index load time and peak RSS (MiB)."""
    cmd = ["/usr/bin/time", "-f", "RSS_KB %M", hs, "ingest", "-c", str(config), "--connector", "acme-hub"]
    if seed:
        cmd.append("--seed")
    p = sh(cmd + [str(f) for f in files])
    rates = [float(m) for m in re.findall(r"\(([\d.]+) rows/s\):", p.stderr)]
    index = float(re.search(r"loaded in ([\d.]+)s", p.stderr).group(1))
    rss = int(re.search(r"RSS_KB (\d+)", p.stderr).group(1)) / 1024
    return rates, index, rss


def median(xs):
    return statistics.median(xs) if xs else float("nan")


def peer_python(db, csv_path, url):
    env = dict(ENV, PYTHONPATH=str(PEERS / "py"))
    p = subprocess.run([sys.executable, str(ROOT / "bench/peers/python_pipeline.py"), str(db), str(csv_path), url, SECRET],
                       check=True, text=True, capture_output=True, env=env)
    return json.loads(p.stdout.strip().splitlines()[-1])


def install_python_peers():
    marker = PEERS / "py" / ".installed"
    if marker.exists():
        return
    (PEERS / "py").mkdir(parents=True, exist_ok=True)
    sh([sys.executable, "-m", "pip", "install", "--quiet", "--target", str(PEERS / "py"), "requests"])
    marker.touch()


def start_listener(hs, port):
    p = subprocess.Popen([hs, "listen", "--addr", f"127.0.0.1:{port}", "--secret-env", "HUBSYNC_LOCAL_SECRET"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=ENV)
    time.sleep(0.5)
    return p


def csv_ceiling(path, runs):
    """The csv crate's raw parse speed (xsv count), the ceiling for CSV."""
    xsv = PEERS / "bin" / "bin" / "xsv"
    if not xsv.exists():
        sh(["cargo", "install", "--quiet", "xsv", "--root", str(PEERS / "bin")])
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        sh([str(xsv), "count", str(path)])
        times.append(time.perf_counter() - t)
    return median(times)


def latency(hs, n, runs):
    """Drop-to-webhook latency: a running daemon with day 1 delivered; day 2
    (1% changed) is dropped with a done-marker, so it is complete at a known
    instant; each webhook's receipt time is measured against that instant."""
    day1 = gen(n, OUT / "data" / f"snap_{n}_day1.csv")
    day2 = gen(n, OUT / "data" / f"snap_{n}_day2.csv", changed=1.0)
    samples = []
    for _ in range(runs):
        with tempfile.TemporaryDirectory() as d:
            d = Path(d)
            cfg = project(d)
            text = (d / "connectors/acme-hub.toml").read_text().replace('path = "drop"', 'path = "drop"\ndone_marker = "{name}.done"\nrescan = "100ms"')
            (d / "connectors/acme-hub.toml").write_text(text)
            cfg.write_text(cfg.read_text().replace("http://127.0.0.1:9/", "http://127.0.0.1:19322/")
                           + 'max_in_flight = 64\n\n[delivery]\npoll_interval = "50ms"\n')
            ingest(hs, cfg, [day1], seed=True)  # state as after night 1, nothing pending
            log = d / "received.log"
            rx = subprocess.Popen([hs, "listen", "--addr", "127.0.0.1:19322", "--timestamps"], stdout=open(log, "w"),
                                  stderr=subprocess.DEVNULL, env=ENV)
            daemon = subprocess.Popen([hs, "run", "-c", str(cfg)], stderr=subprocess.DEVNULL, env=ENV)
            time.sleep(1.5)
            shutil.copy(day2, d / "drop" / "day2.csv")
            t0 = time.time()
            (d / "drop" / "day2.csv.done").touch()
            expected = None
            deadline = time.time() + 120
            while time.time() < deadline:
                lines = log.read_text().splitlines()
                if expected is None:
                    p = sh([hs, "status", "-c", str(cfg)])
                    m = re.search(r"day2\.csv\s+done\s+\d+\s+\d+\s+\d+\s+\d+\s+\d+\s+(\d+)", p.stdout)
                    expected = int(m.group(1)) if m else None
                if expected is not None and len(lines) >= expected:
                    break
                time.sleep(0.05)
            daemon.send_signal(signal.SIGINT)
            daemon.wait()
            rx.send_signal(signal.SIGINT)
            rx.wait()
            samples += [int(l.split()[0]) / 1000 - t0 for l in log.read_text().splitlines()]
    samples.sort()
    pick = lambda q: samples[min(len(samples) - 1, int(q * len(samples)))] * 1000
    return len(samples), pick(0.5), pick(0.99), samples[-1] * 1000


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--runs", type=int, help="runs per scenario (default 3; 1 with --quick)")
    ap.add_argument("--sizes", help="comma-separated snapshot sizes (default 100000,1000000)")
    a = ap.parse_args()
    runs = a.runs or (1 if a.quick else 3)
    sizes = [int(x) for x in a.sizes.split(",")] if a.sizes else ([20_000] if a.quick else [100_000, 1_000_000])
    OUT.mkdir(parents=True, exist_ok=True)
    data = OUT / "data"
    data.mkdir(exist_ok=True)
    hs = binary(a.quick)
    install_python_peers()
    rows = []  # (scenario, size, hubsync, peer, peer value, ratio)
    listener = start_listener(hs, 19321)
    try:
        for n in sizes:
            day1 = gen(n, data / f"snap_{n}_day1.csv")
            day2 = gen(n, data / f"snap_{n}_day2.csv", changed=1.0)
            first, warm, cold, index_s, rss_first, rss_reload = [], [], [], [], [], []
            for _ in range(runs):
                with tempfile.TemporaryDirectory() as d:
                    cfg = project(Path(d))
                    r, _, rss = ingest(hs, cfg, [day1])
                    first.append(r[0])
                    rss_first.append(rss)
                    snapshot = Path(d) / "after_day1.db"
                    shutil.copy(Path(d) / "data/hubsync.db", snapshot)
                    r, idx, rss = ingest(hs, cfg, [day2])  # index loaded up front: the daemon's steady state
                    warm.append(r[0])
                    index_s.append(idx)
                    rss_reload.append(rss)
                    cold.append(n / (n / r[0] + idx))
            # Peer: the Python pipeline on the same files, posting to the same kind of receiver.
            py_first, py_reload = [], []
            for _ in range(runs):
                with tempfile.TemporaryDirectory() as d:
                    db = Path(d) / "state.db"
                    # Compared up to its commit (hubsync's figure stops at the
                    # outbox commit too; delivery is measured separately).
                    py_first.append(peer_python(db, day1, "http://127.0.0.1:19321/")["rows_per_s_to_commit"])
                    py_reload.append(peer_python(db, day2, "http://127.0.0.1:19321/")["rows_per_s_to_commit"])
            ceiling = n / csv_ceiling(day1, runs)
            rows.append(("CSV first load, rows/s", n, median(first), "Python pipeline (to commit)", median(py_first)))
            rows.append(("CSV re-load 1% changed, rows/s (state index in memory)", n, median(warm), "Python pipeline (to commit)", median(py_reload)))
            rows.append(("CSV re-load 1% changed, rows/s (including index load)", n, median(cold), "Python pipeline (to commit)", median(py_reload)))
            rows.append(("CSV re-load, rows/s vs raw parse", n, median(warm), "xsv count (csv crate)", ceiling))
            rows.append(("peak RSS first load, MiB", n, median(rss_first), None, None))
            rows.append(("peak RSS re-load, MiB", n, median(rss_reload), None, None))
            rows.append(("state index load, s", n, median(index_s), None, None))
        n = 20_000 if a.quick else 100_000
        count, p50, p99, worst = latency(hs, n, runs)
        rows.append(("drop-to-webhook latency p50, ms (file complete → received)", count, p50, None, None))
        rows.append(("drop-to-webhook latency p99, ms", count, p99, None, None))
        rows.append(("drop-to-webhook latency max, ms", count, worst, None, None))
        # Peak RSS on a ~1 GB CSV (a few cases repeated: the file is large, the state is not).
        big_cases, repeat = (2_000, 20) if a.quick else (100_000, 70)
        big = gen(big_cases, data / f"big_{big_cases}x{repeat}.csv", repeat=repeat)
        with tempfile.TemporaryDirectory() as d:
            cfg = project(Path(d))
            r, _, rss = ingest(hs, cfg, [big], seed=True)
            rows.append((f"peak RSS on a {big.stat().st_size / 2**30:.2f} GiB CSV, MiB", big_cases * repeat, rss, None, None))
    finally:
        listener.send_signal(signal.SIGINT)
        listener.wait()
    nproc = os.cpu_count()
    lines = [f"Machine: {nproc} cores. {'Quick mode (small sizes, 1 run).' if a.quick else f'Medians of {runs} run(s).'}",
             "", "| scenario | rows | hubsync | peer | peer value | hubsync / peer |", "|---|---:|---:|---|---:|---:|"]
    for scenario, n, v, peer, pv in rows:
        ratio = f"{v / pv:.1f}×" if pv else ""
        lines.append(f"| {scenario} | {n:,} | {v:,.1f} | {peer or ''} | {'' if pv is None else f'{pv:,.1f}'} | {ratio} |")
    table = "\n".join(lines) + "\n"
    (OUT / "results.md").write_text(table)
    print(table)


if __name__ == "__main__":
    main()
