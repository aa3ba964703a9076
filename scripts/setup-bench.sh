#!/usr/bin/env bash
# Installs the peers the side-by-side benchmarks in bench/ run against, on top
# of setup.sh: libvips and Pillow (resize), and the old Python stack (its ETL
# transform and FastAPI/PyTorch service, ../shared/peers/) from Debian's
# packages, since PyPI is not needed. Idempotent.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
"$here/setup.sh" libvips-tools python3-pil webp time \
  python3-torch python3-torchvision python3-sklearn python3-numpy \
  python3-fastapi python3-uvicorn python3-multipart python3-prometheus-client
