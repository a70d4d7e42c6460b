#!/usr/bin/env bash
# Journey timer benchmarks with the release binary (BENCHMARKS.md, "Journey
# timers (issue 15)"):
#
#   bench/journeys.sh ROWS [RUNS]
#
# 1. `hubsync ingest` of a ROWS-case snapshot (scripts/gen-hub-csv.py) and
#    of its next night (1% of cases moved on), with no rules and with a
#    rule every milestone triggers (every case armed), interleaved, RUNS
#    times: rows/s of the first load and of the re-load, and peak RSS.
# 2. The daemon's RSS with every case's timer armed in the store vs none.
# 3. Firing: ROWS timers armed by the same ingest with a 1 s deadline, then
#    `hubsync run` fires them all at start; the rate comes from the log's
#    batch lines (2,000 per transaction).
# 4. Memory against the number of armed timers: one store of ROWS cases,
#    its timers doubled twice in SQL (each copy a case of its own), and the
#    daemon's RSS over each (0, 1x, 2x, 4x armed), after its start-up reads
#    and the admin API's journey reads (metrics gauges, open stalls, stats).
#    Bounded memory means the same RSS at 4x as at 1x.
#
#   MEMORY_ONLY=1 bench/journeys.sh ROWS   runs step 4 alone.
#
# Examples/bench-journeys.rs measures the same in process (with criterion's
# dev-dependencies built in release: slow to compile on a busy machine).
set -euo pipefail
cd "$(dirname "$0")/.."
ROWS=${1:-100000}
RUNS=${2:-3}
HS=${HUBSYNC_BIN:-target/release/hubsync}
OUT=$(mktemp -d)
[ -n "${KEEP:-}" ] && echo "keeping $OUT" || trap 'rm -rf "$OUT"' EXIT
export K=bench-pseudonym-key-0123456789 S=whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw
python3 scripts/gen-hub-csv.py "$ROWS" "$OUT/day1.csv"
python3 scripts/gen-hub-csv.py "$ROWS" "$OUT/day2.csv" --changed-pct 1
echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"

project() { # DIR DEADLINE|none
  mkdir -p "$1/connectors" "$1/mappings"
  cp mappings/acme-hub-status.toml "$1/mappings/"
  printf 'program = "ACME-ONC"\nmapping = "acme-hub-status"\ntime_zone = "America/New_York"\n[source]\nkind = "local"\npath = "drop"\npattern = "*.csv"\n[format]\nkind = "csv"\n' > "$1/connectors/acme-hub.toml"
  printf 'data_dir = "data"\n[pseudonymization]\nkey_env = "K"\n[delivery]\npoll_interval = "100ms"\n[[subscribers]]\nname = "mfr"\nurl = "http://127.0.0.1:9/"\nsecret_env = "S"\nretry_schedule = []\n' > "$1/config.toml"
  if [ "$2" != none ]; then
    mkdir -p "$1/journeys"
    printf 'program = "ACME-ONC"\n[[rule]]\nname = "every-case"\ntrigger = "{referral,bv,pa,copay,therapy,case,dispense}.*"\nawaits = ["adverse_event.reported"]\ndeadline = "%s"\nfrom = "learned_at"\n' "$2" > "$1/journeys/acme-onc.toml"
  fi
}

rate() { # LOGFILE -> rows/s of the file line
  sed -n 's/.* rows in [0-9.]*s (\([0-9]*\) rows\/s).*/\1/p' "$1" | head -n1
}
rss() { sed -n 's/peak RSS: \([0-9.]*\) MiB/\1/p' "$1" | head -n1; }

memory() {
  echo "== daemon memory against armed timers, $ROWS cases"
  local d="$OUT/mem" port=$((20000 + RANDOM % 20000))
  project "$d" 30d
  printf '[admin]\nlisten = "127.0.0.1:%s"\ntoken_env = "T"\n' "$port" >> "$d/config.toml"
  export T=bench-admin-token-0123456789
  "$HS" ingest -c "$d/config.toml" --connector acme-hub "$OUT/day1.csv" 2> "$d/day1.log"
  mkdir -p "$d/drop"
  # The same state without timers: the baseline the timers are added to.
  cp -r "$d" "$OUT/mem0"
  sqlite3 "$OUT/mem0/data/hubsync.db" "DELETE FROM journey_timers; VACUUM;"
  measure() { # DIR LABEL
    "$HS" run -c "$1/config.toml" 2> "$1/run.log" &
    local pid=$! api="http://127.0.0.1:$port" up=""
    for _ in $(seq 1 600); do
      curl -fsS -o /dev/null -H "Authorization: Bearer $T" "$api/readyz" 2>/dev/null && { up=1; break; }
      sleep 0.2
    done
    [ -n "$up" ] || { echo "daemon not ready"; kill "$pid"; return 1; }
    sleep 5
    local at="started $(vm "$pid")"
    # The reads an operator's dashboard makes, each a walk of the timers.
    for path in metrics v1/journeys/stalls v1/journeys/stats; do
      curl -fsS -o /dev/null -H "Authorization: Bearer $T" "$api/$path"
      at="$at; after /$path $(vm "$pid")"
    done
    echo "$2: armed $(timers "$1" 0), store $(du -m "$1/data/hubsync.db" | cut -f1) MiB; VmRSS (VmHWM): $at"
    kill "$pid"; wait "$pid" || true
  }
  measure "$OUT/mem0" "no timers"
  measure "$d" "1x"
  for x in 2 4; do
    # Each copy of a timer is another case's (case_id suffixed), so the
    # unique key holds and the indexes grow as real arming would grow them.
    sqlite3 "$d/data/hubsync.db" "INSERT INTO journey_timers (program, case_id, rule, trigger_milestone, trigger_occurrence, trigger_occurred_at, connector, armed_at, deadline_at, status) SELECT program, case_id || '~$x', rule, trigger_milestone, trigger_occurrence, trigger_occurred_at, connector, armed_at, deadline_at, status FROM journey_timers;"
    measure "$d" "${x}x"
  done
}
vm() { awk '/VmRSS/ {r=$2} /VmHWM/ {h=$2} END {printf "%.0f (%.0f) MiB", r/1024, h/1024}' "/proc/$1/status"; }
timers() { sqlite3 "$1/data/hubsync.db" "SELECT COUNT(*) FROM journey_timers WHERE status = $2" 2>/dev/null || echo "?"; }
if [ -n "${MEMORY_ONLY:-}" ]; then memory; exit 0; fi

echo "== load and re-load, $ROWS rows, $RUNS interleaved run(s)"
for run in $(seq 1 "$RUNS"); do
  for mode in none 30d; do
    d="$OUT/load-$mode-$run"
    project "$d" "$mode"
    "$HS" ingest -c "$d/config.toml" --connector acme-hub "$OUT/day1.csv" 2> "$d/day1.log"
    "$HS" ingest -c "$d/config.toml" --connector acme-hub "$OUT/day2.csv" 2> "$d/day2.log"
    echo "run $run rules=$mode: first load $(rate "$d/day1.log") rows/s (peak RSS $(rss "$d/day1.log") MiB), re-load $(rate "$d/day2.log") rows/s (peak RSS $(rss "$d/day2.log") MiB); load $(cut -d' ' -f1 /proc/loadavg)"
  done
done
echo "timers armed in the last run: $(timers "$OUT/load-30d-$RUNS" 0)"

echo "== daemon RSS over the store (nothing due), 5 s after start"
for mode in none 30d; do
  d="$OUT/load-$mode-$RUNS"
  mkdir -p "$d/drop"
  "$HS" run -c "$d/config.toml" 2> "$d/run.log" &
  pid=$!
  sleep 5
  echo "rules=$mode: VmRSS $(awk '/VmRSS/ {printf "%.1f MiB", $2/1024}' /proc/$pid/status), VmHWM $(awk '/VmHWM/ {printf "%.1f MiB", $2/1024}' /proc/$pid/status), armed timers $(timers "$d" 0)"
  kill "$pid"; wait "$pid" || true
done

echo "== firing $ROWS cases' due stalls at start"
d="$OUT/fire"
project "$d" 1s
"$HS" ingest -c "$d/config.toml" --connector acme-hub "$OUT/day1.csv" 2> "$d/ingest.log"
armed=$(timers "$d" 0)
sleep 2
mkdir -p "$d/drop"
RUST_LOG=hubsync::timers=info "$HS" run -c "$d/config.toml" > "$d/run.log" 2>&1 &
pid=$!
for _ in $(seq 1 600); do
  left=$(timers "$d" 0)
  [ "$left" = 0 ] && break
  sleep 0.5
done
kill "$pid"; wait "$pid" || true
python3 - "$d/run.log" "$armed" <<'EOF'
import re, sys, datetime
lines = [l for l in open(sys.argv[1]) if "journey stalls found" in l]
ts = lambda l: datetime.datetime.fromisoformat(re.search(r"(\d{4}-\d\d-\d\dT[\d:.]+)Z", l).group(1))
n = sum(int(re.search(r"stalled=(\d+)", l).group(1)) for l in lines)
first, last = ts(lines[0]), ts(lines[-1])
# The first batch's own time is not in the span: count from the first
# batch's end, over the batches after it.
n_after = n - int(re.search(r"stalled=(\d+)", lines[0]).group(1))
secs = (last - first).total_seconds()
print(f"armed {sys.argv[2]}, fired {n} in {len(lines)} batches; {n_after} after the first batch in {secs:.2f}s: {n_after / secs if secs else float('nan'):.0f} stalls/s (outbox + delivery rows committed)")
EOF
memory
echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
