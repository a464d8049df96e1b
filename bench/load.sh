#!/usr/bin/env bash
# Load test: Gatehouse against the upstream directly, a bare
# httputil.ReverseProxy, and oauth2-proxy (if installed), in one run.
# Needs wrk (apt-get install wrk). Optional: oauth2-proxy v7.15.6 via
#   go install github.com/oauth2-proxy/oauth2-proxy/v7@v7.15.6
# Usage: bench/load.sh [extra flags for bench/cmd/load, e.g. -duration 20s]
set -euo pipefail
cd "$(dirname "$0")/.."
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
go build -o "$out/gatehouse" ./cmd/gatehouse
go build -o "$out/upstream" ./bench/cmd/upstream
go build -o "$out/bareproxy" ./bench/cmd/bareproxy
o2p=""
for c in "$(command -v oauth2-proxy || true)" "$(go env GOPATH)/bin/oauth2-proxy"; do
  if [ -n "$c" ] && [ -x "$c" ]; then o2p="$c"; break; fi
done
go run ./bench/cmd/load -gatehouse "$out/gatehouse" -upstream "$out/upstream" -bareproxy "$out/bareproxy" -policies examples/policies \
  ${o2p:+-oauth2-proxy "$o2p"} "$@"
