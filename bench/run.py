#!/usr/bin/env python3
"""hubsync's benchmark suite: one command, generated data, peers in the same run.

    bench/run            # full sizes, medians of 3 runs
    bench/run --quick    # small sizes, 1 run, debug build: keeps the scripts working in CI
    bench/run --only csv,x12,xlsx,latency,delivery,rss   # a subset

Writes bench/out/results.md (the markdown tables for BENCHMARKS.md) and
bench/out/results.json (every sample), and prints the tables.

Data sets are generated, seeded and cached in bench/out/data/: hub CSV
snapshots (100k and 1M cases) with a day-2 variant where 1% of cases moved
on, a 4-tab xlsx of 100k rows (and its day 2), an X12 file of 278 responses
over 100 MB (and its day 2), and a ~1 GB CSV.

Peers run on the same data in the same run; they are installed on first use
into bench/.peers/: Python packages with pip (requests, pyx12, openpyxl,
python-calamine, and xlsxwriter for the generator), xsv with cargo, and wrk
from Debian's archive with `apt-get download` (unpacked, not installed)
unless wrk is already on PATH.

Timings are never asserted: this measures, it does not test.
"""
import argparse
import base64
import hashlib
import hmac
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
DATA = OUT / "data"
PEERS = ROOT / "bench" / ".peers"
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
ENV = dict(os.environ, HUBSYNC_PSEUDONYM_KEY="dev-only-pseudonym-key-0123", HUBSYNC_LOCAL_SECRET=SECRET,
           RUST_LOG="error")
PY_ENV = dict(ENV, PYTHONPATH=str(PEERS / "py"))
PY_PEERS = ["requests", "pyx12", "openpyxl", "python-calamine", "xlsxwriter"]
QUICK = False  # set by --quick


class Results:
    """Rows of the report, grouped in sections. A row compares one hubsync
    figure with one peer's figure on the same data (ratio = hubsync / peer,
    or peer / hubsync where lower is better), or stands alone."""

    def __init__(self):
        self.sections = {}
        self.samples = []
        self.bars = []

    def bar(self, bar, value, ref, need, detail, lower_is_better=False, unit=""):
        """One of issue 14's bars: `value / ref` against `need` (a ratio in the
        same run), or, with `ref` None, `value` against the absolute `need`."""
        self.bars.append((bar, value, ref, need, detail, lower_is_better, unit))

    def add(self, section, scenario, size, value, unit, peer=None, peer_value=None, lower_is_better=False):
        self.sections.setdefault(section, []).append((scenario, size, value, unit, peer, peer_value, lower_is_better))

    def sample(self, name, values):
        self.samples.append({"name": name, "values": values})

    def markdown(self, header):
        out = [header, ""]
        if self.bars:
            out += ["### Bars (issue 14), each from this run", "",
                    "| bar | measured | ratio / value | needed | met |", "|---|---|---:|---:|---|"]
            for bar, v, ref, need, detail, lower, unit in self.bars:
                got = v / ref if ref else v
                ok = got <= need if lower else got >= need
                fmt = (lambda x: f"{x:.2f}×") if ref else (lambda x: f"{x:,.0f}{unit}")
                sign = "≤" if lower else "≥"
                out.append(f"| {bar} | {detail} | {fmt(got)} | {sign} {fmt(need)} | {'yes' if ok else '**no**'} |")
            out.append("")
        for section, rows in self.sections.items():
            out += [f"### {section}", "", "| scenario | data | hubsync | peer | peer's figure | hubsync vs peer |",
                    "|---|---|---:|---|---:|---:|"]
            for scenario, size, v, unit, peer, pv, lower in rows:
                ratio = ""
                if pv and v:
                    ratio = f"{(pv / v if lower else v / pv):.1f}×"
                peer_cell = f"{pv:,.1f} {unit}" if pv is not None else ""
                out.append(f"| {scenario} | {size} | {v:,.1f} {unit} | {peer or ''} | {peer_cell} | {ratio} |")
            out.append("")
        return "\n".join(out)


def sh(cmd, env=ENV, **kw):
    return subprocess.run([str(c) for c in cmd], check=True, text=True, capture_output=True, env=env, **kw)


def median(xs):
    return statistics.median(xs) if xs else float("nan")


# ---------------------------------------------------------------- set-up

def binary(quick):
    """Release build for real figures; quick mode (CI) reuses the debug build
    the tests already made, since its figures are not reported."""
    target = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
    profile = [] if quick else ["--release"]
    sh(["cargo", "build", "--quiet", "--bin", "hubsync", *profile], cwd=ROOT)
    return str(target / ("debug" if quick else "release") / "hubsync")


def install_python_peers():
    marker = PEERS / "py" / ".installed-v2"
    if marker.exists():
        return
    (PEERS / "py").mkdir(parents=True, exist_ok=True)
    sh([sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--target",
        PEERS / "py", *PY_PEERS])
    marker.touch()


def wrk_command():
    """wrk from PATH, else Debian's package (and its LuaJIT) unpacked into
    bench/.peers/wrk: fetched from the archive, not installed system-wide."""
    if shutil.which("wrk"):
        return ["wrk"], ENV
    root = PEERS / "wrk"
    binary_path = root / "usr/bin/wrk"
    if not binary_path.exists():
        debs = PEERS / "debs"
        debs.mkdir(parents=True, exist_ok=True)
        pkgs = ["wrk", "libluajit2-5.1-2", "libluajit2-5.1-common"]
        try:
            sh(["apt-get", "download", *pkgs], cwd=debs)
        except subprocess.CalledProcessError:
            sh(["apt-get", "update", "-qq"])
            sh(["apt-get", "download", *pkgs], cwd=debs)
        for deb in debs.glob("*.deb"):
            sh(["dpkg-deb", "-x", deb, root])
    libs = ":".join(str(p) for p in root.glob("usr/lib/*-linux-gnu"))
    return [str(binary_path)], dict(ENV, LD_LIBRARY_PATH=libs)


def gen_csv(cases, path, changed=0.0, repeat=1):
    if not path.exists():
        cmd = [sys.executable, ROOT / "scripts/gen-hub-csv.py", cases, path, "--repeat", repeat]
        if changed:
            cmd += ["--changed-pct", changed]
        sh(cmd)
    return path


def gen_x12(mb, path, control_base=0, changed=0.0):
    if not path.exists():
        sh([sys.executable, ROOT / "scripts/gen-x12-bench.py", path, mb, 42, control_base, changed])
    return path


def gen_xlsx(rows, path, changed=0.0):
    if not path.exists():
        sh([sys.executable, ROOT / "bench/gen_xlsx.py", path, rows, "--changed-pct", changed], env=PY_ENV)
    return path


def project(workdir, connector="acme-hub", url="http://127.0.0.1:9/", connector_extra="", config_extra=""):
    """A hubsync project in `workdir`: the shipped mappings, one connector
    reading `workdir/drop`, one subscriber at `url`."""
    (workdir / "connectors").mkdir(parents=True, exist_ok=True)
    (workdir / "mappings").mkdir(exist_ok=True)
    (workdir / "drop").mkdir(exist_ok=True)
    for m in (ROOT / "mappings").glob("*.toml"):
        shutil.copy(m, workdir / "mappings")
    if connector == "acme-hub":
        # The shipped acme-hub connector matches `status_*.csv`; the bench's
        # files have other names, so this one matches everything.
        text = ('program = "ACME-ONC"\nmapping = "acme-hub-status"\ntime_zone = "America/New_York"\n'
                '[source]\nkind = "local"\npath = "drop"\n[format]\nkind = "csv"\n')
    else:
        text = (ROOT / "connectors" / f"{connector}.toml").read_text()
        text = re.sub(r'(?m)^path = ".*"$', 'path = "drop"', text, count=1)
    text = text.replace('path = "drop"', 'path = "drop"\n' + connector_extra, 1)
    (workdir / "connectors" / f"{connector}.toml").write_text(text)
    cfg = workdir / "config.toml"
    cfg.write_text(f'data_dir = "data"\n{config_extra}\n[pseudonymization]\nkey_env = "HUBSYNC_PSEUDONYM_KEY"\n'
                   f'[[subscribers]]\nname = "mfr"\nurl = "{url}"\nsecret_env = "HUBSYNC_LOCAL_SECRET"\n'
                   'max_in_flight = 64\n')
    return cfg


def ingest(hs, config, connector, files, seed=False):
    """Runs `hubsync ingest`; returns [(rows, seconds, deltas)] per file, the
    state index load time and the peak RSS (MiB)."""
    cmd = ["/usr/bin/time", "-f", "RSS_KB %M", hs, "ingest", "-c", config, "--connector", connector]
    if seed:
        cmd.append("--seed")
    p = sh(cmd + list(files))
    per_file = [(int(r), float(s), int(d)) for r, s, d in
                re.findall(r": (\d+) rows in ([\d.]+)s \([\d.]+ rows/s\): (\d+) deltas", p.stderr)]
    if len(per_file) != len(files):
        raise RuntimeError(f"ingest did not process every file:\n{p.stderr}")
    index = float(re.search(r"loaded in ([\d.]+)s", p.stderr).group(1))
    rss = int(re.search(r"RSS_KB (\d+)", p.stderr).group(1)) / 1024
    return per_file, index, rss


def parse_alone(hs, config, connector, path):
    """`hubsync parse`: the parser alone. Returns (records, seconds)."""
    p = sh([hs, "parse", "-c", config, "--connector", connector, path])
    m = re.search(r": (\d+) records, (\d+) refused, \d+ bytes in ([\d.]+)s", p.stdout)
    return int(m.group(1)), float(m.group(3))


def parse_first_reload(hs, connector, day1, day2, runs):
    """Per run, in a fresh project: the parser alone on day 1, then day 1's
    first load and day 2's re-load through the pipeline. Returns, per run,
    {"parse" | "first" | "reload": (records, seconds)}."""
    out = []
    for _ in range(runs):
        with tempfile.TemporaryDirectory() as d:
            cfg = project(Path(d), connector)
            parse = parse_alone(hs, cfg, connector, day1)
            [(rows1, secs1, _)], _, _ = ingest(hs, cfg, connector, [day1])
            [(rows2, secs2, _)], _, _ = ingest(hs, cfg, connector, [day2])
            out.append({"parse": parse, "first": (rows1, secs1), "reload": (rows2, secs2)})
    return out


def py_peer(script, *args):
    p = sh([sys.executable, ROOT / "bench/peers" / script, *args], env=PY_ENV)
    return json.loads(p.stdout.strip().splitlines()[-1])


class Listener:
    """`hubsync listen`: a local receiver that verifies every signature and
    logs each message with its receive time (Unix ms), or with `quiet`
    prints nothing per message (so it is not the bottleneck of a throughput
    figure) and reports a count and the first and last arrival at exit."""

    def __init__(self, hs, port, log, quiet=False):
        self.log = Path(log)
        self.quiet = quiet
        flags = ["--quiet"] if quiet else ["--timestamps"]
        self.proc = subprocess.Popen([hs, "listen", "--addr", f"127.0.0.1:{port}", *flags],
                                     stdout=open(self.log, "w"), stderr=subprocess.DEVNULL, env=ENV)
        self.url = f"http://127.0.0.1:{port}/"
        time.sleep(0.5)

    def lines(self):
        return self.log.read_text().splitlines()

    def stop(self):
        """Stops the receiver; a quiet one returns (count, first ms, last ms)."""
        self.proc.send_signal(signal.SIGINT)
        self.proc.wait()
        if self.quiet:
            m = re.search(r"received (\d+) events; first at (-?\d+) ms, last at (-?\d+) ms", self.log.read_text())
            return int(m.group(1)), int(m.group(2)), int(m.group(3))
        return None


def pending(db):
    """Pending deliveries in a SQLite store (read-only, beside the writer)."""
    import sqlite3
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
        try:
            return con.execute("SELECT COUNT(*) FROM deliveries WHERE status = 0").fetchone()[0]
        finally:
            con.close()
    except sqlite3.OperationalError:
        return None


def wait_for(pred, timeout, what):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if pred():
            return
        time.sleep(0.05)
    raise RuntimeError(f"timed out waiting for {what}")


# ---------------------------------------------------------------- scenarios

def scenario_csv(hs, res, sizes, runs, listener_url):
    """CSV first load and re-load (1% changed), drop to every delta committed
    to the outbox, against the Python pipeline and the csv crate's raw parse."""
    sec = "CSV: first load and re-load (1% changed), file to outbox commit"
    for n in sizes:
        day1 = gen_csv(n, DATA / f"snap_{n}_day1.csv")
        day2 = gen_csv(n, DATA / f"snap_{n}_day2.csv", changed=1.0)
        first, warm, cold, index_s, rss_first, rss_reload = [], [], [], [], [], []
        for _ in range(runs):
            with tempfile.TemporaryDirectory() as d:
                cfg = project(Path(d))
                [(rows, secs, _)], _, rss = ingest(hs, cfg, "acme-hub", [day1])
                first.append(rows / secs)
                rss_first.append(rss)
                [(rows, secs, _)], idx, rss = ingest(hs, cfg, "acme-hub", [day2])
                warm.append(rows / secs)  # index loaded up front: the daemon's steady state
                index_s.append(idx)
                rss_reload.append(rss)
                cold.append(rows / (secs + idx))
        py_first, py_reload = [], []
        for _ in range(runs):
            with tempfile.TemporaryDirectory() as d:
                db = Path(d) / "state.db"
                # Compared up to its commit: hubsync's figure stops at the
                # outbox commit too; delivery is measured on its own.
                py_first.append(py_peer("python_pipeline.py", db, day1, listener_url, SECRET)["rows_per_s_to_commit"])
                py_reload.append(py_peer("python_pipeline.py", db, day2, listener_url, SECRET)["rows_per_s_to_commit"])
        raw = []
        # xsv is built from source on first use (minutes on two cores): the
        # raw parse ceiling is a full-mode figure, left out of quick runs.
        for _ in range(0 if QUICK else runs):
            t = time.perf_counter()
            sh([xsv(), "count", day1])
            raw.append(n / (time.perf_counter() - t))
        size = f"{n:,} cases"
        py = "Python pipeline (csv + SQLite + requests), to its commit"
        res.add(sec, "first load", size, median(first), "rows/s", py, median(py_first))
        res.add(sec, "re-load, state index in memory (the daemon)", size, median(warm), "rows/s", py, median(py_reload))
        res.add(sec, "re-load, cold process (index load included)", size, median(cold), "rows/s", py, median(py_reload))
        if raw:
            res.add(sec, "re-load vs the raw parse ceiling", size, median(warm), "rows/s", "xsv count (csv crate)",
                    median(raw))
        res.add(sec, "state index load", size, median(index_s), "s")
        res.add(sec, "peak RSS, first load", size, median(rss_first), "MiB")
        res.add(sec, "peak RSS, re-load", size, median(rss_reload), "MiB")
        f, c, pyf = median(first), median(cold), median(py_first)
        res.bar(f"CSV first load ≥ 60% of a cold re-load ({size})", f, c, 0.6, f"{f:,.0f} vs {c:,.0f} rows/s")
        res.bar(f"CSV first load ≥ 200k rows/s ({size})", f, None, 200_000, f"{f:,.0f} rows/s", unit=" rows/s")
        res.bar(f"CSV first load ≥ 4× the Python peer ({size})", f, pyf, 4.0, f"{f:,.0f} vs {pyf:,.0f} rows/s")
        res.sample(f"csv {n}", {"first": first, "warm": warm, "cold": cold, "py_first": py_first,
                                "py_reload": py_reload, "xsv": raw})


def scenario_x12(hs, res, quick, runs):
    """X12 278 responses: the parser alone against pyx12's reader, and first
    load / re-load (1% of events changed) through the whole pipeline."""
    sec = "X12 278: parse alone, first load and re-load (1% changed)"
    mb = 2 if quick else 110
    day1 = gen_x12(mb, DATA / f"x12_278_{mb}mb_day1.x12")
    day2 = gen_x12(mb, DATA / f"x12_278_{mb}mb_day2.x12", control_base=500_000, changed=1.0)
    size_mb = day1.stat().st_size / 1e6
    label = f"{size_mb:,.0f} MB"
    timings = parse_first_reload(hs, "payer-278", day1, day2, runs)
    events = timings[0]["first"][0]
    mb_per_s = lambda stage, path: [path.stat().st_size / 1e6 / t[stage][1] for t in timings]
    parse, first, reload = mb_per_s("parse", day1), mb_per_s("first", day1), mb_per_s("reload", day2)
    # pyx12 reads ~1-3 MB/s: one run on the full file takes a minute or more,
    # so full mode runs it once.
    pyx12 = [py_peer("pyx12_parse.py", day1)["mb_per_s"] for _ in range(runs if quick else 1)]
    peer = "pyx12 X12Reader (parse alone)"
    res.add(sec, "parse alone (tokenize, envelopes, records)", label, median(parse), "MB/s", peer, median(pyx12))
    res.add(sec, f"first load ({events:,} events, all new)", label, median(first), "MB/s", peer, median(pyx12))
    res.add(sec, "re-load, 1% of events changed", label, median(reload), "MB/s", peer, median(pyx12))
    res.bar("X12 first load ≥ 50% of its re-load", median(first), median(reload), 0.5,
            f"{median(first):,.1f} vs {median(reload):,.1f} MB/s")
    res.sample("x12", {"parse": parse, "first": first, "reload": reload, "pyx12": pyx12})


def scenario_xlsx(hs, res, quick, runs):
    """A 4-tab workbook: the parser alone against openpyxl and python-calamine
    reading every row, and first load / re-load through the pipeline."""
    sec = "Excel (xlsx, 4 tabs): parse alone, first load and re-load (1% changed)"
    n = 5_000 if quick else 100_000
    day1 = gen_xlsx(n, DATA / f"summit_{n}_day1.xlsx")
    day2 = gen_xlsx(n, DATA / f"summit_{n}_day2.xlsx", changed=1.0)
    timings = parse_first_reload(hs, "summit-excel", day1, day2, runs)
    rows_per_s = lambda stage: [t[stage][0] / t[stage][1] for t in timings]
    parse, first, reload = rows_per_s("parse"), rows_per_s("first"), rows_per_s("reload")
    # openpyxl takes several seconds to a minute on 100k rows: once in full mode.
    openpyxl = [py_peer("read_xlsx.py", "openpyxl", day1)["rows_per_s"] for _ in range(runs if quick else 1)]
    calamine = [py_peer("read_xlsx.py", "calamine", day1)["rows_per_s"] for _ in range(runs)]
    label = f"{n:,} rows"
    for scenario, v in [("parse alone (every row of every tab)", parse), ("first load, all new", first),
                        ("re-load, 1% changed", reload)]:
        res.add(sec, scenario, label, median(v), "rows/s", "openpyxl, read-only mode", median(openpyxl))
        res.add(sec, scenario, label, median(v), "rows/s", "python-calamine", median(calamine))
    res.bar("xlsx first load ≥ 50% of its re-load", median(first), median(reload), 0.5,
            f"{median(first):,.0f} vs {median(reload):,.0f} rows/s")
    res.sample("xlsx", {"parse": parse, "first": first, "reload": reload, "openpyxl": openpyxl,
                        "calamine": calamine})


def latency_runs(hs, n, changed, runs, port):
    """File complete → each webhook received: a running daemon with day 1
    delivered; day 2 is dropped with a done-marker, so it is complete at a
    known instant; each webhook's receipt time is measured against that
    instant. Returns (all samples in s, first receipt per run in s)."""
    day1 = gen_csv(n, DATA / f"snap_{n}_day1.csv")
    day2 = gen_csv(n, DATA / f"snap_{n}_day2_{changed:g}pct.csv" if changed != 1.0 else DATA / f"snap_{n}_day2.csv",
                   changed=changed)
    samples, firsts = [], []
    for _ in range(runs):
        with tempfile.TemporaryDirectory() as d:
            d = Path(d)
            cfg = project(d, url=f"http://127.0.0.1:{port}/",
                          connector_extra='done_marker = "{name}.done"\nrescan = "100ms"',
                          config_extra='[delivery]\npoll_interval = "50ms"')
            ingest(hs, cfg, "acme-hub", [day1], seed=True)  # state as after night 1, nothing pending
            [(_, _, deltas)], _, _ = ingest(hs, cfg, "acme-hub", [day2])  # how many deltas day 2 makes
            # ... then forget day 2: back to the state after night 1.
            shutil.rmtree(d / "data")
            ingest(hs, cfg, "acme-hub", [day1], seed=True)
            rx = Listener(hs, port, d / "received.log")
            daemon = subprocess.Popen([hs, "run", "-c", cfg], stderr=subprocess.DEVNULL, env=ENV)
            time.sleep(1.5)
            shutil.copy(day2, d / "drop" / "day2.csv")
            t0 = time.time()
            (d / "drop" / "day2.csv.done").touch()
            wait_for(lambda: len(rx.lines()) >= deltas, 120, "day 2's webhooks")
            daemon.send_signal(signal.SIGINT)
            daemon.wait()
            rx.stop()
            run = sorted(int(line.split()[0]) / 1000 - t0 for line in rx.lines())
            samples += run
            firsts.append(run[0])
    samples.sort()
    return samples, firsts


def scenario_latency(hs, res, quick, runs):
    """Drop-to-webhook latency for a small day 2 (100 rows) and a big one
    (100k rows, 1% changed): the first webhook and the distribution."""
    pick = lambda xs, q: xs[min(len(xs) - 1, int(q * len(xs)))] * 1000
    # 100 rows; 30% of the cases move on, so that each run gives ~30 samples.
    small, _ = latency_runs(hs, 100, 30.0, runs, 19322)
    sec = "Latency: file complete → webhook received, 100-row day 2"
    label = f"100 cases, {len(small):,} webhooks"
    for q, name in [(0.5, "p50"), (0.99, "p99")]:
        res.add(sec, name, label, pick(small, q), "ms")
    res.add(sec, "max", label, small[-1] * 1000, "ms")
    res.bar("latency p99 ≤ 50 ms, 100-row day 2", pick(small, 0.99), None, 50, f"p99 {pick(small, 0.99):.1f} ms",
            lower_is_better=True, unit=" ms")
    n = 20_000 if quick else 100_000
    big, firsts = latency_runs(hs, n, 1.0, runs, 19322)
    sec = f"Latency: file complete → webhook received, {n:,}-case day 2 with 1% changed"
    label = f"{n:,} cases, {len(big):,} webhooks"
    first = max(firsts) * 1000  # the worst run's first webhook
    res.add(sec, "first webhook (worst run)", label, first, "ms")
    for q, name in [(0.5, "p50"), (0.99, "p99")]:
        res.add(sec, name, label, pick(big, q), "ms")
    res.add(sec, "max", label, big[-1] * 1000, "ms")
    res.bar(f"first webhook ≤ 50 ms, {n:,}-row day 2 (worst of {runs})", first, None, 50, f"{first:.1f} ms",
            lower_is_better=True, unit=" ms")
    res.bar(f"latency p99 ≤ 200 ms, {n:,}-row day 2", pick(big, 0.99), None, 200, f"p99 {pick(big, 0.99):.1f} ms",
            lower_is_better=True, unit=" ms")
    res.sample("latency_ms", {"small": [x * 1000 for x in small], "big": [x * 1000 for x in big],
                              "first": [x * 1000 for x in firsts]})


def wrk_script(path):
    """A wrk script POSTing one validly signed milestone-sized body, so the
    receiver does the same work (verify, parse, log) as for hubsync."""
    body = json.dumps({"type": "pa.approved", "timestamp": "2026-11-20T08:15:00Z",
                       "data": {"program": "ACME-ONC", "case_id": "CASE-00000001", "milestone": "pa.approved",
                                "occurred_at": "2026-11-19", "sequence": 3, "padding": "x" * 700}})
    msg_id, ts = "msg_wrk", str(int(time.time()))
    key = base64.b64decode(SECRET.removeprefix("whsec_"))
    sig = base64.b64encode(hmac.new(key, f"{msg_id}.{ts}.{body}".encode(), hashlib.sha256).digest()).decode()
    lua = lambda s: json.dumps(s)  # a JSON string literal is a valid Lua string literal here
    path.write_text(f'wrk.method = "POST"\nwrk.body = {lua(body)}\n'
                    f'wrk.headers["content-type"] = "application/json"\n'
                    f'wrk.headers["webhook-id"] = {lua(msg_id)}\nwrk.headers["webhook-timestamp"] = {lua(ts)}\n'
                    f'wrk.headers["webhook-signature"] = {lua("v1," + sig)}\n')


def drain(hs, cfg, port, count, instances=1, db=None, pg=None):
    """Starts `instances` daemons on a committed backlog of `count` messages and
    a quiet `hubsync listen`; returns msg/s from the first to the last receipt
    (start-up left out)."""
    rx = Listener(hs, port, Path(cfg).parent / f"quiet-{instances}.log", quiet=True)
    daemons = [subprocess.Popen([hs, "run", "-c", cfg], stderr=subprocess.DEVNULL, env=ENV)
               for _ in range(instances)]
    try:
        left = (lambda: pending(db)) if db else (lambda: int(pg.psql("SELECT COUNT(*) FROM deliveries WHERE status = 0")))
        wait_for(lambda: left() == 0, 900, "the backlog to drain")
    finally:
        for p in daemons:
            p.send_signal(signal.SIGINT)
        for p in daemons:
            p.wait()
        got, first, last = rx.stop()
    if got < count:
        raise RuntimeError(f"the receiver got {got} of {count} messages")
    return (got - 1) / max((last - first) / 1000, 1e-3)


def scenario_delivery(hs, res, quick, runs):
    """Sustained signed deliveries: a backlog committed by `hubsync ingest`,
    drained by `hubsync run` into `hubsync listen --quiet`; the same quiet
    receiver driven by wrk (the loopback ceiling) and by Python `requests`."""
    sec = "Deliveries: sustained signed webhooks to a local receiver (hubsync listen --quiet)"
    n = 2_000 if quick else 50_000
    day1 = gen_csv(n, DATA / f"snap_{n}_day1.csv")
    port = 19323
    rates, count = [], 0
    for _ in range(runs):
        with tempfile.TemporaryDirectory() as d:
            d = Path(d)
            cfg = project(d, url=f"http://127.0.0.1:{port}/", config_extra='[delivery]\npoll_interval = "50ms"')
            [(_, _, count)], _, _ = ingest(hs, cfg, "acme-hub", [day1])  # the backlog: one message per delta
            rates.append(drain(hs, cfg, port, count, db=d / "data" / "hubsync.db"))
    wrk, wrk_env = wrk_command()
    wrk_rates, py_rates = [], []
    secs = 3 if quick else 10
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        for _ in range(runs):
            rx = Listener(hs, port, d / "wrk.log", quiet=True)
            wrk_script(d / "post.lua")
            p = sh([*wrk, "-t2", "-c64", f"-d{secs}s", "-s", d / "post.lua", rx.url], env=wrk_env)
            rx.stop()
            non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", p.stdout)
            if non2xx:
                raise RuntimeError(f"the receiver refused wrk's requests:\n{p.stdout}")
            wrk_rates.append(float(re.search(r"Requests/sec:\s+([\d.]+)", p.stdout).group(1)))
            rx = Listener(hs, port, d / "py.log", quiet=True)
            py_rates.append(py_peer("python_deliver.py", rx.url, SECRET, 500 if quick else 5_000)["per_s"])
            rx.stop()
    label = f"{count:,} messages"
    res.add(sec, "hubsync run → hubsync listen --quiet, max_in_flight 64", label, median(rates), "msg/s",
            "Python requests (one Session, sequential)", median(py_rates))
    res.add(sec, "hubsync run → hubsync listen --quiet, max_in_flight 64", label, median(rates), "msg/s",
            "wrk -t2 -c64, same receiver (ceiling)", median(wrk_rates))
    res.bar("deliveries ≥ 50% of wrk against the same receiver", median(rates), median(wrk_rates), 0.5,
            f"{median(rates):,.0f} vs {median(wrk_rates):,.0f} msg/s")
    res.sample("delivery", {"hubsync": rates, "wrk": wrk_rates, "requests": py_rates})


def scenario_rss(hs, res, quick):
    """Peak RSS on a ~1 GB CSV: a few cases repeated, so the file is large
    and the state is not (what is measured is streaming, not state size)."""
    sec = "Peak RSS on a large CSV"
    cases, repeat = (2_000, 20) if quick else (100_000, 74)
    big = gen_csv(cases, DATA / f"big_{cases}x{repeat}.csv", repeat=repeat)
    with tempfile.TemporaryDirectory() as d:
        cfg = project(Path(d))
        [(rows, _, _)], _, rss = ingest(hs, cfg, "acme-hub", [big], seed=True)
    res.add(sec, "hubsync ingest, peak RSS", f"{big.stat().st_size / 1e9:.2f} GB, {rows:,} rows", rss, "MiB")
    res.bar(f"peak RSS on a {big.stat().st_size / 1e9:.2f} GB CSV ≤ 64 MiB", rss, None, 64, f"{rss:.1f} MiB",
            lower_is_better=True, unit=" MiB")


PG_ADMIN = os.environ.get("HUBSYNC_TEST_PG", "postgres://postgres@127.0.0.1:5432/test")


class Pg:
    """A throw-away database on the tests' PostgreSQL, dropped afterwards."""

    def __init__(self):
        self.name = f"hubsync_bench_{os.getpid()}_{int(time.time() * 1000) % 10**8}"
        self.url = PG_ADMIN.rsplit("/", 1)[0] + "/" + self.name
        self.psql(f"CREATE DATABASE {self.name}", PG_ADMIN)

    def psql(self, sql, url=None):
        return sh(["psql", url or self.url, "-Atc", sql]).stdout.strip()

    def drop(self):
        self.psql(f"DROP DATABASE IF EXISTS {self.name} WITH (FORCE)", PG_ADMIN)


def scenario_postgres(hs, res, quick, runs, n):
    """PostgreSQL against SQLite in the same run: first load and cold re-load
    of the same snapshot; then one and two `hubsync run` instances draining
    one backlog into a quiet receiver."""
    sec = "PostgreSQL vs SQLite (same files, same run)"
    day1 = gen_csv(n, DATA / f"snap_{n}_day1.csv")
    day2 = gen_csv(n, DATA / f"snap_{n}_day2.csv", changed=1.0)
    fig = {"sqlite": ([], []), "postgres": ([], [])}
    for _ in range(runs):
        for backend in ["sqlite", "postgres"]:
            with tempfile.TemporaryDirectory() as d:
                pg = Pg() if backend == "postgres" else None
                try:
                    extra = f'[store]\nurl = "{pg.url}"' if pg else ""
                    cfg = project(Path(d), config_extra=extra)
                    [(rows, secs, _)], _, _ = ingest(hs, cfg, "acme-hub", [day1])
                    fig[backend][0].append(rows / secs)
                    [(rows, secs, _)], idx, _ = ingest(hs, cfg, "acme-hub", [day2])
                    fig[backend][1].append(rows / (secs + idx))
                finally:
                    if pg:
                        pg.drop()
    label = f"{n:,} cases"
    (sf, sr), (pf, pr) = [tuple(median(x) for x in fig[b]) for b in ["sqlite", "postgres"]]
    res.add(sec, "first load", label, pf, "rows/s", "SQLite, same run", sf)
    res.add(sec, "re-load, cold process (index load included)", label, pr, "rows/s", "SQLite, same run", sr)
    res.bar(f"PostgreSQL first load ≥ 50% of SQLite's ({label})", pf, sf, 0.5, f"{pf:,.0f} vs {sf:,.0f} rows/s")
    res.bar(f"PostgreSQL re-load ≥ 70% of SQLite's ({label})", pr, sr, 0.7, f"{pr:,.0f} vs {sr:,.0f} rows/s")
    m = 2_000 if quick else 30_000
    src = gen_csv(m, DATA / f"snap_{m}_day1.csv")
    drains = {1: [], 2: []}
    count = 0
    for _ in range(runs):
        for k in drains:
            with tempfile.TemporaryDirectory() as d:
                pg = Pg()
                try:
                    cfg = project(Path(d), url="http://127.0.0.1:19324/",
                                  config_extra=f'[store]\nurl = "{pg.url}"\n[delivery]\npoll_interval = "50ms"')
                    [(_, _, count)], _, _ = ingest(hs, cfg, "acme-hub", [src])
                    drains[k].append(drain(hs, cfg, 19324, count, instances=k, pg=pg))
                finally:
                    pg.drop()
    one, two = median(drains[1]), median(drains[2])
    res.add(sec, "deliveries, one instance", f"{count:,} messages", one, "msg/s")
    res.add(sec, "deliveries, two instances", f"{count:,} messages", two, "msg/s", "one instance", one)
    res.bar("PostgreSQL: one instance drains ≥ 10k deliveries/s", one, None, 10_000, f"{one:,.0f} msg/s",
            unit=" msg/s")
    res.bar("PostgreSQL: two instances ≥ 1.5× one", two, one, 1.5, f"{two:,.0f} vs {one:,.0f} msg/s")
    res.sample("postgres", {"load": fig, "drain": drains})


def scenario_callgrind(hs, res, quick):
    """Instructions per row (all threads) under callgrind for a first load and
    a re-load (1% changed) of the same snapshot: a noise-free figure to
    compare changes with. valgrind has no SHA-NI, so hashing is over-weighted."""
    sec = "Callgrind: instructions per row (every thread)"
    if not shutil.which("valgrind"):
        print("valgrind not found: no instruction counts", file=sys.stderr)
        return
    n = 500 if quick else 20_000
    day1 = gen_csv(n, DATA / f"snap_{n}_day1.csv")
    day2 = gen_csv(n, DATA / f"snap_{n}_day2.csv", changed=1.0)
    with tempfile.TemporaryDirectory() as d:
        cfg = project(Path(d))
        for name, f in [("first load", day1), ("re-load, 1% changed (index load included)", day2)]:
            out = Path(d) / "callgrind.out"
            p = sh(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", hs, "ingest", "-c", cfg,
                    "--connector", "acme-hub", f])
            ir = int(re.search(r"Collected : (\d+)", p.stderr).group(1))
            res.add(sec, name, f"{n:,} rows", ir / n, "instructions/row")
            res.sample(f"callgrind {name}", [ir])


def xsv():
    path = PEERS / "bin" / "bin" / "xsv"
    if not path.exists():
        sh(["cargo", "install", "--quiet", "xsv", "--root", PEERS / "bin"])
    return path


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="small sizes, 1 run, debug build (CI)")
    ap.add_argument("--runs", type=int, help="runs per scenario (default 3; 1 with --quick)")
    ap.add_argument("--sizes", help="CSV snapshot sizes, comma-separated (default 100000,1000000)")
    ap.add_argument("--only", help="scenarios to run: csv,x12,xlsx,latency,delivery,rss,postgres,callgrind "
                                   "(default all)")
    a = ap.parse_args()
    global QUICK
    QUICK = a.quick
    runs = a.runs or (1 if a.quick else 3)
    sizes = [int(x) for x in a.sizes.split(",")] if a.sizes else ([20_000] if a.quick else [100_000, 1_000_000])
    only = set(a.only.split(",")) if a.only else {"csv", "x12", "xlsx", "latency", "delivery", "rss", "postgres",
                                                  "callgrind"}
    DATA.mkdir(parents=True, exist_ok=True)
    t = time.time()
    hs = binary(a.quick)
    install_python_peers()
    print(f"bench: build and peers took {time.time() - t:.0f} s", file=sys.stderr)
    res = Results()
    started = time.time()
    load = os.getloadavg()[0]
    def csv_with_listener():
        rx = Listener(hs, 19321, OUT / "csv-peer.log")
        try:
            scenario_csv(hs, res, sizes, runs, rx.url)
        finally:
            rx.stop()

    scenarios = [
        ("csv", csv_with_listener),
        ("x12", lambda: scenario_x12(hs, res, a.quick, runs)),
        ("xlsx", lambda: scenario_xlsx(hs, res, a.quick, runs)),
        ("latency", lambda: scenario_latency(hs, res, a.quick, runs)),
        ("delivery", lambda: scenario_delivery(hs, res, a.quick, runs)),
        ("rss", lambda: scenario_rss(hs, res, a.quick)),
        ("postgres", lambda: scenario_postgres(hs, res, a.quick, runs, 5_000 if a.quick else sizes[0])),
        ("callgrind", lambda: scenario_callgrind(hs, res, a.quick)),
    ]
    for name, run in scenarios:
        if name in only:
            t = time.time()
            run()
            # What each scenario costs, so the CI budget (RELIABILITY.md) can be kept.
            print(f"bench: {name} took {time.time() - t:.0f} s", file=sys.stderr)
    mode = "Quick mode: small sizes, 1 run, debug build; not figures to quote." if a.quick else \
        f"Medians of {runs} runs (pyx12 and openpyxl: 1 run, each takes minutes), release build."
    header = (f"Machine: {os.cpu_count()} cores, load average {load:.2f} at start; {mode} "
              f"Whole run: {time.time() - started:.0f} s. Command: `bench/run {' '.join(sys.argv[1:])}`.")
    table = res.markdown(header)
    (OUT / "results.md").write_text(table)
    (OUT / "results.json").write_text(json.dumps({"header": header, "samples": res.samples}, indent=1))
    print(table)


if __name__ == "__main__":
    main()
