#!/usr/bin/env bash
# Horizontal scaling of the resize stage: the embedded server and ingest in
# one `eyeflow up --processors ""`, and K separate `eyeflow resize` processes
# (one image at a time each) sharing the durable consumer. For K in 1 2 it
# puts the same N JPEGs and times until the instances together resized all.
#
#   bench/pipeline/resize-scale.sh IMAGEFOLDER_DIR [N]
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
src="${1:?usage: resize-scale.sh IMAGEFOLDER_DIR [N]}"
N="${2:-300}"
tmp="$(mktemp -d)"
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true; rm -rf "$tmp"' EXIT
(cd "$root" && go build -o "$tmp/eyeflow" ./cmd/eyeflow)
mapfile -t all < <(find "$src" -type f -name '*.jpg' | sort | head -"$N")
N=${#all[@]}
mkdir -p "$tmp/in"
for f in "${all[@]}"; do c="$(basename "$(dirname "$f")")"; mkdir -p "$tmp/in/$c"; cp "$f" "$tmp/in/$c/"; done
wait_http() { for _ in $(seq 1 600); do curl -fsS "$1" >/dev/null 2>&1 && return 0; sleep 0.1; done; return 1; }
echo "images: $N 2048x1536 JPEGs; $(nproc) cores; load: $(uptime)"
printf '%-10s %-10s %s\n' instances seconds images_per_s
for k in 1 2; do
  "$tmp/eyeflow" up --data "$tmp/data-$k" --http 127.0.0.1:18020 --nats-listen 127.0.0.1:14220 --log-format json --processors "" >"$tmp/up.log" 2>&1 &
  pids=($!)
  wait_http http://127.0.0.1:18020/readyz
  ports=()
  for i in $(seq 1 "$k"); do
    port=$((18020 + i))
    "$tmp/eyeflow" resize --nats nats://127.0.0.1:14220 --http "127.0.0.1:$port" --resize-concurrency 1 --log-format json >"$tmp/resize-$i.log" 2>&1 &
    pids+=($!)
    ports+=("$port")
    wait_http "http://127.0.0.1:$port/readyz"
  done
  t0=$(date +%s%N)
  "$tmp/eyeflow" put --nats nats://127.0.0.1:14220 "$tmp/in" >/dev/null
  while :; do
    total=0
    for port in "${ports[@]}"; do
      n=$(curl -fsS "http://127.0.0.1:$port/metrics" | awk '$1 == "eyeflow_messages_processed_total{stage=\"resize\"}" {print int($2)}')
      total=$((total + ${n:-0}))
    done
    [ "$total" -ge "$N" ] && break
    sleep 0.1
  done
  secs=$(awk -v a="$t0" -v b="$(date +%s%N)" 'BEGIN {printf "%.1f", (b - a) / 1e9}')
  printf '%-10s %-10s %s\n' "$k" "$secs" "$(awk -v n="$N" -v s="$secs" 'BEGIN {printf "%.1f", n / s}')"
  kill "${pids[@]}"; wait 2>/dev/null || true; pids=()
done
