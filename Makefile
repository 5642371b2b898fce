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
# grpcnotrace drops grpc-go's golang.org/x/net/trace (tracing is never
# enabled here), and with it html/template, text/template and their init.
BUILD_TAGS := -tags=urfave_cli_no_docs,grpcnotrace
export GOFLAGS := $(strip $(filter-out -tags=urfave_cli_no_docs $(BUILD_TAGS),$(shell $(GO) env GOFLAGS)) $(BUILD_TAGS))

.PHONY: help build test test-unit test-cgroupv2 test-e2e soak vulncheck fuzz vet fmt proto lint-proto run bench bench-smoke clean install release check-unit

# The version telehandler --version prints: git describe of the checkout.
VERSION ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X main.version=$(VERSION)

help: ## list targets
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-16s %s\n", $$1, $$2}'

build: ## build the static ./telehandler binary, its version stamped from git
	$(GO) build -trimpath -ldflags='$(LDFLAGS)' -o $(BIN) .

# make install [PREFIX=/usr/local] [DESTDIR=] [SYSCONFDIR=/etc] [UNITDIR=/etc/systemd/system]
PREFIX ?= /usr/local
SYSCONFDIR ?= /etc
UNITDIR ?= /etc/systemd/system
BINDIR := $(PREFIX)/bin
install: ## install the binary, shell completion, the systemd unit of serve and its default settings (as root)
	@# sudo's secure_path often lacks Go's directory (see run).
	$(MAKE) --no-print-directory build GO=$(RUN_GO)
	install -D -m 0755 $(BIN) $(DESTDIR)$(BINDIR)/telehandler
	install -d -m 0755 $(DESTDIR)$(PREFIX)/share/bash-completion/completions $(DESTDIR)$(PREFIX)/share/zsh/site-functions
	$(abspath $(BIN)) completion bash > $(DESTDIR)$(PREFIX)/share/bash-completion/completions/telehandler
	$(abspath $(BIN)) completion zsh > $(DESTDIR)$(PREFIX)/share/zsh/site-functions/_telehandler
	install -d -m 0755 $(DESTDIR)$(UNITDIR)
	sed -e 's|@BINDIR@|$(BINDIR)|g' -e 's|@SYSCONFDIR@|$(SYSCONFDIR)|g' packaging/telehandler.service > $(DESTDIR)$(UNITDIR)/telehandler.service
	chmod 0644 $(DESTDIR)$(UNITDIR)/telehandler.service
	install -d -m 0755 $(DESTDIR)$(SYSCONFDIR)/telehandler
	install -d -m 0700 $(DESTDIR)$(SYSCONFDIR)/telehandler/certs
	@# Settings an operator may have edited are never overwritten.
	@for f in serve.env deny-list; do \
		if [ -e $(DESTDIR)$(SYSCONFDIR)/telehandler/$$f ]; then echo "kept $(DESTDIR)$(SYSCONFDIR)/telehandler/$$f"; \
		else sed -e 's|@SYSCONFDIR@|$(SYSCONFDIR)|g' packaging/$$f > $(DESTDIR)$(SYSCONFDIR)/telehandler/$$f && chmod 0644 $(DESTDIR)$(SYSCONFDIR)/telehandler/$$f && echo "wrote $(DESTDIR)$(SYSCONFDIR)/telehandler/$$f"; fi; \
	done
	@echo "installed telehandler $(VERSION) into $(DESTDIR)$(BINDIR); then:"
	@echo "  sudo telehandler certgen --out $(SYSCONFDIR)/telehandler/certs --host \$$(hostname -f) --user admin:admin"
	@echo "  sudo systemctl daemon-reload && sudo systemctl enable --now telehandler"

check-unit: ## systemd-analyze verify the unit make install writes (installs systemd's tools if missing)
	@command -v systemd-analyze >/dev/null || { export DEBIAN_FRONTEND=noninteractive; apt-get update -q && apt-get install -y -q systemd; }
	CGO_ENABLED=1 $(GO) test -count=1 -run TestInstall .

# Static binaries for other hosts, with SHA-256 sums, into dist/.
RELEASE_ARCHS ?= amd64 arm64
release: ## build static linux/amd64 and linux/arm64 binaries and their SHA256SUMS into dist/
	rm -rf dist && mkdir -p dist
	for arch in $(RELEASE_ARCHS); do \
		GOOS=linux GOARCH=$$arch $(GO) build -trimpath -ldflags='$(LDFLAGS)' -o dist/telehandler-$(VERSION)-linux-$$arch . || exit 1; \
	done
	cd dist && sha256sum telehandler-* > SHA256SUMS && cat SHA256SUMS

fmt: ## gofmt every Go file
	gofmt -w $$(git ls-files '*.go')

vet: ## gofmt check and go vet
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); echo "gofmt needed"; exit 1; }
	$(GO) vet ./...

test: vet ## all tests with the race detector (root tests need root; CI is root)
	bash scripts/test-deps.sh
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

vulncheck: ## govulncheck (pinned) on our code, against a database built offline from the golang.org/x/vulndb module
	GO=$(GO) bash scripts/vulncheck.sh

FUZZTIME ?= 10s
fuzz: ## fuzz every Go fuzz target for FUZZTIME each (default 10s; the seed corpora in testdata/fuzz run in make test)
	GO=$(GO) FUZZTIME=$(FUZZTIME) bash scripts/fuzz.sh

test-e2e: ## the end-to-end test alone: builds telehandler, runs certgen, serve and the CLI (root)
	bash scripts/test-deps.sh
	CGO_ENABLED=1 $(GO) test -race -count=1 -v -timeout 5m ./e2e/...

SOAK_FLAGS ?=
soak: build ## about two minutes of mixed load on the real binary, with a server restart; fails on any error, lost or duplicated byte, or leak (root)
	$(GO) run ./soak -bin ./$(BIN) $(SOAK_FLAGS)

clean: ## remove build outputs
	rm -f $(BIN) *.test
	rm -rf dist

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
	# the descriptors the server's reflection service serves (server/reflection.go)
	$(GO) test ./server -run '^TestReflectionDescriptorSet$$' -count=1 -update-reflection

lint-proto: proto-tools ## buf lint the .proto files (api/buf.yaml)
	cd api && $(BUF) lint

check-proto: proto ## fail if the checked-in generated code differs from a fresh `make proto`
	git diff --exit-code -- api/ server/reflection.binpb
	@test -z "$$(git ls-files --others --exclude-standard -- api/)" || { git ls-files --others --exclude-standard -- api/; echo "untracked generated files in api/"; exit 1; }

BENCH_FLAGS ?=
bench: build ## benchmarks against fork/exec, unshare, runc and ssh (root; writes bench/results/latest.md)
	bash bench/setup.sh
	$(GO) run ./bench -bin ./$(BIN) -out bench/results/latest.md $(BENCH_FLAGS)

bench-smoke: build ## quick pass of `make bench` with small sizes (root; under ~2 minutes)
	bash bench/setup.sh
	$(GO) run ./bench -quick -bin ./$(BIN) -out bench/results/smoke.md $(BENCH_FLAGS)
