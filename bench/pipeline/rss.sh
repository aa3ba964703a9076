#!/usr/bin/env bash
# Peak memory of `eyeflow up` against the number of images it processed: for
# each N, a fresh data directory, N images put, wait until prod classified all
# of them, read the process's idle RSS (model loaded, before the first upload)
# and peak RSS (VmHWM). Bounded memory means the peak does not grow with N.
#
#   bench/pipeline/rss.sh DIR_WITH_IMAGEFOLDER [N...]     (default N: 100 300 600)
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
src="${1:?usage: rss.sh IMAGEFOLDER_DIR [N...]}"; shift
counts=("${@:-100 300 600}")
[ "$#" -eq 0 ] && counts=(100 300 600)
bin="$root/bin/eyeflow"
(cd "$root" && go build -o "$bin" ./cmd/eyeflow)
mapfile -t all < <(find "$src" -type f -name '*.jpg' | sort)
http=127.0.0.1:18080
nats=127.0.0.1:14222
printf '%-6s %-12s %-12s %-16s %-16s %-8s %s\n' images up_idle_MiB up_peak_MiB resize_idle_MiB resize_peak_MiB seconds images_per_s
for n in "${counts[@]}"; do
  tmp="$(mktemp -d)"
  mkdir -p "$tmp/in"
  for f in "${all[@]:0:$n}"; do
    c="$(basename "$(dirname "$f")")"; mkdir -p "$tmp/in/$c"; ln "$f" "$tmp/in/$c/" 2>/dev/null || cp "$f" "$tmp/in/$c/"
  done
  # The resize stage runs as its own process, so its memory is measured
  # apart from the embedded server's stream caches and the model.
  "$bin" up --data "$tmp/data" --http "$http" --nats-listen "$nats" --log-format json \
    --processors splitter,classifier,driftwatch,labelsink >"$tmp/log" 2>&1 &
  pid=$!
  trap 'kill $pid $rpid 2>/dev/null' EXIT
  until curl -fsS "http://$http/readyz" >/dev/null 2>&1; do kill -0 "$pid" || { cat "$tmp/log"; exit 1; }; sleep 0.1; done
  "$bin" resize --nats "nats://$nats" --http 127.0.0.1:18082 --log-format json >"$tmp/resize.log" 2>&1 &
  rpid=$!
  until curl -fsS "http://127.0.0.1:18082/readyz" >/dev/null 2>&1; do kill -0 "$rpid" || { cat "$tmp/resize.log"; exit 1; }; sleep 0.1; done
  sleep 2 # the classifier loads its model after readiness
  idle=$(awk '/VmRSS/ {printf "%.0f", $2 / 1024}' "/proc/$pid/status")
  ridle=$(awk '/VmRSS/ {printf "%.0f", $2 / 1024}' "/proc/$rpid/status")
  start=$(date +%s%N)
  "$bin" put --nats "nats://$nats" "$tmp/in" >/dev/null
  while :; do
    # Done when prod classified every image: every stage has seen it.
    done_n=$(curl -fsS "http://$http/metrics" | awk 'index($1, "predictions_total{") == 1 && index($1, "env=\"prod\"") {s += $2} END {print int(s)}')
    [ "${done_n:-0}" -ge "$n" ] && break
    sleep 0.2
  done
  secs=$(awk -v a="$start" -v b="$(date +%s%N)" 'BEGIN {printf "%.1f", (b - a) / 1e9}')
  hwm=$(awk '/VmHWM/ {printf "%.0f", $2 / 1024}' "/proc/$pid/status")
  rhwm=$(awk '/VmHWM/ {printf "%.0f", $2 / 1024}' "/proc/$rpid/status")
  kill "$pid" "$rpid"; wait "$pid" "$rpid" 2>/dev/null || true
  printf '%-6s %-12s %-12s %-16s %-16s %-8s %s\n' "$n" "$idle" "$hwm" "$ridle" "$rhwm" "$secs" "$(awk -v n="$n" -v s="$secs" 'BEGIN {printf "%.1f", n / s}')"
  rm -rf "$tmp"
done
