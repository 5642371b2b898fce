#!/usr/bin/env bash
# `make vulncheck`: govulncheck on our code against a vulnerability database
# built offline, so that it needs nothing but the Go module proxy:
#   govulncheck (golang.org/x/vuln) and indexdb (golang.org/x/vulndb/cmd/indexdb)
#   are installed from the module proxy into .cache/bin;
#   the database is the golang.org/x/vulndb module's data/osv, turned by indexdb
#   into the layout `govulncheck -db file://...` reads, in .cache/vulndb/<version>.
# Versions are pinned; bump VULNDB_VERSION to a newer pseudo-version the proxy
# serves to check against newer reports. Idempotent: tools and database already
# at the right version are kept. Exits non-zero when a vulnerability is
# reachable from our code (govulncheck's own exit status).
set -euo pipefail

cd "$(dirname "$0")/.."
root=$(pwd)
bin="$root/.cache/bin"
mkdir -p "$bin"
export GOTOOLCHAIN=${GOTOOLCHAIN:-go1.27.3}
GO=${GO:-go}

GOVULNCHECK_VERSION=v1.9.0
VULNDB_VERSION=v0.0.0-20261105234957-e22db6528018

# installed <binary> <module> <version>: the binary exists and was built from that module version.
installed() {
	[ -x "$1" ] && "$GO" version -m "$1" 2>/dev/null | grep -qE "^[[:space:]]+mod[[:space:]]+$2[[:space:]]+$3([[:space:]]|$)"
}

if ! installed "$bin/govulncheck" golang.org/x/vuln "$GOVULNCHECK_VERSION"; then
	GOBIN="$bin" "$GO" install "golang.org/x/vuln/cmd/govulncheck@$GOVULNCHECK_VERSION"
fi
if ! installed "$bin/indexdb" golang.org/x/vulndb "$VULNDB_VERSION"; then
	GOBIN="$bin" "$GO" install "golang.org/x/vulndb/cmd/indexdb@$VULNDB_VERSION"
fi

db="$root/.cache/vulndb/$VULNDB_VERSION"
if [ ! -f "$db/index/db.json" ]; then
	src=$("$GO" mod download -json "golang.org/x/vulndb@$VULNDB_VERSION" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
	[ -d "$src/data/osv" ] || { echo "vulncheck: no data/osv in golang.org/x/vulndb@$VULNDB_VERSION ($src)" >&2; exit 1; }
	rm -rf "$db.tmp"
	"$bin/indexdb" -vulns "$src/data/osv" -out "$db.tmp"
	rm -rf "$db"
	mv "$db.tmp" "$db"
fi

echo "govulncheck $GOVULNCHECK_VERSION, $("$GO" version | cut -d' ' -f3), database golang.org/x/vulndb@$VULNDB_VERSION"
"$bin/govulncheck" -db "file://$db" ./...
