#!/usr/bin/env bash
# `make fuzz`: fuzzes every Go fuzz target of the repository (each
# `func FuzzXxx` in a _test.go file) for FUZZTIME (default 10s) each, one
# `go test -fuzz` per target (go test fuzzes one target at a time). Inputs
# the fuzzer finds interesting stay in Go's cache; a failing input is written
# to the package's testdata/fuzz/FuzzXxx/, where `make test` runs it as a
# test from then on: commit it with the fix. The seed corpora there run in
# every `make test` without fuzzing.
set -euo pipefail

cd "$(dirname "$0")/.."
export GOTOOLCHAIN=${GOTOOLCHAIN:-go1.27.3}
GO=${GO:-go}
FUZZTIME=${FUZZTIME:-10s}

start=$SECONDS
n=0
while IFS= read -r file; do
	pkg=./$(dirname "$file")
	for target in $(sed -n 's/^func \(Fuzz[A-Za-z0-9_]*\)(.*/\1/p' "$file"); do
		echo "--- $pkg $target ($FUZZTIME)"
		"$GO" test -run '^$' -fuzz "^$target\$" -fuzztime "$FUZZTIME" "$pkg"
		n=$((n + 1))
	done
done < <(git ls-files --cached --others --exclude-standard '*_test.go' | xargs grep -l '^func Fuzz' | sort)
echo "fuzzed $n targets for $FUZZTIME each in $((SECONDS - start))s"
