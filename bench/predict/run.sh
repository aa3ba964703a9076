#!/usr/bin/env bash
# /predict side by side: the old FastAPI + PyTorch service (../shared/peers/
# seed_fastapi.py, one image per request, DenseNet121 with 15 classes, 2 torch
# threads, glibc malloc tuned as its README says) and eyeflow's POST /predict
# (same resize code as the pipeline, the classifier's dynamic batcher, the
# synthetic DenseNet121 on ONNX Runtime with its defaults for this machine:
# on 2 cores, two single-threaded runs at once), driven by the same
# closed-loop load generator at concurrency 1 and 16 with 2048x1536 JPEGs.
#
#   bench/predict/run.sh [IMAGE_DIR]     (default: ../shared/golden)
#   N1=60 N16=160 bench/predict/run.sh   (requests at concurrency 1 and 16)
#   EYEFLOW_ARGS="--threads 2 --parallel-runs 1" bench/predict/run.sh   (other eyeflow flags)
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
peers="${PEERS:-$root/../shared/peers}"
src="${1:-$root/../shared/golden}"
N1="${N1:-60}"
N16="${N16:-160}"
mapfile -t imgs < <(find "$src" -type f -name '*.jpg' | sort | head -20)
[ "${#imgs[@]}" -gt 0 ] || { echo "no JPEGs in $src" >&2; exit 1; }
tmp="$(mktemp -d)"
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true; rm -rf "$tmp"' EXIT
(cd "$root" && go build -o "$tmp/loadgen" ./bench/loadgen && go build -o "$tmp/eyeflow" ./cmd/eyeflow)

wait_http() { for _ in $(seq 1 600); do curl -fsS "$1" >/dev/null 2>&1 && return 0; sleep 0.2; done; echo "no answer from $1" >&2; return 1; }

echo "load: $(uptime)"
# The old service.
(cd "$peers" && exec env MALLOC_MMAP_THRESHOLD_=4294967296 MALLOC_TRIM_THRESHOLD_=68719476736 TORCH_THREADS=2 \
  /usr/bin/python3 -m uvicorn seed_fastapi:app --host 127.0.0.1 --port 18000 --workers 1 >"$tmp/old.log" 2>&1) &
pids+=($!)
wait_http http://127.0.0.1:18000/metrics
"$tmp/loadgen" -name old-fastapi -url http://127.0.0.1:18000/predict -c 1 -n "$N1" "${imgs[@]}" | tee "$tmp/old1.json"
"$tmp/loadgen" -name old-fastapi -url http://127.0.0.1:18000/predict -c 16 -n "$N16" "${imgs[@]}" | tee "$tmp/old16.json"
kill "${pids[@]}"; wait 2>/dev/null || true; pids=()

# eyeflow: only the classifier (prod) in an embedded up, so /predict has the
# machine; once per --max-batch in MAX_BATCHES (images and end-to-end latency
# per batch size).
MAX_BATCHES="${MAX_BATCHES:-1 8}"
port=18001
for mb in $MAX_BATCHES; do
  port=$((port + 1))
  "$tmp/eyeflow" up --data "$tmp/data-$mb" --http "127.0.0.1:$port" --nats-listen "127.0.0.1:$((port - 3800))" --log-format json \
    --processors classifier --envs prod --max-batch "$mb" ${EYEFLOW_ARGS:-} >"$tmp/eyeflow-$mb.log" 2>&1 &
  pids=($!)
  wait_http "http://127.0.0.1:$port/readyz"
  until curl -fsS -F "file=@${imgs[0]}" "http://127.0.0.1:$port/predict" >/dev/null 2>&1; do sleep 0.5; done
  grep -m1 '"model serving"' "$tmp/eyeflow-$mb.log" | python3 -c 'import json,sys; e=json.load(sys.stdin); print("eyeflow model:", e.get("provider"), "threads", e.get("threads"), "parallel runs", e.get("parallel_runs"))'
  "$tmp/loadgen" -name "eyeflow-max-batch-$mb" -url "http://127.0.0.1:$port/predict" -c 1 -n "$N1" "${imgs[@]}" | tee "$tmp/new1-$mb.json"
  "$tmp/loadgen" -name "eyeflow-max-batch-$mb" -url "http://127.0.0.1:$port/predict" -c 16 -n "$N16" "${imgs[@]}" | tee "$tmp/new16-$mb.json"
  rss=$(awk '/VmHWM/ {printf "%.0f", $2 / 1024}' "/proc/${pids[0]}/status")
  echo "eyeflow --max-batch $mb peak RSS: ${rss} MiB (embedded NATS + one DenseNet121 session)"
  kill "${pids[@]}"; wait 2>/dev/null || true; pids=()
done
echo "load: $(uptime)"

python3 - "$tmp" $MAX_BATCHES <<'PY'
import json, sys
d, batches = sys.argv[1], sys.argv[2:]
for c in ("1", "16"):
    o = json.load(open(f"{d}/old{c}.json"))
    print(f"concurrency {c:>2}: old service {o['requests_per_second']:.2f} req/s p50 {o['p50_ms']:.0f} ms p99 {o['p99_ms']:.0f} ms")
    for mb in batches:
        n = json.load(open(f"{d}/new{c}-{mb}.json"))
        print(f"    eyeflow --max-batch {mb:>2}: {n['requests_per_second']:.2f} req/s p50 {n['p50_ms']:.0f} ms p99 {n['p99_ms']:.0f} ms | "
              f"throughput x{n['requests_per_second'] / o['requests_per_second']:.2f}, p99 {o['p99_ms'] / n['p99_ms']:.1f}x lower")
PY
