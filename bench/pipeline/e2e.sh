#!/usr/bin/env bash
# The end-to-end benchmark: N fundus JPEGs of 2048x1536 through every stage of
# the embedded default (`eyeflow up`: ingest, resize, splitter, the synthetic
# DenseNet121 classifier on ONNX Runtime, driftwatch, labelsink), next to the
# old stack doing the same work on the same machine: the batch ETL transform
# (../shared/peers/seed_transform.py: resize, split, PNGs) and then every image
# POSTed to the old FastAPI + PyTorch service, both with glibc malloc tuned as
# the peers' README asks.
#
#   bench/pipeline/e2e.sh [IMAGEFOLDER_DIR]      (default: N demo images)
#   N=300 bench/pipeline/e2e.sh
#   PER_CLASS=20 bench/pipeline/e2e.sh DIR       (at most 20 images of each class)
#
# The old transform's stratified splits (sklearn) need at least 2 test images
# per class, about 10 images per class in all: with the imbalanced demo set,
# pass a large set and PER_CLASS so every class has enough.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
peers="${PEERS:-$root/../shared/peers}"
N="${N:-300}"
tmp="$(mktemp -d)"
# shellcheck source=bench/pipeline/lib.sh
. "$root/bench/pipeline/lib.sh"
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true; rm -rf "$tmp"' EXIT
(cd "$root" && go build -o "$tmp/eyeflow" ./cmd/eyeflow && go build -o "$tmp/loadgen" ./bench/loadgen && go build -o "$tmp/analyze" ./bench/pipeline/analyze)
src="${1:-}"
if [ -z "$src" ]; then
  src="$tmp/images"
  "$tmp/eyeflow" demo-data --out "$src" --total "$N" >/dev/null
fi
if [ -n "${PER_CLASS:-}" ]; then
  all=()
  for d in "$src"/*/; do
    mapfile -t some < <(find "$d" -type f -name '*.jpg' | sort | head -"$PER_CLASS")
    all+=("${some[@]}")
  done
else
  mapfile -t all < <(find "$src" -type f -name '*.jpg' | sort | head -"$N")
fi
N=${#all[@]}
mkdir -p "$tmp/in"
for f in "${all[@]}"; do c="$(basename "$(dirname "$f")")"; mkdir -p "$tmp/in/$c"; cp "$f" "$tmp/in/$c/"; done
now() { date +%s%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.1f", (b - a) / 1e9}'; }
echo "images: $N JPEGs from $src; load: $(uptime)"

# eyeflow, embedded default.
http=127.0.0.1:18002 nats=127.0.0.1:14202
"$tmp/eyeflow" up --data "$tmp/data" --http "$http" --nats-listen "$nats" --log-format json >"$tmp/eyeflow.log" 2>&1 &
pids+=($!)
wait_http "http://$http/readyz"
until curl -fsS "http://$http/metrics" | grep -q '^eyeflow_classifier_info{.*env="prod"'; do sleep 0.5; done
t0=$(now)
"$tmp/eyeflow" put --nats "nats://$nats" "$tmp/in" >/dev/null
wait_predicted "$http" "$N"
t1=$(now)
rss=$(awk '/VmHWM/ {printf "%.0f", $2 / 1024}' "/proc/${pids[0]}/status")
"$tmp/analyze" --nats "nats://$nats" --metrics "http://$http/metrics" | tee "$tmp/analyze.json"
kill "${pids[@]}"; wait 2>/dev/null || true; pids=()
new_s=$(secs "$t0" "$t1")
echo "eyeflow: $N images uploaded and classified in ${new_s}s, peak RSS ${rss} MiB"

# The old stack: the batch transform, then the service, one request per image.
export MALLOC_MMAP_THRESHOLD_=4294967296 MALLOC_TRIM_THRESHOLD_=68719476736
t0=$(now)
(cd "$peers" && RAW_DATA_DIR="$tmp/in" OUTPUT_DIR="$tmp/old-out" /usr/bin/python3 seed_transform.py >"$tmp/transform.log" 2>&1) ||
  { echo "the old transform failed:"; tail -5 "$tmp/transform.log"; exit 1; }
t1=$(now)
(cd "$peers" && exec env TORCH_THREADS=2 /usr/bin/python3 -m uvicorn seed_fastapi:app --host 127.0.0.1 --port 18003 --workers 1 >"$tmp/old.log" 2>&1) &
pids+=($!)
wait_http http://127.0.0.1:18003/metrics
t2=$(now)
"$tmp/loadgen" -name old-fastapi -url http://127.0.0.1:18003/predict -c 2 -n "$N" -warmup 0 "${all[@]}" >"$tmp/old.json"
t3=$(now)
oldrss=$(awk '/VmHWM/ {printf "%.0f", $2 / 1024}' "/proc/${pids[0]}/status")
transform_s=$(secs "$t0" "$t1") serve_s=$(secs "$t2" "$t3")
old_s=$(awk -v a="$transform_s" -v b="$serve_s" 'BEGIN {printf "%.1f", a + b}')
echo "old stack: transform ${transform_s}s + service ${serve_s}s (concurrency 2) = ${old_s}s, service peak RSS ${oldrss} MiB"
echo "load: $(uptime)"
awk -v n="$N" -v a="$new_s" -v b="$old_s" 'BEGIN {printf "images/s: eyeflow %.2f, old stack %.2f, ratio x%.2f\n", n / a, n / b, b / a}'
