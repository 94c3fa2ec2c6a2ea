#!/usr/bin/env bash
# fuzz.sh runs every Go fuzz target in the module, one after another, for a while each.
#
#   scripts/fuzz.sh            every target for 20s
#   scripts/fuzz.sh 2m         every target for two minutes
#   scripts/fuzz.sh 30s Seal   only the targets whose package or name matches "Seal"
#
# Plain `go test` (make test) already runs each target's seeds and testdata/fuzz corpus;
# this is the longer, on-demand search. A failing input is written by go test to
# <package>/testdata/fuzz/<Target>/ and stays there as a regression test: read it, fix
# the code, keep the file. The script goes on with the other targets and exits non-zero
# if any failed.
set -uo pipefail

duration="${1:-20s}"
filter="${2:-}"
cd "$(dirname "$0")/.."

# Minimizing each new interesting input gets 60s by default, during which the fuzzer
# reports no progress; bounded by a count, the time goes to searching instead.
minimize="${FUZZ_MINIMIZE:-200x}"

# Every `func FuzzXxx(` in a _test.go file, as "package-dir Target".
mapfile -t targets < <(grep -rE --include='*_test.go' -o '^func Fuzz[A-Za-z0-9_]+\(' \
	server wasm scripts 2>/dev/null |
	sed -E 's|^(.*)/[^/]+_test\.go:func (Fuzz[A-Za-z0-9_]+)\($|\1 \2|' | sort -u)

failed=()
for entry in "${targets[@]}"; do
	dir="${entry% *}"
	name="${entry#* }"
	if [[ -n "$filter" && "$dir/$name" != *"$filter"* ]]; then
		continue
	fi

	echo "== ./$dir $name ($duration)"
	if ! go test "./$dir" -run '^$' -fuzz "^${name}\$" -fuzztime "$duration" \
		-fuzzminimizetime "$minimize"; then
		failed+=("./$dir $name")
	fi
done

if ((${#failed[@]} > 0)); then
	echo "fuzz: failing targets:"
	printf '  %s\n' "${failed[@]}"
	exit 1
fi
echo "fuzz: every target passed"
