#!/usr/bin/env bash
# Installs the peers the side-by-side benchmarks in bench/ run against
# (libvips, Pillow, the old Python stack), on top of setup.sh. Idempotent.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
"$here/setup.sh" libvips-tools python3-pil webp time
