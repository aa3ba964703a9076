#!/usr/bin/env bash
# Fetches the ONNX Runtime shared library the classifier loads, once, into a
# cache outside the repository, and prints its path on the last line of stdout.
#
# Why npm: github.com/yalue/onnxruntime_go v1.27.0 is compiled against the C
# headers of ONNX Runtime 1.24.1 (API version 24); an older library fails at
# start with "Error setting ORT API base: 2". The npm package
# onnxruntime-node@1.24.1 ships exactly that library prebuilt for Linux, and
# `npm pack` only downloads the tarball: no install scripts run.
#
# The library has the CPU and WebGPU execution providers (--device webgpu: Dawn
# on Vulkan, see the README's "GPU hosts"), no CUDA. For CUDA/TensorRT use an
# ONNX Runtime GPU build of the same version (see processors/classifier/README.md)
# and point EYEFLOW_ORT_LIB (or --ort-lib) at it instead of running this script.
#
# Idempotent: a cached library of the pinned version is reused.
#   scripts/install-ort.sh            -> prints .../libonnxruntime.so.1
set -euo pipefail
version="1.24.1"
cache="${EYEFLOW_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/eyeflow}"
dir="$cache/onnxruntime-$version"
lib="$dir/libonnxruntime.so.1"

case "$(uname -m)" in
  x86_64 | amd64) arch=x64 ;;
  aarch64 | arm64) arch=arm64 ;;
  *) echo "install-ort: unsupported architecture $(uname -m)" >&2; exit 1 ;;
esac
[ "$(uname -s)" = Linux ] || { echo "install-ort: only Linux is supported (got $(uname -s))" >&2; exit 1; }

if [ -s "$lib" ]; then
  echo "$lib"
  exit 0
fi
command -v npm >/dev/null || { echo "install-ort: npm is required (apt-get install npm)" >&2; exit 1; }

mkdir -p "$dir"
tmp="$(mktemp -d "$dir/.tmp.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
echo "fetching onnxruntime-node@$version (about 85 MB, once)..." >&2
(cd "$tmp" && npm pack --silent "onnxruntime-node@$version" >/dev/null)
tgz="$(ls "$tmp"/onnxruntime-node-*.tgz)"
member="package/bin/napi-v6/linux/$arch/libonnxruntime.so.1"
tar -xzf "$tgz" -C "$tmp" "$member" || {
  echo "install-ort: $member not in $(basename "$tgz"); members:" >&2
  tar -tzf "$tgz" | grep -i onnxruntime >&2 || true
  exit 1
}
# Rename into place last, so an interrupted run never leaves a partial library
# that a later run would take for a cached one.
mv "$tmp/$member" "$lib.part"
chmod 0755 "$lib.part"
mv "$lib.part" "$lib"
echo "$lib"
