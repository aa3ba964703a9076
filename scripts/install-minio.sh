#!/usr/bin/env bash
# Builds the MinIO server used by the S3 integration tests, once, into a cache
# outside the repository. Idempotent: a cached binary of the pinned version is reused.
set -euo pipefail
version="v0.0.0-20260212201848-7aac2a2c5b7c"
cache="${EYEFLOW_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/eyeflow}"
bin="$cache/minio-$version/minio"
if [ -x "$bin" ]; then
  echo "$bin"
  exit 0
fi
mkdir -p "$cache/minio-$version"
echo "building MinIO $version (a few minutes, once)..." >&2
GOBIN="$cache/minio-$version" GOFLAGS=-mod=mod go install "github.com/minio/minio@$version" >&2
echo "$bin"
