#!/usr/bin/env bash
# `make demo`: the embedded default end to end. Writes a synthetic fundus data
# set (once), starts `eyeflow up`, uploads the data set with `eyeflow put`,
# waits until every image went through the pipeline and prints a summary.
# Leaves eyeflow running for you to explore unless DEMO_EXIT=1.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
bin="${EYEFLOW_BIN:-$root/bin/eyeflow}"
work="${DEMO_WORK:-$root/data}"
data="${EYEFLOW_DATA:-$root/data/eyeflow}"
images="${DEMO_IMAGES:-$root/data/demo-images}"
total="${DEMO_TOTAL:-600}"
http="${EYEFLOW_HTTP:-127.0.0.1:8080}"
listen="${DEMO_NATS_LISTEN:-${EYEFLOW_NATS_LISTEN:-127.0.0.1:4222}}"
nats="nats://$listen"

if [ ! -f "$images/.complete-$total" ]; then
  rm -rf "$images"
  "$bin" demo-data --out "$images" --total "$total"
  touch "$images/.complete-$total"
fi

# A fresh data directory each run, so the summary counts this run's work.
rm -rf "$data"
mkdir -p "$data"
# Labelsink reads annotations every 2 s; class_chi2 tests windows of 100
# live predictions and a drifted one asks for all 100 of its images to be
# labelled; the canary needs 30 live predictions, half the traffic, so the
# demo's last batch can carry a version through it.
"$bin" up --data "$data" --http "$http" --nats-listen "$listen" --log-format json \
  --label-poll-interval 2s --label-manifest-timeout 60s \
  --drift-chi2-window "${DEMO_DRIFT_WINDOW:-100}" --drift-label-samples "${DEMO_DRIFT_WINDOW:-100}" \
  --canary-share 0.5 --canary-min "${DEMO_CANARY_MIN:-30}" >"$data/eyeflow.log" 2>&1 &
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
"$bin" put --nats "$nats" "$images"
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
echo "== eyeflow demo, act 1: the data set =="
echo "images:      $total in $images (15 classes)"
echo "resized:     $resized to 224x224 (PIL-bilinear parity), dead-lettered: $dead"
echo "classified:  $predicted by prod (the untrained placeholder: random weights)"
echo "time:        ${secs}s from the first upload to the last prod prediction"
"$bin" split report --nats "$nats" || true

# version VERSION-PREFIX ENV: waits until ENV serves a trained version.
models() { "$bin" model list --nats "$nats" --json; }
serving() { models | python3 -c 'import json,sys; env=sys.argv[1]; print(next((m["version"] for m in json.load(sys.stdin) if env in m["envs"]), ""))' "$1"; }
echo
echo "waiting for the trainer: version 1 trains once the train split settles, then staging -> canary -> prod..."
t0=$(date +%s%N)
until v1=$(serving prod) && [ -n "$v1" ] && [ "$v1" != 0.0.0-synthetic ]; do
  kill -0 $up 2>/dev/null || { echo "eyeflow up stopped:"; tail -20 "$data/eyeflow.log"; exit 1; }
  sleep 1
done
# The registry says prod should serve it; wait until the classifier does,
# so that act 2's images meet version 1.
until grep -q "^eyeflow_classifier_info{.*env=\"prod\".*model_version=\"$v1\".*} 1" <<<"$(curl -fsS "http://$http/metrics")"; do
  kill -0 $up 2>/dev/null || { echo "eyeflow up stopped:"; tail -20 "$data/eyeflow.log"; exit 1; }
  sleep 0.5
done
echo "version 1 ($v1) serves prod $(awk -v a="$t0" -v b="$(date +%s%N)" 'BEGIN {printf "%.1f", (b - a) / 1e9}')s after the last prod prediction"

echo
shift_kind="${DEMO_SHIFT:-mix}"
case "$shift_kind" in
  mix) echo "== act 2: a referral clinic sends a different class mix ==" ;;
  dark) echo "== act 2: an underexposed camera ==" ;;
  *) echo "== act 2: a shifted batch ($shift_kind) ==" ;;
esac
shifted="$work/demo-shift-$shift_kind"
rm -rf "$shifted" "$shifted.answers.json"
"$bin" demo-data --shift "$shift_kind" --out "$shifted" --total "${DEMO_SHIFT_TOTAL:-200}" --width 1024 --height 768 --seed 2
"$bin" put --nats "$nats" "$shifted"
echo "waiting for drift on prod..."
# Version 1's alerts only: the placeholder's, from act 1, stay firing until
# version 1's first prediction on this batch resolves them.
v1drift="env=\"prod\",model_version=\"$v1\""
until [ "$(metric drift_alert "$v1drift")" -ge 1 ] || [ "$(metric drift_class_chi2_alert "$v1drift")" -ge 1 ] || [ "$(metric drift_entropy_ks_alert "$v1drift")" -ge 1 ]; do
  kill -0 $up 2>/dev/null || { echo "eyeflow up stopped:"; tail -20 "$data/eyeflow.log"; exit 1; }
  sleep 1
done
echo "drift fired on prod; labelsink writes Label Studio tasks; the demo's annotator answers them..."
# Every alert the batch raises has fired once prod classified all of it.
for _ in $(seq 1 120); do
  [ "$(metric predictions_total "$v1drift")" -ge "${DEMO_SHIFT_TOTAL:-200}" ] && break
  sleep 1
done
"$bin" demo-annotate --nats "$nats" --answers "$shifted.answers.json" --wait 8s
echo "waiting for version 2: labelled images re-enter the pipeline, the manifest triggers a retrain, the gate decides..."
until models | python3 -c 'import json,sys; sys.exit(0 if any(m["version"].startswith("v2-") and m.get("stage") not in (None,"","candidate","staging") for m in json.load(sys.stdin)) else 1)'; do
  kill -0 $up 2>/dev/null || { echo "eyeflow up stopped:"; tail -20 "$data/eyeflow.log"; exit 1; }
  sleep 1
done
stage2=$(models | python3 -c 'import json,sys; print(next(m["stage"] for m in json.load(sys.stdin) if m["version"].startswith("v2-")))')
if [ "$stage2" = canary ]; then
  echo "version 2 is in canary: live traffic decides (a last batch, ${DEMO_LIVE_TOTAL:-80} images)..."
  live="$work/demo-live-$shift_kind"
  rm -rf "$live" "$live.answers.json"
  "$bin" demo-data --shift "$shift_kind" --out "$live" --total "${DEMO_LIVE_TOTAL:-80}" --width 1024 --height 768 --seed 3 >/dev/null
  "$bin" put --nats "$nats" "$live"
  for _ in $(seq 1 120); do
    stage2=$(models | python3 -c 'import json,sys; print(next(m["stage"] for m in json.load(sys.stdin) if m["version"].startswith("v2-")))')
    [ "$stage2" != canary ] && break
    sleep 1
  done
fi
v2=$(serving prod)
if [ "$v2" != "$v1" ]; then
  # The replaced version's alerts resolve on the new version's first prod
  # prediction: a little more traffic, classified by the new prod.
  after="$work/demo-after-$shift_kind"
  rm -rf "$after" "$after.answers.json"
  "$bin" demo-data --shift "$shift_kind" --out "$after" --total 20 --width 1024 --height 768 --seed 4 >/dev/null
  "$bin" put --nats "$nats" "$after"
  for _ in $(seq 1 60); do
    [ "$(metric predictions_total "env=\"prod\",model_version=\"$v2\"")" -ge 20 ] && break
    sleep 1
  done
  sleep 2
fi
echo
echo "== the learning loop =="
"$bin" model list --nats "$nats"
echo
"$bin" model timeline --nats "$nats"
echo "drift now:   prod low-confidence $(metric drift_alert 'env="prod"'), class chi-square $(metric drift_class_chi2_alert 'env="prod"'), entropy KS $(metric drift_entropy_ks_alert 'env="prod"') alert(s) firing"
echo
echo "dashboard: http://$http/dashboard/   metrics: http://$http/metrics   logs: $data/eyeflow.log"
echo "label by hand: http://$http/dashboard/label (annotator tokens: --label-annotators-file; README, \"Labelling by hand\")"
echo "NATS:      $nats (try: nats sub 'eye.>')"
if [ "${DEMO_EXIT:-0}" = 1 ]; then exit 0; fi
echo "eyeflow is running; Ctrl-C to stop."
wait $up
