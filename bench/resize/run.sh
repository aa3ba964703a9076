#!/usr/bin/env bash
# Side-by-side decode + resize-to-224x224 on ONE core (taskset -c 0): vipsthumbnail,
# PIL (plain and with draft), and eyeflow's imaging package, in three modes:
#   png1  writing PNGs at zlib level 1 (the resize stage's own: best speed)
#   png6  writing PNGs at zlib level 6 (vipsthumbnail's and PIL's default)
#   none  decode + resize only (vipsthumbnail writes its raw .v format)
# Every tool runs once per mode per round, in turn, for ROUNDS rounds (A B C D A B C D ...),
# and the medians are printed, with eyeflow over vipsthumbnail per mode. Parity (MAE / max abs
# error vs PIL plain, which is what training saw) is the same in every mode.
#
#   bench/resize/run.sh [DIR_WITH_JPEGS]      (default: /work/shared/golden/*.jpg)
#   N=200 ROUNDS=5 bench/resize/run.sh        (images per run, files repeated to reach N; default 100 and 3)
#
# Needs: vipsthumbnail (libvips-tools), python3 with PIL (python3-pil), Go, libjpeg62-turbo-dev.
# Timings are noisy when other work shares the machine: the load average is printed.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
N="${N:-100}"
ROUNDS="${ROUNDS:-3}"
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
draft, level, out = sys.argv[1] == "1", sys.argv[2], sys.argv[3]
for f in sys.argv[4:]:
    im = Image.open(f)
    if draft:
        im.draft("RGB", (448, 448))
    im = im.convert("RGB").resize((224, 224), Image.BILINEAR)
    if level == "none":
        continue
    name = f.rsplit("/", 1)[-1].rsplit(".", 1)[0]
    if level == "default":
        im.save(out + "/" + name + ".png")
    else:
        im.save(out + "/" + name + ".png", compress_level=int(level))
PYEOF

now() { date +%s.%N; }
results="$tmp/results.tsv"
run() { # mode, tool, command...
  local mode="$1" tool="$2"; shift 2
  local t0 t1
  t0="$(now)"; "$@"; t1="$(now)"
  printf '%s\t%s\t%s\n' "$mode" "$tool" "$(awk -v n="$N" -v a="$t0" -v b="$t1" 'BEGIN{printf "%.2f", n/(b-a)}')" >>"$results"
}
malloc=(env MALLOC_MMAP_THRESHOLD_=4294967296 MALLOC_TRIM_THRESHOLD_=68719476736)
one_round() {
  local mode="$1" vout pil eye
  rm -rf "$tmp/vips" "$tmp/pil" "$tmp/pildraft" "$tmp/eyeflow"; mkdir -p "$tmp/vips" "$tmp/pil" "$tmp/pildraft" "$tmp/eyeflow"
  case "$mode" in
    png1) vout="$tmp/vips/%s.png[compression=1]"; pil=1; eye=(-level 1 -o "$tmp/eyeflow") ;;
    png6) vout="$tmp/vips/%s.png"; pil=default; eye=(-level 6 -o "$tmp/eyeflow") ;;
    none) vout="$tmp/vips/%s.v"; pil=none; eye=(-o "") ;;
  esac
  run "$mode" vipsthumbnail taskset -c "$CPU" vipsthumbnail --size '224x224!' -o "$vout" "${files[@]}"
  run "$mode" "PIL" "${malloc[@]}" taskset -c "$CPU" "$PY" "$tmp/pil.py" 0 "$pil" "$tmp/pil" "${files[@]}"
  run "$mode" "PIL draft" "${malloc[@]}" taskset -c "$CPU" "$PY" "$tmp/pil.py" 1 "$pil" "$tmp/pildraft" "${files[@]}"
  run "$mode" eyeflow env GOMAXPROCS=1 taskset -c "$CPU" "$tmp/eyeflow-resize" "${eye[@]}" "${files[@]}"
}

echo "inputs: ${#uniq[@]} unique JPEGs from $src, $N images per run, $ROUNDS rounds; one core (taskset -c $CPU)"
echo "load before: $(uptime)"
for r in $(seq 1 "$ROUNDS"); do
  for mode in png1 png6 none; do one_round "$mode"; done
  echo "round $r: $(awk -F'\t' -v OFS=' ' 'NR > c {printf "%s/%s %s  ", $1, $2, $3}' c=$(( (r - 1) * 12 )) "$results")"
done
echo "load after:  $(uptime)"
echo "medians over $ROUNDS rounds, images/s on one core:"
python3 - "$results" <<'PY'
import sys, statistics
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1])]
tools = list(dict.fromkeys(r[1] for r in rows))
modes = {"png1": "PNG zlib level 1", "png6": "PNG zlib level 6 (default)", "none": "decode + resize only"}
print("| tool | " + " | ".join(modes.values()) + " |")
print("|---|" + "---|" * len(modes))
med = {(m, t): statistics.median(float(r[2]) for r in rows if r[0] == m and r[1] == t) for m in modes for t in tools}
for t in tools:
    print("| %s | %s |" % (t, " | ".join("%.1f" % med[(m, t)] for m in modes)))
print("| eyeflow / vipsthumbnail | %s |" % " | ".join("%.2fx" % (med[(m, "eyeflow")] / med[(m, "vipsthumbnail")]) for m in modes))
PY

# Parity: the last round wrote no PNGs ("none"), so write them once more at level 1.
one_round png1 >/dev/null
echo "parity vs PIL plain (MAE on 0..255 over all pixels and channels; target MAE <= 0.5, max <= 8):"
for t in eyeflow vips pildraft; do
  echo " $t:"
  "$tmp/eyeflow-resize" -compare "$tmp/pil" "$tmp/$t" "${names[@]}"
done
