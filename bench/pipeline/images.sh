# Sourced by the bench/pipeline scripts: the input images of a run.
#
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
