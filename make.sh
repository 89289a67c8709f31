#!/usr/bin/env bash
# make.sh — check and build httplog: gofmt (no file may need formatting),
# go vet, then go build -o httplog, with cgo off: a static binary that
# runs on any Linux of the same architecture, whatever its libc. Uses only the Go toolchain already
# installed (modules come from go.sum / the module cache as usual); it
# downloads no tools. Run from anywhere: it works in its own directory.
set -euo pipefail
cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")"

echo "== gofmt -l ."
unformatted=$(gofmt -l .)
if [[ -n $unformatted ]]; then
	echo "make.sh: these files are not gofmt-formatted (run gofmt -w on them):" >&2
	while IFS= read -r f; do
		echo "  $f" >&2
	done <<<"$unformatted"
	exit 1
fi

echo "== go vet ./..."
go vet ./...

echo "== CGO_ENABLED=0 go build -o httplog ."
CGO_ENABLED=0 go build -o httplog .
./httplog -v
