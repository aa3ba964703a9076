#!/usr/bin/env bash
# Installs everything eyeflow's build and tests need on a fresh Debian machine
# that has Go, gcc and apt. Idempotent: already-present packages and cached
# downloads are reused. Caches live outside the repository.
#
#   scripts/setup.sh         everything `make test` needs
#   scripts/setup.sh --demo  only what `make demo` needs: the build's C
#                            libraries and ONNX Runtime (no MinIO build, no
#                            test tools)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
demo=0
if [ "${1:-}" = --demo ]; then demo=1; shift; fi

# Debian packages: C libraries for cgo. The benchmarks' peers are in setup-bench.sh.
apt_pkgs=(pkg-config libjpeg62-turbo-dev curl python3 "$@")
if [ "$demo" = 0 ]; then
  # chromium: dashboard browser test; prometheus: promtool for the rule tests; dcmtk: DICOM test
  # files; python3-torch, python3-torchvision: the trainer's PyTorch engine and its tests (CPU
  # build, /usr/bin/python3).
  apt_pkgs+=(chromium prometheus dcmtk python3-torch python3-torchvision)
fi
missing=()
command -v npm >/dev/null || apt_pkgs+=(npm) # fetches the ONNX Runtime library and Label Studio's editor
for p in "${apt_pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  sudo_cmd=""; [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# ONNX Runtime 1.24.1 (CPU) for the classifier, from the npm registry.
"$here/install-ort.sh" >/dev/null
# Label Studio's editor bundle (main.js, main.css) for the dashboard's Label page.
"$here/install-label-studio.sh" >/dev/null
# MinIO server for the S3 integration tests.
if [ "$demo" = 0 ]; then "$here/install-minio.sh" >/dev/null; fi
# helm for the chart's lint and rendering checks (make helm-check).
if [ "$demo" = 0 ]; then "$here/install-helm.sh" >/dev/null; fi
