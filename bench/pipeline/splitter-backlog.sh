#!/usr/bin/env bash
# The splitter draining a backlog: N demo JPEGs are resized by `eyeflow up
# --processors resize` (nothing splits them), then the same data directory is
# started again with `--processors splitter` alone and timed until every
# image is split. Two builds side by side, alternated A B A B for ROUNDS
# rounds; medians last.
#
#   A=/tmp/eyeflow-before B=/tmp/eyeflow-after N=300 ROUNDS=3 bench/pipeline/splitter-backlog.sh [IMAGEFOLDER_DIR]
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
N="${N:-300}"
ROUNDS="${ROUNDS:-3}"
tmp="$(mktemp -d)"
pid=""
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$tmp"' EXIT
A="${A:?A=path to the first eyeflow build}"
B="${B:-}"
if [ -z "$B" ]; then (cd "$root" && go build -o "$tmp/b" ./cmd/eyeflow); B="$tmp/b"; fi
(cd "$root" && go build -o "$tmp/analyze" ./bench/pipeline/analyze)
# shellcheck source=bench/pipeline/lib.sh
. "$root/bench/pipeline/lib.sh"
N=$(stage_images "$A" "${1:-}" "$N" "$tmp/in")
http=127.0.0.1:18022 nats=127.0.0.1:14222
processed() { curl -fsS "http://$http/metrics" | awk -v s="stage=\"$1\"" 'index($1, "eyeflow_messages_processed_total{") == 1 && index($1, s) {t += $2} END {print int(t)}'; }
echo "images: $N; $(nproc) cores; load: $(uptime)"
results="$tmp/results.tsv"
for r in $(seq 1 "$ROUNDS"); do
  for side in A B; do
    bin="$A"; [ "$side" = B ] && bin="$B"
    rm -rf "$tmp/data"
    "$bin" up --data "$tmp/data" --http "$http" --nats-listen "$nats" --processors resize --log-format json >"$tmp/up.log" 2>&1 &
    pid=$!
    wait_http "http://$http/readyz"
    "$bin" put --nats "nats://$nats" "$tmp/in" >/dev/null
    until [ "$(processed resize)" -ge "$N" ]; do sleep 0.2; done
    kill "$pid"; wait "$pid" 2>/dev/null || true
    "$bin" up --data "$tmp/data" --http "$http" --nats-listen "$nats" --processors splitter --log-format json >"$tmp/split.log" 2>&1 &
    pid=$!
    wait_http "http://$http/healthz"
    until [ "$(processed splitter)" -ge "$N" ]; do sleep 0.2; done
    # From the first split event stored to the last: the splitter's own pace.
    read -r span count < <("$tmp/analyze" --nats "nats://$nats" --span EYE_SPLITS)
    kill "$pid"; wait "$pid" 2>/dev/null || true; pid=""
    rate=$(awk -v n="$count" -v s="$span" 'BEGIN {printf "%.1f", (n - 1) / s}')
    printf '%s\t%s\t%s\n' "$r" "$side" "$rate" >>"$results"
    echo "round $r $side: $rate images/s split from a backlog of $N"
  done
done
python3 - "$results" <<'PY'
import sys, statistics
rows = [l.split("\t") for l in open(sys.argv[1])]
a = [float(r[2]) for r in rows if r[1] == "A"]; b = [float(r[2]) for r in rows if r[1] == "B"]
ratios = [y / x for x, y in zip(a, b)]
print("median images/s: A %.1f, B %.1f; median of the paired ratios B/A %.2fx" % (statistics.median(a), statistics.median(b), statistics.median(ratios)))
PY
echo "load: $(uptime)"
