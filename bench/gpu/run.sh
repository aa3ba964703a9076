#!/usr/bin/env bash
# The GPU host check for the classifier on ONNX Runtime's WebGPU provider
# (Dawn on Vulkan): under 5 minutes on a GPU host with no Go toolchain and no
# network, it prints
#
#   1. `eyeflow doctor`: the adapter WebGPU takes (vendor, device, backend,
#      driver) or why there is none;
#   2. the GPU tests, built here as a test binary: TestWebGPUMatchesCPU (the
#      synthetic DenseNet121 on WebGPU agrees with the CPU within 1e-4, and its
#      fp16 variant within 1e-2 with the same classes), TestWebGPUWithoutAdapter,
#      TestFP16VariantOnCPU;
#   3. gpubench: the raw WebGPU session rate per batch size for float32 and
#      fp16, the provider options (preferred layout, validation off, graph
#      capture) and 1 against 2 parallel runs at batch 64, the CPU for
#      reference, and the classifier stage's rate at batch 64 (pipeline/raw;
#      target >= 0.90);
#   4. POST /predict (2048x1536 JPEGs: decode, resize, classify) at
#      concurrency 16 and 64, `eyeflow up --processors classifier --device webgpu`;
#   5. the full pipeline (`eyeflow up --device webgpu`) on 2,000 demo images:
#      images/s, and each stage's share of the processing time (the target is
#      a pipeline bound by resize, not by the classifier).
#
# Build on a machine with Go, gcc, libjpeg-turbo (scripts/setup.sh) and apt,
# from the repository root:
#
#   bench/gpu/run.sh build
#
# It writes bench/out/gpu/ (git-ignored; about 40 MB): bundle.tar.xz (the
# eyeflow, gpubench, loadgen and analyze binaries, the classifier test binary,
# lib/libonnxruntime.so.1 from scripts/install-ort.sh and lib/libjpeg.so.62)
# and debs/, the Vulkan loader and the GL vendor-neutral libraries NVIDIA's
# Vulkan driver needs, fetched for amd64 with apt-get download (no install):
#
#   o='-oAPT::Architecture=amd64 -oAPT::Architectures=amd64 -oDir::State::Lists=/tmp/amd64'
#   mkdir -p /tmp/amd64/partial && apt-get $o update
#   (cd bench/out/gpu/debs && apt-get $o download libvulkan1 libglvnd0 libglx0 libegl1 libgl1 \
#      libopengl0 libgles2 libx11-6 libxcb1 libxau6 libxdmcp6 libbsd0 libmd0 libxext6)
#
# Carry bench/out/gpu with the repository tree (the device tool: carry
# ["bench/out/gpu"]), then on the GPU host, from the repository root:
#
#   bench/gpu/run.sh
#
# There, when libvulkan.so.1 or libGLX.so.0 is missing, the .debs are
# unpacked into / (as root; only these libraries, as on the H200 host the
# WebGPU numbers come from) or, not as root, into bench/out/gpu/sysroot on
# LD_LIBRARY_PATH. VK_DRIVER_FILES is set to the driver's nvidia_icd.json when
# it is unset (the NVIDIA Container Toolkit mounts it under /usr/local/nvidia
# or /usr/share), and XDG_RUNTIME_DIR to a private folder. Settings by
# environment: N=2000 (pipeline images), BATCHES=1,8,16,32,64,128,
# PREDICT_N (requests per /predict concurrency, default 25 per client),
# GPUBENCH_ARGS (more gpubench flags), DEVICE=webgpu, GPU_DIR=bench/out/gpu.
# Results go to $OUT when set (the device tool's folder), else to a
# temporary folder that is printed: report.txt (everything printed here),
# doctor.json, gpubench.json, predict-c16.json, predict-c64.json and
# analyze.json. The bundle is unpacked with xz, or Python's lzma where the
# host has no xz.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
dir="${GPU_DIR:-$root/bench/out/gpu}"
debs=(libvulkan1 libglvnd0 libglx0 libegl1 libgl1 libopengl0 libgles2 libx11-6 libxcb1 libxau6 libxdmcp6 libbsd0 libmd0 libxext6)

if [ "${1:-}" = build ]; then
  command -v go >/dev/null || { echo "run.sh build: needs Go (and scripts/setup.sh's libraries)" >&2; exit 1; }
  stage="$(mktemp -d)"
  trap 'rm -rf "$stage"' EXIT
  mkdir -p "$dir/debs" "$stage/lib"
  (cd "$root" &&
    go build -trimpath -ldflags "-s -w" -o "$stage/eyeflow" ./cmd/eyeflow &&
    go build -trimpath -ldflags "-s -w" -o "$stage/gpubench" ./bench/gpu/gpubench &&
    go build -trimpath -ldflags "-s -w" -o "$stage/loadgen" ./bench/loadgen &&
    go build -trimpath -ldflags "-s -w" -o "$stage/analyze" ./bench/pipeline/analyze &&
    go test -c -trimpath -ldflags "-s -w" -o "$stage/inference.test" ./inference)
  ort="$("$root/scripts/install-ort.sh" | tail -n 1)"
  cp -L "$ort" "$stage/lib/libonnxruntime.so.1"
  jpeg="$(ldd "$stage/eyeflow" | awk '/libjpeg\.so/ {print $3}')"
  [ -n "$jpeg" ] && cp -L "$jpeg" "$stage/lib/"
  tar -C "$stage" -cf - . | xz -T0 -6 >"$dir/bundle.tar.xz"
  o=(-oAPT::Architecture=amd64 -oAPT::Architectures=amd64 -oDir::State::Lists=/tmp/amd64)
  mkdir -p /tmp/amd64/partial
  apt-get "${o[@]}" update >/dev/null
  (cd "$dir/debs" && rm -f ./*.deb && apt-get "${o[@]}" download "${debs[@]}")
  du -sh "$dir"
  ls -l "$dir" "$dir/debs"
  exit 0
fi

start=$(date +%s)
left() { echo $((285 - ($(date +%s) - start))); }
[ -f "$dir/bundle.tar.xz" ] || { echo "run.sh: no $dir/bundle.tar.xz: run 'bench/gpu/run.sh build' on a machine with Go and carry $dir here" >&2; exit 1; }
out="${OUT:-$(mktemp -d)}"
work="$(mktemp -d)"
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true; rm -rf "$work"' EXIT
bin="$work/bin"
mkdir -p "$bin"
exec > >(tee "$out/report.txt") 2>&1
if command -v xz >/dev/null; then
  xz -dc -T0 "$dir/bundle.tar.xz" | tar -C "$bin" -xf -
else
  python3 -c 'import lzma, shutil, sys; shutil.copyfileobj(lzma.open(sys.argv[1]), sys.stdout.buffer)' "$dir/bundle.tar.xz" | tar -C "$bin" -xf -
fi
echo "== host: $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB; $(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null | head -n 1)"

# The libraries Dawn's Vulkan backend and NVIDIA's ICD need.
if ! ldconfig -p | grep 'libvulkan\.so\.1' >/dev/null || ! ldconfig -p | grep 'libGLX\.so\.0' >/dev/null; then
  if [ "$(id -u)" = 0 ]; then
    for f in "$dir"/debs/*.deb; do dpkg -x "$f" /; done
    ldconfig
    echo "== unpacked ${#debs[@]} packages into / (Vulkan loader, libglvnd)"
  else
    mkdir -p "$dir/sysroot"
    for f in "$dir"/debs/*.deb; do dpkg -x "$f" "$dir/sysroot"; done
    export LD_LIBRARY_PATH="$dir/sysroot/usr/lib/x86_64-linux-gnu:$dir/sysroot/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    echo "== unpacked ${#debs[@]} packages into $dir/sysroot"
  fi
fi
if [ -z "${VK_DRIVER_FILES:-}" ]; then
  for f in /usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json /usr/share/vulkan/icd.d/nvidia_icd.json /etc/vulkan/icd.d/nvidia_icd.json; do
    if [ -f "$f" ]; then export VK_DRIVER_FILES="$f"; break; fi
  done
fi
if [ -f /usr/local/nvidia/share/glvnd/egl_vendor.d/10_nvidia.json ] && [ -z "${__EGL_VENDOR_LIBRARY_FILENAMES:-}" ]; then
  export __EGL_VENDOR_LIBRARY_FILENAMES=/usr/local/nvidia/share/glvnd/egl_vendor.d/10_nvidia.json
fi
[ -d /usr/local/nvidia/lib64 ] && export LD_LIBRARY_PATH="${LD_LIBRARY_PATH:+$LD_LIBRARY_PATH:}/usr/local/nvidia/lib64"
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-$work/xdg}"
mkdir -p -m 0700 "$XDG_RUNTIME_DIR"
export LD_LIBRARY_PATH="$bin/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export EYEFLOW_ORT_LIB="$bin/lib/libonnxruntime.so.1"
device="${DEVICE:-webgpu}"
echo "== VK_DRIVER_FILES=${VK_DRIVER_FILES:-(unset)} XDG_RUNTIME_DIR=$XDG_RUNTIME_DIR device=$device"

echo "== 1. eyeflow doctor"
"$bin/eyeflow" doctor 2>"$work/doctor.err" || true
"$bin/eyeflow" doctor --json >"$out/doctor.json" 2>/dev/null || true
if ! "$bin/eyeflow" doctor --require "$device" >/dev/null 2>"$work/require.err"; then
  echo "== $device is not usable here; Dawn and the Vulkan loader said:"
  tail -n 20 "$work/doctor.err"
  tail -n 3 "$work/require.err"
  exit 1
fi

echo "== 2. GPU tests (classifier test binary)"
(cd "$root/inference" && timeout 90 "$bin/inference.test" -test.run 'TestWebGPUMatchesCPU|TestWebGPUWithoutAdapter|TestFP16VariantOnCPU' -test.v 2>&1) |
  grep -E '^\s*(=== RUN|--- |PASS|FAIL|ok)|_test.go' >"$work/tests.txt" || true
cat "$work/tests.txt"
if grep '^--- FAIL' "$work/tests.txt" >/dev/null; then echo "== a GPU test failed (see above)"; fi

budget=$(($(left) - 120))
[ "$budget" -gt 130 ] && budget=130
[ "$budget" -lt 20 ] && budget=20
echo "== 3. gpubench (at most $budget s)"
timeout "$budget" "$bin/gpubench" -device "$device" -batches "${BATCHES:-1,8,16,32,64,128}" -max-time 2s -json "$out/gpubench.json" ${GPUBENCH_ARGS:-} 2>"$work/gpubench.err" ||
  { echo "gpubench failed or ran out of time:"; tail -n 5 "$work/gpubench.err"; }

wait_http() { for _ in $(seq 1 300); do curl -fsS "$1" >/dev/null 2>&1 && return 0; sleep 0.2; done; echo "no answer from $1" >&2; return 1; }
now() { date +%s%N; }
N="${N:-2000}"
echo "== demo data: $N images (left: $(left) s)"
"$bin/eyeflow" demo-data --out "$work/images" --total "$N" >/dev/null
mapfile -t jpgs < <(find "$work/images" -type f -name '*.jpg' | sort | head -20)

echo "== 4. POST /predict, concurrency 16 and 64 (left: $(left) s)"
http=127.0.0.1:18101 nats=127.0.0.1:14301
"$bin/eyeflow" up --data "$work/predict-data" --http "$http" --nats-listen "$nats" --log-format json \
  --processors classifier --envs prod --device "$device" >"$work/predict.log" 2>&1 &
pids=($!)
wait_http "http://$http/readyz"
until curl -fsS -F "file=@${jpgs[0]}" "http://$http/predict" >/dev/null 2>&1; do sleep 0.3; done
grep -m1 '"ONNX Runtime loaded"' "$work/predict.log" || true
for c in 16 64; do
  timeout 40 "$bin/loadgen" -name "predict-$device-c$c" -url "http://$http/predict" -c "$c" -n "${PREDICT_N:-$((c * 25))}" -warmup 16 "${jpgs[@]}" | tee "$out/predict-c$c.json" || true
done
curl -fsS "http://$http/metrics" | grep -E '^eyeflow_classifier_(info|batch_size_(sum|count))' || true
kill "${pids[@]}"; wait "${pids[@]}" 2>/dev/null || true; pids=()

echo "== 5. the full pipeline, $N images, --device $device (left: $(left) s)"
http=127.0.0.1:18102 nats=127.0.0.1:14302
"$bin/eyeflow" up --data "$work/data" --http "$http" --nats-listen "$nats" --log-format json --device "$device" >"$work/up.log" 2>&1 &
pids=($!)
wait_http "http://$http/readyz"
until curl -fsS "http://$http/metrics" | grep -q '^eyeflow_classifier_info{.*env="prod"'; do sleep 0.3; done
t0=$(now)
timeout $(($(left) - 10)) "$bin/eyeflow" put --nats "nats://$nats" "$work/images" >/dev/null
while :; do
  done_n=$(curl -fsS "http://$http/metrics" | awk 'index($1, "predictions_total{") == 1 && index($1, "env=\"prod\"") {s += $2} END {print int(s)}')
  [ "$done_n" -ge "$N" ] && break
  [ "$(left)" -le 5 ] && { echo "only $done_n of $N predictions before the time limit"; break; }
  sleep 0.2
done
t1=$(now)
secs=$(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.1f", (b - a) / 1e9}')
echo "pipeline: $done_n images uploaded and classified in ${secs} s: $(awk -v n="$done_n" -v s="$secs" 'BEGIN {printf "%.1f", n / s}') images/s"
grep -m1 '"ONNX Runtime loaded"' "$work/up.log" || true
curl -fsS "http://$http/metrics" | grep -E '^eyeflow_classifier_(info|batch_size_(sum|count))' || true
timeout 20 "$bin/analyze" --nats "nats://$nats" --metrics "http://$http/metrics" | tee "$out/analyze.json" || true
kill "${pids[@]}"; wait "${pids[@]}" 2>/dev/null || true; pids=()
grep -E '"level":"(warn|error)"' "$work/up.log" | tail -n 5 || true
echo "== run.sh done in $(($(date +%s) - start)) s; results in $out"
