# Telehandler build, test and tooling targets. `make help` lists them.
SHELL := /bin/bash
# Go 1.27.3 (patched standard library): machines start on 1.26.8 and ignore go.mod's
# toolchain line, so every entry point exports it; the go command fetches it through
# the module proxy on first use.
export GOTOOLCHAIN := go1.27.3
GO ?= go
BIN ?= telehandler
export CGO_ENABLED := 0
# urfave/cli's docs.go (man and markdown output, unused here) pulls in a
# markdown renderer whose package init every start of the binary pays, the
# per-job __child shim included (~0.5 ms). The tag drops it. Exported through
# GOFLAGS so that every go command below gets it, and so do the builds the
# tests and scripts run (e2e's go build, scripts/test-cgroupv2.sh).
export GOFLAGS := $(strip $(filter-out -tags=urfave_cli_no_docs,$(shell $(GO) env GOFLAGS)) -tags=urfave_cli_no_docs)

.PHONY: help build test test-unit test-cgroupv2 test-e2e vet fmt proto lint-proto run bench bench-smoke clean

help: ## list targets
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-16s %s\n", $$1, $$2}'

build: ## build the static ./telehandler binary
	$(GO) build -trimpath -ldflags='-s -w' -o $(BIN) .

fmt: ## gofmt every Go file
	gofmt -w $$(git ls-files '*.go')

vet: ## gofmt check and go vet
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); echo "gofmt needed"; exit 1; }
	$(GO) vet ./...

test: vet ## all tests with the race detector (root tests need root; CI is root)
	CGO_ENABLED=1 $(GO) test -race -count=1 -timeout 20m ./...

test-unit: ## tests that need no root
	CGO_ENABLED=1 $(GO) test -race -count=1 -short ./...

test-cgroupv2: ## root integration tests + end-to-end run inside a pure cgroup v2 QEMU VM
	GO=$(GO) bash scripts/test-cgroupv2.sh

# `sudo make run`: sudo's secure_path often lacks Go's directory.
RUN_GO := $(or $(shell command -v $(GO) 2>/dev/null),$(wildcard /usr/local/go/bin/go),$(GO))
DEV := $(CURDIR)/.dev
DEV_ADDR ?= 127.0.0.1:7443
DEV_CGROUP ?= telehandler
run: ## build, make dev certificates in .dev/certs (alice, bob: user; admin: admin), run the server in the foreground (root: sudo make run)
	$(MAKE) --no-print-directory build GO=$(RUN_GO)
	@mkdir -p $(DEV)
	@if [ ! -f $(DEV)/certs/ca.crt ] || [ -n "$$(find $(DEV)/certs/ca.crt -mmin +10000)" ]; then \
		./$(BIN) certgen --force --out $(DEV)/certs --user alice --user bob --user admin:admin >/dev/null && \
		echo "made development certificates in $(DEV)/certs (valid one week)"; \
	fi
	@# Under sudo, the keys go to the user who runs the CLI.
	@if [ -n "$${SUDO_UID:-}" ]; then chown "$$SUDO_UID:$$SUDO_GID" $(DEV) && chown -R "$$SUDO_UID:$$SUDO_GID" $(DEV)/certs; fi
	@echo
	@echo "In another shell, use the CLI as alice (bob.crt/bob.key and admin.crt/admin.key work the same):"
	@echo "  export TELEHANDLER_ADDR=$(DEV_ADDR) TELEHANDLER_CA=$(DEV)/certs/ca.crt TELEHANDLER_CERT=$(DEV)/certs/alice.crt TELEHANDLER_KEY=$(DEV)/certs/alice.key"
	@echo "  $(CURDIR)/$(BIN) start --watch -- sh -c 'echo hello from \$$(hostname)'"
	@echo
	exec ./$(BIN) serve --listen $(DEV_ADDR) --state-dir $(DEV)/state --cgroup-parent $(DEV_CGROUP) \
		--ca $(DEV)/certs/ca.crt --cert $(DEV)/certs/server.crt --key $(DEV)/certs/server.key

test-e2e: ## the end-to-end test alone: builds telehandler, runs certgen, serve and the CLI (root)
	CGO_ENABLED=1 $(GO) test -race -count=1 -v -timeout 5m ./e2e/

clean: ## remove build outputs
	rm -f $(BIN) *.test

PROTO_TOOLS := $(CURDIR)/.cache/bin
BUF := $(CURDIR)/.cache/npm/node_modules/.bin/buf
PROTO_FILES := telehandler/foreman/v1alpha1/foreman.proto

.PHONY: proto-tools check-proto
proto-tools: ## install protoc, protoc-gen-go, protoc-gen-go-grpc and buf (pinned)
	bash scripts/proto-tools.sh

proto: proto-tools ## regenerate the Go code in api/ from the .proto files
	cd api && protoc -I . \
		--plugin=protoc-gen-go=$(PROTO_TOOLS)/protoc-gen-go \
		--plugin=protoc-gen-go-grpc=$(PROTO_TOOLS)/protoc-gen-go-grpc \
		--go_out=. --go_opt=paths=source_relative \
		--go-grpc_out=. --go-grpc_opt=paths=source_relative \
		$(PROTO_FILES)

lint-proto: proto-tools ## buf lint the .proto files (api/buf.yaml)
	cd api && $(BUF) lint

check-proto: proto ## fail if the checked-in generated code differs from a fresh `make proto`
	git diff --exit-code -- api/
	@test -z "$$(git ls-files --others --exclude-standard -- api/)" || { git ls-files --others --exclude-standard -- api/; echo "untracked generated files in api/"; exit 1; }

BENCH_FLAGS ?=
bench: build ## benchmarks against fork/exec, unshare, runc and ssh (root; writes bench/results/latest.md)
	bash bench/setup.sh
	$(GO) run ./bench -bin ./$(BIN) -out bench/results/latest.md $(BENCH_FLAGS)

bench-smoke: build ## quick pass of `make bench` with small sizes (root; under ~2 minutes)
	bash bench/setup.sh
	$(GO) run ./bench -quick -bin ./$(BIN) -out bench/results/smoke.md $(BENCH_FLAGS)
