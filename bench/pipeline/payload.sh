#!/usr/bin/env bash
# Pixels inline or by reference: the embedded pipeline (`eyeflow up`, every
# stage, or PROCESSORS=resize,splitter,classifier) on the same N demo JPEGs, once with --inline-rgb=true (the 224x224
# pixels as base64 in eye.resized and every eye.split event) and once with
# --inline-rgb=false (the events name the processed PNG; the classifier reads
# and decodes it, once per process for all envs), alternated A B A B for
# ROUNDS rounds. Each run prints the seconds from the first upload to prod's
# last prediction, bytes per image in EYE_RESIZED and EYE_SPLITS (and all
# JetStream storage), each stage's share of processing time and prod's mean
# batch, as bench/pipeline/analyze reports them; the last lines are medians.
#
#   bench/pipeline/payload.sh [IMAGEFOLDER_DIR]     (default: N demo images)
#   N=300 ROUNDS=2 bench/pipeline/payload.sh
#   MODES="false" EXTRA="--resize-concurrency 2" bench/pipeline/payload.sh   (one mode, extra flags)
#   BIN=/path/to/other/eyeflow bench/pipeline/payload.sh                      (another build, e.g. the last release)
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
N="${N:-300}"
ROUNDS="${ROUNDS:-2}"
MODES="${MODES:-true false}"
EXTRA="${EXTRA:-}"
tmp="$(mktemp -d)"
pid=""
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$tmp"' EXIT
(cd "$root" && go build -o "$tmp/analyze" ./bench/pipeline/analyze)
if [ -n "${BIN:-}" ]; then cp "$BIN" "$tmp/eyeflow"; else (cd "$root" && go build -o "$tmp/eyeflow" ./cmd/eyeflow); fi
# shellcheck source=bench/pipeline/lib.sh
. "$root/bench/pipeline/lib.sh"
N=$(stage_images "$tmp/eyeflow" "${1:-}" "$N" "$tmp/in")
now() { date +%s%N; }
echo "images: $N JPEGs from ${1:-demo data}; $(nproc) cores; load: $(uptime)"
http=127.0.0.1:18012 nats=127.0.0.1:14212
results="$tmp/results.tsv"
for r in $(seq 1 "$ROUNDS"); do
  for inline in $MODES; do
    rm -rf "$tmp/data"
    # shellcheck disable=SC2086
    "$tmp/eyeflow" up --data "$tmp/data" --http "$http" --nats-listen "$nats" --log-format json \
      ${PROCESSORS:+--processors "$PROCESSORS"} --inline-rgb="$inline" $EXTRA >"$tmp/eyeflow.log" 2>&1 &
    pid=$!
    wait_http "http://$http/readyz"
    until curl -fsS "http://$http/metrics" | grep -q '^eyeflow_classifier_info{.*env="prod"'; do sleep 0.5; done
    t0=$(now)
    "$tmp/eyeflow" put --nats "nats://$nats" "$tmp/in" >/dev/null
    wait_predicted "$http" "$N"
    t1=$(now)
    "$tmp/analyze" --nats "nats://$nats" --metrics "http://$http/metrics" >"$tmp/a.json"
    kill "$pid"; wait "$pid" 2>/dev/null || true; pid=""
    python3 - "$tmp/a.json" "$inline" "$t0" "$t1" "$N" "$r" >>"$results" <<'PY'
import json, sys
a = json.load(open(sys.argv[1])); inline = sys.argv[2]; t0, t1, n, r = int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), sys.argv[6]
secs = (t1 - t0) / 1e9
st = a["streams"]; sh = a["stage_time_share"]
res = st.get("EYE_RESIZED", {}).get("bytes_per_image", 0); spl = st.get("EYE_SPLITS", {}).get("bytes_per_image", 0)
print("\t".join(str(x) for x in [r, inline, "%.1f" % secs, "%.1f" % (n / secs), "%.0f" % res, "%.0f" % spl, "%.0f" % (res + spl),
      "%.0f" % a["jetstream_bytes_per_image"], "%.3f" % sh.get("resize", 0), "%.3f" % sh.get("splitter", 0), "%.3f" % sh.get("classifier", 0), "%.2f" % a["mean_batch"],
      "%.1f" % sh.get("resize_ms_per_call", 0), "%.1f" % sh.get("splitter_ms_per_call", 0), "%.1f" % sh.get("classifier_ms_per_call", 0)]))
PY
    printf 'round %s inline=%-5s %s\n' "$r" "$inline" "$(tail -1 "$results" | cut -f3-)"
    python3 -c 'import json,sys; a=json.load(open(sys.argv[1])); print("  bytes per image:", ", ".join("%s %.0f" % (k, v["bytes_per_image"]) for k, v in sorted(a["streams"].items())), "; all JetStream %.0f" % a["jetstream_bytes_per_image"])' "$tmp/a.json"
  done
done
echo "columns: seconds images/s resized_B/img splits_B/img both_B/img jetstream_B/img share_resize share_splitter share_classifier mean_batch ms/call:resize,splitter,classifier(batch)"
python3 - "$results" <<'PY'
import sys, statistics
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1])]
for mode in dict.fromkeys(r[1] for r in rows):
    sel = [r for r in rows if r[1] == mode]
    med = [statistics.median(float(r[i]) for r in sel) for i in range(2, 15)]
    print("median inline=%-5s (%d runs): %.1f s, %.1f images/s, EYE_RESIZED %.0f B/img, EYE_SPLITS %.0f B/img, both %.0f B/img, all JetStream %.0f B/img, stage share resize %.3f splitter %.3f classifier %.3f, mean batch %.2f, ms per call resize %.1f splitter %.1f classifier %.1f"
          % (mode, len(sel), *med))
PY
echo "load: $(uptime)"
