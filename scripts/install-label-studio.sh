#!/usr/bin/env bash
# Fetches Label Studio's prebuilt editor bundle (the frontend only: main.js
# and main.css, global window.LabelStudio), once, into a cache outside the
# repository, and prints the directory on the last line of stdout. The
# dashboard's Label page serves it from there (--label-studio-dir, or
# $EYEFLOW_LABEL_STUDIO_DIR): no CDN, works air-gapped. Never committed.
#
# Why 1.4.0: it is the last @heartexlabs/label-studio on npm that carries
# build/ (1.8.0 has none). `npm pack` only downloads the tarball: no install
# scripts run. The tarball's SHA-256 is pinned: a different file is refused.
#
# Idempotent: a cached bundle of the pinned version is reused.
#   scripts/install-label-studio.sh   -> prints .../label-studio-1.4.0
set -euo pipefail
version="1.4.0"
sha256="ae6587c2a736ddb1f6bc11c8b22c3b21845967d51d10b73429145b7a9222dc41"
cache="${EYEFLOW_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/eyeflow}"
dir="$cache/label-studio-$version"

if [ -s "$dir/main.js" ] && [ -s "$dir/main.css" ]; then
  echo "$dir"
  exit 0
fi
command -v npm >/dev/null || { echo "install-label-studio: npm is required (apt-get install npm)" >&2; exit 1; }

mkdir -p "$cache"
tmp="$(mktemp -d "$cache/.tmp.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
echo "fetching @heartexlabs/label-studio@$version (about 7 MB, once)..." >&2
(cd "$tmp" && npm pack --silent "@heartexlabs/label-studio@$version" >/dev/null)
tgz="$(ls "$tmp"/heartexlabs-label-studio-*.tgz)"
got="$(sha256sum "$tgz" | cut -d' ' -f1)"
if [ "$got" != "$sha256" ]; then
  echo "install-label-studio: $(basename "$tgz") has SHA-256 $got, want $sha256: refusing it" >&2
  exit 1
fi
tar -xzf "$tgz" -C "$tmp" package/build/static/js/main.js package/build/static/css/main.css package/LICENSE
mkdir -p "$tmp/out"
mv "$tmp/package/build/static/js/main.js" "$tmp/package/build/static/css/main.css" "$tmp/package/LICENSE" "$tmp/out/"
echo "$version $sha256" >"$tmp/out/VERSION"
# Rename into place last, so an interrupted run never leaves a partial
# bundle that a later run would take for a cached one.
rm -rf "$dir"
mv "$tmp/out" "$dir"
echo "$dir"
