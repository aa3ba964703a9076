#!/usr/bin/env bash
# `make demo`: the embedded default end to end. Writes a synthetic fundus data
# set (once), starts `eyeflow up`, uploads the data set with `eyeflow put`,
# waits until every image went through the pipeline and prints a summary.
# Leaves eyeflow running for you to explore unless DEMO_EXIT=1.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
bin="$root/bin/eyeflow"
data="${EYEFLOW_DATA:-$root/data/eyeflow}"
images="${DEMO_IMAGES:-$root/data/demo-images}"
total="${DEMO_TOTAL:-600}"
http="${EYEFLOW_HTTP:-127.0.0.1:8080}"

if [ ! -f "$images/.complete-$total" ]; then
  rm -rf "$images"
  "$bin" demo-data --out "$images" --total "$total"
  touch "$images/.complete-$total"
fi

# A fresh data directory each run, so the summary counts this run's work.
rm -rf "$data"
mkdir -p "$data"
"$bin" up --data "$data" --http "$http" --log-format json >"$data/eyeflow.log" 2>&1 &
up=$!
trap 'kill $up 2>/dev/null; wait $up 2>/dev/null' EXIT
for _ in $(seq 1 100); do
  curl -fsS "http://$http/readyz" >/dev/null 2>&1 && break
  kill -0 $up 2>/dev/null || { echo "eyeflow up failed:"; tail -20 "$data/eyeflow.log"; exit 1; }
  sleep 0.2
done

# metric NAME LABEL: the sum of NAME's series that carry LABEL.
metric() { curl -fsS "http://$http/metrics" | awk -v m="$1{" -v l="$2" 'index($1, m) == 1 && index($1, l) {s += $2} END {print int(s)}'; }
start=$(date +%s%N)
"$bin" put "$images"
echo "waiting for the pipeline..."
while :; do
  resized=$(metric eyeflow_messages_processed_total 'stage="resize"')
  dead=$(metric eyeflow_dead_letters_total 'stage="resize"')
  predicted=$(metric predictions_total 'env="prod"')
  printf '\r  resized %d/%d, dead-lettered %d, classified (prod) %d' "$resized" "$total" "$dead" "$predicted"
  [ "$((predicted + dead))" -ge "$total" ] && break
  kill -0 $up 2>/dev/null || { echo; echo "eyeflow up stopped:"; tail -20 "$data/eyeflow.log"; exit 1; }
  sleep 0.5
done
secs=$(awk -v a="$start" -v b="$(date +%s%N)" 'BEGIN {printf "%.1f", (b - a) / 1e9}')
echo
echo "== eyeflow demo =="
echo "images:      $total in $images (15 classes)"
echo "resized:     $resized to 224x224 (PIL-bilinear parity), dead-lettered: $dead"
echo "classified:  $predicted by prod (synthetic DenseNet121, random weights; canary and staging serve once a model is promoted: eyeflow model promote)"
echo "drift:       $(metric drift_alert 'env="prod"') prod alert(s) firing"
echo "time:        ${secs}s from the first upload to the last prod prediction"
"$bin" split report --nats nats://127.0.0.1:4222 || true
echo "dashboard: http://$http/dashboard/   metrics: http://$http/metrics   logs: $data/eyeflow.log"
echo "NATS:      nats://127.0.0.1:4222 (try: nats sub 'eye.>')"
if [ "${DEMO_EXIT:-0}" = 1 ]; then exit 0; fi
echo "eyeflow is running; Ctrl-C to stop."
wait $up
