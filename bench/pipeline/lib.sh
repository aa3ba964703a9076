# Sourced by the bench/pipeline scripts: what their runs share.

# stage_images BIN SRC N DEST: copies the first N JPEGs of the ImageFolder
# tree SRC (sorted by path; when SRC is empty, N demo images BIN writes) into
# DEST, keeping their class folders, and prints how many it copied.
stage_images() {
  local bin="$1" src="$2" n="$3" dest="$4" f c count=0
  if [ -z "$src" ]; then
    src="$dest.demo"
    "$bin" demo-data --out "$src" --total "$n" >/dev/null
  fi
  mkdir -p "$dest"
  while IFS= read -r f; do
    c="$(basename "$(dirname "$f")")"; mkdir -p "$dest/$c"; cp "$f" "$dest/$c/"; count=$((count + 1))
  done < <(find "$src" -type f -name '*.jpg' | sort | head -"$n")
  echo "$count"
}

# wait_http URL: until URL answers (2 minutes at most).
wait_http() { for _ in $(seq 1 600); do curl -fsS "$1" >/dev/null 2>&1 && return 0; sleep 0.2; done; echo "no answer from $1" >&2; return 1; }

# wait_predicted HTTP N: until the eyeflow serving /metrics on HTTP has made
# N prod predictions.
wait_predicted() {
  local done_n
  while :; do
    done_n=$(curl -fsS "http://$1/metrics" | awk 'index($1, "predictions_total{") == 1 && index($1, "env=\"prod\"") {s += $2} END {print int(s)}')
    [ "$done_n" -ge "$2" ] && return 0
    sleep 0.2
  done
}
