#!/usr/bin/env bash
# The trainer's embedded engine (logistic-regression head on frozen synthetic
# DenseNet121 features, ONNX Runtime on the CPU) on the demo data set, split
# as eyeflow's splitter splits it: features/s, fit time, chosen lambda and
# the holdout figures of the trainer's evaluator, for 600 and 2000 images,
# as one markdown table (BENCHMARKS.md, "Trainer (embedded engine)").
#
#   EYEFLOW_ORT_LIB=~/.cache/eyeflow/onnxruntime-1.24.1/libonnxruntime.so.1 bench/trainer/embedded.sh
#
# Settings by environment: TOTALS="600 2000" OUT=bench/out/trainer-embedded
# CACHE=folder for the generated demo data (default under the user cache
# directory; generated once per size, reused after). Needs Go and
# libjpeg-turbo (scripts/setup.sh) and ONNX Runtime (scripts/install-ort.sh).
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
out="${OUT:-$root/bench/out/trainer-embedded}"
mkdir -p "$out"
(cd "$root" && go build -o "$out/embedded" ./bench/trainer/embedded)
results=()
for n in ${TOTALS:-600 2000}; do
  args=(-total "$n" -out "$out/$n")
  [ -n "${CACHE:-}" ] && args+=(-cache "$CACHE/demo-seed1-$n")
  echo "== $n images" >&2
  "$out/embedded" "${args[@]}" >/dev/null
  results+=("$out/$n/result.json")
done
echo "== $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)"
"$out/embedded" -table "${results[@]}"
