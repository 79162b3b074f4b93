#!/usr/bin/env bash
# Runs `go test` with the given arguments, its output kept whole in a log,
# and on failure repeats at the end what a reader of a truncated CI log
# needs first: the tests that failed and, after a -timeout, the tests that
# were still running (Go prints those at the top of its goroutine dump,
# which a tail of the output cuts off).
set -uo pipefail
log=$(mktemp /tmp/zkproxy-gotest.XXXXXX.log)
"${GO:-go}" test "$@" 2>&1 | tee "$log"
rc=${PIPESTATUS[0]}
if [ "$rc" -ne 0 ]; then
	echo
	echo "=== go test failed (exit $rc); whole output in $log"
	grep -E '^(--- FAIL|FAIL|panic: )' "$log" | head -40
	if grep -q 'panic: test timed out' "$log"; then
		echo "--- still running at the timeout:"
		grep -A20 'panic: test timed out' "$log" | sed -n '/running tests:/,/^$/p' | head -20
	fi
fi
exit "$rc"
