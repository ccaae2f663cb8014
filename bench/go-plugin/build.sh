#!/usr/bin/env bash
# Builds the go-plugin peer of the benchmark (a host and a plugin for go-plugin's KV and
# bidirectional counter examples) into OUT_DIR, from Debian's Go packages in GOPATH mode.
# Installs nothing: run setup.sh first (or have Go, go-plugin, gRPC, goprotobuf and protoc).
# Usage: bench/go-plugin/build.sh OUT_DIR     (prints nothing but errors; exit 0 when built)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="${1:?usage: build.sh OUT_DIR}"
gocode="${TETHER_GOCODE:-/usr/share/gocode}"
for tool in go protoc protoc-gen-go; do
  command -v "$tool" >/dev/null || { echo "build.sh: $tool not found (run bench/go-plugin/setup.sh)" >&2; exit 3; }
done
[ -d "$gocode/src/github.com/hashicorp/go-plugin" ] || {
  echo "build.sh: go-plugin sources not found under $gocode (run bench/go-plugin/setup.sh)" >&2; exit 3; }
mkdir -p "$out"
out="$(cd "$out" && pwd)"
gopath="$out/gopath"
rm -rf "$gopath/src/tetherbench"
mkdir -p "$gopath/src/tetherbench"
cp -r "$here/shared" "$here/host" "$here/plugin" "$gopath/src/tetherbench/"
protoc -I "$here/proto" --go_out=plugins=grpc:"$gopath/src" "$here/proto/kvbench.proto"
export GOPATH="$gopath:$gocode" GO111MODULE=off GOFLAGS= GOCACHE="$out/gocache"
go build -o "$out/go-plugin-host" tetherbench/host
go build -o "$out/go-plugin-kv" tetherbench/plugin
