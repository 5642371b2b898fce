# Telehandler build, test and tooling targets. `make help` lists them.
SHELL := /bin/bash
GO ?= go
BIN ?= telehandler
export CGO_ENABLED := 0

.PHONY: help build test test-unit test-cgroupv2 vet fmt proto lint-proto run bench bench-smoke clean

help: ## list targets
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-16s %s\n", $$1, $$2}'

build: ## build the static ./telehandler binary
	$(GO) build -trimpath -ldflags='-s -w' -o $(BIN) .

vet: ## gofmt check and go vet
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); echo "gofmt needed"; exit 1; }
	$(GO) vet ./...

test: vet ## all tests with the race detector (root tests need root; CI is root)
	CGO_ENABLED=1 $(GO) test -race -count=1 -timeout 20m ./...

test-unit: ## tests that need no root
	CGO_ENABLED=1 $(GO) test -race -count=1 -short ./...

clean: ## remove build outputs
	rm -f $(BIN) *.test
