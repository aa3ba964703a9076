#!/usr/bin/env bash
# The many-core check: resize alone, the full pipeline and the classifier's
# session plans on one machine, printed as one table. It runs from built
# binaries: the bigger machine needs no Go toolchain, no network and no
# Python, only bash, curl, awk and a glibc Linux (x86-64 like the build).
#
# Here (with Go): build and gather everything into DIR (about 100 MB):
#   bench/manycore/run.sh pack DIR
# There: copy DIR over (scp -r DIR host:), then
#   DIR/run.sh                     (N=1200 images; under 5 minutes on 16 cores)
#   N=600 DIR/run.sh               (fewer images)
#
# Steps, on N synthetic 2048x1536 fundus JPEGs made there (eyeflow demo-data):
#  1. resize alone: the embedded server holds the uploads (`eyeflow up
#     --processors ""`), then one `eyeflow resize` process resizes all of them,
#     timed from its start to its last image: once with --resize-concurrency 1
#     (one image at a time), once with the default (one per core);
#  2. the full pipeline: `eyeflow up` (resize, splitter, the synthetic
#     DenseNet121 classifier on ONNX Runtime for prod/canary/staging, driftwatch,
#     labelsink; not the trainer, which would train mid-run), timed from the
#     first upload to prod's last prediction;
#  3. the classifier: bench-classifier (bench/classifier) for the default plan,
#     1xCORES and 2xCORES/2 at batch 8: raw ONNX Runtime (warm sessions, one
#     goroutine per run) against the classifier stage.
# Targets (issue 15) on 16 cores: resize >= 12x its one-image rate; the full
# pipeline >= 0.9x the classifier's best raw rate.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"

if [ "${1:-}" = pack ]; then
  out="${2:?usage: bench/manycore/run.sh pack DIR}"
  root="$(cd "$here/../.." && pwd)"
  mkdir -p "$out/lib"
  (cd "$root" && go build -o "$out/eyeflow" ./cmd/eyeflow && go build -o "$out/bench-classifier" ./bench/classifier)
  ort="${EYEFLOW_ORT_LIB:-$(cd "$root" && scripts/install-ort.sh | tail -1)}"
  cp "$ort" "$out/lib/libonnxruntime.so.1"
  # The resize stage's libjpeg-turbo (cgo), in case the other machine lacks it.
  jpeg="$(ldd "$out/eyeflow" | awk '$1 == "libjpeg.so.62" {print $3}')"
  [ -n "$jpeg" ] && cp "$(readlink -f "$jpeg")" "$out/lib/libjpeg.so.62"
  cp "$here/run.sh" "$out/run.sh"
  echo "packed into $out: $(du -sh "$out" | cut -f1); copy it over and run $out/run.sh there"
  exit 0
fi

bin="$here"
[ -x "$bin/eyeflow" ] || { echo "no eyeflow next to this script: run 'bench/manycore/run.sh pack DIR' first, then DIR/run.sh" >&2; exit 1; }
export LD_LIBRARY_PATH="$bin/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export EYEFLOW_ORT_LIB="$bin/lib/libonnxruntime.so.1"
N="${N:-1200}"
cores="$(nproc)"
tmp="$(mktemp -d)"
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true; rm -rf "$tmp"' EXIT
now() { date +%s%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", (b - a) / 1e9}'; }
wait_http() { for _ in $(seq 1 1200); do curl -fsS "$1" >/dev/null 2>&1 && return 0; sleep 0.1; done; echo "no answer from $1" >&2; return 1; }
metric() { # url, awk condition on $1 -> sum of $2
  curl -fsS "$1" 2>/dev/null | awk -v want="$2" 'index($1, want) == 1 {s += $2} END {print int(s)}'
}
t_start=$(now)
echo "machine: $cores cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo), $(uname -m); load: $(uptime)"
echo "making $N demo images..."
"$bin/eyeflow" demo-data --out "$tmp/images" --total "$N" >/dev/null

http=127.0.0.1:18102 nats=127.0.0.1:14302 rhttp=127.0.0.1:18103
# 1. Resize alone.
resize_alone() { # concurrency (0: default)
  local k="$1" t0 t1
  "$bin/eyeflow" up --data "$tmp/r$k" --http "$http" --nats-listen "$nats" --log-format json --processors "" >"$tmp/up-r$k.log" 2>&1 &
  pids=($!)
  wait_http "http://$http/readyz"
  "$bin/eyeflow" put --nats "nats://$nats" "$tmp/images" >/dev/null
  until [ "$(metric "http://$http/metrics" 'eyeflow_messages_processed_total{stage="ingest"}')" -ge "$N" ]; do sleep 0.2; done
  t0=$(now)
  "$bin/eyeflow" resize --nats "nats://$nats" --http "$rhttp" --resize-concurrency "$k" --log-format json >"$tmp/resize-$k.log" 2>&1 &
  pids+=($!)
  until [ "$(metric "http://$rhttp/metrics" 'eyeflow_messages_processed_total{stage="resize"}')" -ge "$N" ]; do sleep 0.05; done
  t1=$(now)
  kill "${pids[@]}"; wait 2>/dev/null || true; pids=()
  awk -v n="$N" -v s="$(secs "$t0" "$t1")" 'BEGIN {printf "%.1f", n / s}'
}
echo "resize alone, one image at a time..."
r1=$(resize_alone 1)
echo "resize alone, default concurrency..."
rk=$(resize_alone 0)
rplan=$(grep -o '"resize_concurrency":[0-9]*' "$tmp/up-r0.log" | head -1 | cut -d: -f2)

# 2. The full pipeline.
echo "full pipeline..."
"$bin/eyeflow" up --data "$tmp/p" --http "$http" --nats-listen "$nats" --log-format json \
  --processors resize,splitter,classifier,driftwatch,labelsink >"$tmp/up-p.log" 2>&1 &
pids=($!)
wait_http "http://$http/readyz"
until curl -fsS "http://$http/metrics" 2>/dev/null | grep -q '^eyeflow_classifier_info{.*env="prod"'; do sleep 0.2; done
t0=$(now)
"$bin/eyeflow" put --nats "nats://$nats" "$tmp/images" >/dev/null
until [ "$(metric "http://$http/metrics" 'predictions_total{env="prod"')" -ge "$N" ]; do sleep 0.1; done
t1=$(now)
batch=$(curl -fsS "http://$http/metrics" | awk 'index($1, "eyeflow_classifier_batch_size_sum{env=\"prod\"") == 1 {s += $2} index($1, "eyeflow_classifier_batch_size_count{env=\"prod\"") == 1 {c += $2} END {if (c) printf "%.1f", s / c}')
kill "${pids[@]}"; wait 2>/dev/null || true; pids=()
pipe=$(awk -v n="$N" -v s="$(secs "$t0" "$t1")" 'BEGIN {printf "%.1f", n / s}')
plan=$(grep -m1 '"message":"plan"' "$tmp/up-p.log" | grep -o '"classifier_plan":"[^"]*"' | cut -d'"' -f4)

# 3. The classifier's plans.
echo "classifier plans..."
half=$((cores / 2)); [ "$half" -lt 1 ] && half=1
"$bin/bench-classifier" -configs "auto,1x$cores,2x$half" -batches 8 -n $((cores * 40)) -rounds 1 >"$tmp/cls.txt" 2>&1 || { cat "$tmp/cls.txt"; exit 1; }

echo
echo "| check | configuration | images/s | against |"
echo "|---|---|---|---|"
echo "| resize alone | one image at a time | $r1 | |"
echo "| resize alone | default: $rplan at once | $rk | $(awk -v a="$rk" -v b="$r1" 'BEGIN {printf "%.1fx one at a time (target on 16 cores: >= 12x)", a / b}') |"
best=0
while read -r cfg b raw stage ratio _; do
  echo "| classifier, batch $b | $cfg: raw ONNX Runtime | $raw | |"
  echo "| classifier, batch $b | $cfg: classifier stage | $stage | pipeline/raw $ratio |"
  best=$(awk -v a="$best" -v b="$raw" 'BEGIN {print (b > a) ? b : a}')
done < <(awk '$NF == "1)" && $(NF-1) == "(round" {print $1, $2, $3, $4, $5}' "$tmp/cls.txt")
echo "| full pipeline | eyeflow up, classifier $plan, mean prod batch $batch | $pipe | $(awk -v a="$pipe" -v b="$best" 'BEGIN {if (b > 0) printf "%.2fx the best raw classifier rate (target: >= 0.9x)", a / b}') |"
echo
echo "done in $(secs "$t_start" "$(now)") s; load: $(uptime)"
