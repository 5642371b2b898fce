#!/usr/bin/env bash
# Installs the tools `make proto` and `make lint-proto` need:
#   protoc (Debian's protobuf-compiler, with google/protobuf/*.proto in /usr/include),
#   protoc-gen-go and protoc-gen-go-grpc (Go module proxy) into .cache/bin,
#   buf (npm package @bufbuild/buf, which ships the binary) into .cache/npm.
# Versions are pinned so that regenerated code is byte-identical to what is
# checked in. Idempotent: a tool already at the right version is kept.
set -euo pipefail

cd "$(dirname "$0")/.."
root=$(pwd)
bin="$root/.cache/bin"
mkdir -p "$bin"

PROTOC_GEN_GO_VERSION=v1.36.12
PROTOC_GEN_GO_GRPC_VERSION=v1.6.2
BUF_VERSION=1.75.0

if ! command -v protoc >/dev/null 2>&1 || [ ! -f /usr/include/google/protobuf/timestamp.proto ]; then
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -q
	apt-get install -y -q protobuf-compiler
fi

if ! "$bin/protoc-gen-go" --version 2>/dev/null | grep -qx "protoc-gen-go $PROTOC_GEN_GO_VERSION"; then
	GOBIN="$bin" go install "google.golang.org/protobuf/cmd/protoc-gen-go@$PROTOC_GEN_GO_VERSION"
fi

if ! "$bin/protoc-gen-go-grpc" --version 2>/dev/null | grep -qx "protoc-gen-go-grpc ${PROTOC_GEN_GO_GRPC_VERSION#v}"; then
	GOBIN="$bin" go install "google.golang.org/grpc/cmd/protoc-gen-go-grpc@$PROTOC_GEN_GO_GRPC_VERSION"
fi

buf="$root/.cache/npm/node_modules/.bin/buf"
if ! "$buf" --version 2>/dev/null | grep -qx "$BUF_VERSION"; then
	npm install --no-audit --no-fund --prefix "$root/.cache/npm" "@bufbuild/buf@$BUF_VERSION"
fi

echo "protoc:             $(protoc --version)"
echo "protoc-gen-go:      $("$bin/protoc-gen-go" --version)"
echo "protoc-gen-go-grpc: $("$bin/protoc-gen-go-grpc" --version)"
echo "buf:                $("$buf" --version)"
