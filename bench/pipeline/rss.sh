#!/usr/bin/env bash
# Peak memory of `eyeflow up` against the number of images it processed: for
# each N, a fresh data directory, N images put, wait until resized, read the
# process's peak RSS (VmHWM). Bounded memory means the peak does not grow with N.
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
printf '%-6s %-14s %-12s %s\n' images peak_rss_MiB seconds images_per_s
for n in "${counts[@]}"; do
  tmp="$(mktemp -d)"
  mkdir -p "$tmp/in"
  for f in "${all[@]:0:$n}"; do
    c="$(basename "$(dirname "$f")")"; mkdir -p "$tmp/in/$c"; ln -s "$f" "$tmp/in/$c/"
  done
  "$bin" up --data "$tmp/data" --http "$http" --nats-listen "$nats" --log-format json >"$tmp/log" 2>&1 &
  pid=$!
  until curl -fsS "http://$http/readyz" >/dev/null 2>&1; do sleep 0.1; done
  start=$(date +%s%N)
  "$bin" put --nats "nats://$nats" "$tmp/in" >/dev/null
  while :; do
    done_n=$(curl -fsS "http://$http/metrics" | awk '$1 == "eyeflow_messages_processed_total{stage=\"resize\"}" {print int($2)}')
    [ "${done_n:-0}" -ge "$n" ] && break
    sleep 0.2
  done
  secs=$(awk -v a="$start" -v b="$(date +%s%N)" 'BEGIN {printf "%.1f", (b - a) / 1e9}')
  hwm=$(awk '/VmHWM/ {printf "%.0f", $2 / 1024}' "/proc/$pid/status")
  kill "$pid"; wait "$pid" 2>/dev/null || true
  printf '%-6s %-14s %-12s %s\n' "$n" "$hwm" "$secs" "$(awk -v n="$n" -v s="$secs" 'BEGIN {printf "%.1f", n / s}')"
  rm -rf "$tmp"
done
