#!/usr/bin/env bash
# The trainer's PyTorch engine on a GPU host: trains DenseNet121 (bf16
# autocast, channels-last) on 2,000 demo fundus images and prints the
# holdout_3 accuracy, the training seconds and images/s. Target: accuracy
# >= 0.99 with <= 60 s of training; the whole script stays under 5 minutes,
# start-up included (it gives up at 285 s).
#
# The GPU host has PyTorch with CUDA but no Go toolchain and no network, so
# the rest is built beforehand on a CPU machine with Go, gcc and
# libjpeg-turbo (scripts/setup.sh):
#
#   bench/trainer/gpu.sh build
#
# which writes bench/out/trainer-gpu/ (about 45 MB: the gpubench binary with
# train.py embedded, lib/libonnxruntime.so.1 from scripts/install-ort.sh and
# lib/libjpeg.so.62, both found through LD_LIBRARY_PATH). Carry that folder
# with the repository tree (bench/out/ is git-ignored: name it in the device
# tool's carry list), then on the GPU host, from the repository root:
#
#   bench/trainer/gpu.sh
#
# Settings by environment: N=2000 EPOCHS=20 BATCH=64 LR=1e-3 NPROC=1
# DEVICE=cuda WORKERS=0 (auto: 8 loader processes per GPU process)
# INIT_WEIGHTS=FILE (a torchvision densenet121 state dict already on the
# host; nothing is downloaded) PYTHON=python3 (an interpreter whose torch
# sees the GPU) GPUBENCH_DIR=bench/out/trainer-gpu. Extra arguments go to
# gpubench (-out DIR keeps the model).
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
dir="${GPUBENCH_DIR:-$root/bench/out/trainer-gpu}"

if [ "${1:-}" = build ]; then
  command -v go >/dev/null || { echo "gpu.sh build: needs Go (and scripts/setup.sh's libraries)" >&2; exit 1; }
  mkdir -p "$dir/lib"
  (cd "$root" && go build -trimpath -ldflags "-s -w" -o "$dir/gpubench" ./bench/trainer/gpubench)
  ort="$("$root/scripts/install-ort.sh" | tail -n 1)"
  cp -L "$ort" "$dir/lib/libonnxruntime.so.1"
  jpeg="$(ldd "$dir/gpubench" | awk '/libjpeg\.so/ {print $3}')"
  [ -n "$jpeg" ] && cp -L "$jpeg" "$dir/lib/"
  du -sh "$dir"
  ls -l "$dir" "$dir/lib"
  exit 0
fi

start=$(date +%s)
[ -x "$dir/gpubench" ] || { echo "gpu.sh: no $dir/gpubench: run 'bench/trainer/gpu.sh build' on a machine with Go and carry $dir here" >&2; exit 1; }
py="${PYTHON:-$(command -v python3)}"
echo "== host: $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB; $(nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>/dev/null | head -n 1)"
"$py" -c 'import sys, torch, torchvision; print("== python", sys.version.split()[0], "torch", torch.__version__, "torchvision", torchvision.__version__, "cuda", torch.version.cuda, "gpus", torch.cuda.device_count())'
export LD_LIBRARY_PATH="$dir/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
args=(-n "${N:-2000}" -arch densenet121 -epochs "${EPOCHS:-20}" -batch "${BATCH:-64}" -lr "${LR:-1e-3}"
  -nproc "${NPROC:-1}" -device "${DEVICE:-cuda}" -workers "${WORKERS:-0}" -python "$py"
  -ort-lib "$dir/lib/libonnxruntime.so.1" -timeout 200s)
[ -n "${INIT_WEIGHTS:-}" ] && args+=(-init-weights "$INIT_WEIGHTS")
left=$((285 - ($(date +%s) - start)))
timeout --signal=INT --kill-after=10 "$left" "$dir/gpubench" "${args[@]}" "$@"
echo "== gpu.sh done in $(($(date +%s) - start)) s"
