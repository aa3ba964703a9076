#!/usr/bin/env bash
# Side-by-side decode + resize-to-224x224 + PNG write on ONE core (taskset -c 0):
# vipsthumbnail, PIL (plain and with draft), and eyeflow's imaging package.
# Prints images/s for each, the eyeflow/vipsthumbnail ratio, and parity
# (MAE / max abs error vs PIL plain, which is what training saw).
#
#   bench/resize/run.sh [DIR_WITH_JPEGS]      (default: /work/shared/golden/*.jpg)
#   N=200 bench/resize/run.sh                 (number of images, files repeated to reach N; default 100)
#
# Needs: vipsthumbnail (libvips-tools), python3 with PIL (python3-pil), Go, libjpeg62-turbo-dev.
# Timings are noisy when other work shares the machine: the load average is printed; repeat runs.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
N="${N:-100}"
PY="${PYTHON:-/usr/bin/python3}"
CPU="${CPU:-0}"

src="${1:-}"
if [ -z "$src" ]; then
  for d in "$root/../shared/golden" "$root/shared/golden"; do [ -d "$d" ] && src="$d" && break; done
fi
[ -n "$src" ] && [ -d "$src" ] || { echo "no input directory (pass one, or provide ../shared/golden)" >&2; exit 1; }
mapfile -t uniq < <(find "$src" -maxdepth 1 -type f \( -iname '*.jpg' -o -iname '*.jpeg' \) | sort)
[ "${#uniq[@]}" -gt 0 ] || { echo "no JPEGs in $src" >&2; exit 1; }

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/in" "$tmp/vips" "$tmp/pil" "$tmp/pildraft" "$tmp/eyeflow"
# Distinct names (NNNN_base.jpg) so every tool writes N distinct outputs.
i=0
while [ "$i" -lt "$N" ]; do
  for f in "${uniq[@]}"; do
    [ "$i" -ge "$N" ] && break
    ln -s "$(readlink -f "$f")" "$tmp/in/$(printf '%04d' "$i")_$(basename "${f%.*}").jpg"
    i=$((i + 1))
  done
done
files=("$tmp/in"/*.jpg)
names=()
for f in "${files[@]:0:${#uniq[@]}}"; do b="$(basename "$f")"; names+=("${b%.jpg}"); done

(cd "$root" && go build -o "$tmp/eyeflow-resize" ./bench/resize)

cat > "$tmp/pil.py" <<'PYEOF'
import sys
from PIL import Image
draft, out = sys.argv[1] == "1", sys.argv[2]
for f in sys.argv[3:]:
    im = Image.open(f)
    if draft:
        im.draft("RGB", (448, 448))
    name = f.rsplit("/", 1)[-1].rsplit(".", 1)[0]
    im.convert("RGB").resize((224, 224), Image.BILINEAR).save(out + "/" + name + ".png")
PYEOF

now() { date +%s.%N; }
declare -A rate
run() { # label, command...
  local label="$1"; shift
  local t0 t1
  t0="$(now)"; "$@"; t1="$(now)"
  rate[$label]="$(awk -v n="$N" -v a="$t0" -v b="$t1" 'BEGIN{printf "%.1f", n/(b-a)}')"
  printf '%-22s %8s images/s  (%d images, %.2fs)\n' "$label" "${rate[$label]}" "$N" "$(awk -v a="$t0" -v b="$t1" 'BEGIN{print b-a}')"
}

echo "inputs: ${#uniq[@]} unique JPEGs from $src, $N images; one core (taskset -c $CPU)"
echo "load before: $(uptime)"
run vipsthumbnail taskset -c "$CPU" vipsthumbnail --size '224x224!' -o "$tmp/vips/%s.png" "${files[@]}"
run "PIL" env MALLOC_MMAP_THRESHOLD_=4294967296 MALLOC_TRIM_THRESHOLD_=68719476736 taskset -c "$CPU" "$PY" "$tmp/pil.py" 0 "$tmp/pil" "${files[@]}"
run "PIL draft" env MALLOC_MMAP_THRESHOLD_=4294967296 MALLOC_TRIM_THRESHOLD_=68719476736 taskset -c "$CPU" "$PY" "$tmp/pil.py" 1 "$tmp/pildraft" "${files[@]}"
run eyeflow env GOMAXPROCS=1 taskset -c "$CPU" "$tmp/eyeflow-resize" -o "$tmp/eyeflow" "${files[@]}"
echo "load after:  $(uptime)"
awk -v e="${rate[eyeflow]}" -v v="${rate[vipsthumbnail]}" 'BEGIN{printf "ratio eyeflow/vipsthumbnail: %.2fx\n", e/v}'

echo "parity vs PIL plain (MAE on 0..255 over all pixels and channels; target MAE <= 0.5, max <= 8):"
for t in eyeflow vips pildraft; do
  echo " $t:"
  "$tmp/eyeflow-resize" -compare "$tmp/pil" "$tmp/$t" "${names[@]}"
done
