#!/usr/bin/env bash
# Builds helm, which renders and lints the chart deploy/helm/eyeflow in the
# tests, once, into a cache outside the repository, from the Go module proxy
# (no other download). Idempotent: a cached binary of the pinned version is
# reused. Prints the binary's path; with --path only prints it, building
# nothing (the tests use it, and fail when the binary is missing).
set -euo pipefail
version="v4.3.2"
cache="${EYEFLOW_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/eyeflow}"
bin="$cache/helm-$version/helm"
if [ "${1:-}" = --path ]; then
  echo "$bin"
  exit 0
fi
if [ -x "$bin" ]; then
  echo "$bin"
  exit 0
fi
mkdir -p "$cache/helm-$version"
echo "building helm $version (a few minutes, once)..." >&2
GOBIN="$cache/helm-$version" GOFLAGS=-mod=mod go install "helm.sh/helm/v4/cmd/helm@$version" >&2
echo "$bin"
