#!/usr/bin/env bash
# Runs the tests as if the clock read a given UTC moment, then ran on:
#   test/clock/at.sh "2026-12-31 23:56:00" [npm test arguments]
# Tests that hold only at some hours (a day boundary, a store's midnight) fail
# here at the hour they fail in CI. Optional, for developers: it needs a C
# compiler (cc) and GNU date; CI does not run it.
set -euo pipefail
[ $# -ge 1 ] || { echo 'usage: test/clock/at.sh "YYYY-MM-DD HH:MM:SS" [npm test arguments]' >&2; exit 2; }
here=$(cd "$(dirname "$0")" && pwd)
build=$(mktemp -d)
trap 'rm -rf "$build"' EXIT
# Readable by the embedded PostgreSQL, which runs as its own user when started as root.
chmod 755 "$build"
cc -shared -fPIC -O2 -o "$build/libclockoffset.so" "$here/clockOffset.c" -ldl
offset=$(( $(date -u -d "$1" +%s) - $(date -u +%s) ))
shift
echo "tests at $(date -u -d "@$(( $(date -u +%s) + offset ))" '+%Y-%m-%d %H:%M:%S') UTC (clock offset ${offset} s)" >&2
cd "$here/../.."
CLOCK_OFFSET_S=$offset LD_PRELOAD="$build/libclockoffset.so" npm test -- "$@"
