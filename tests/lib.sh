# Shared by the test scripts (sourced, after they set WORK, their scratch directory): the
# "ok - ..." / "FAIL - ..." lines and their count, helpers that run a command and judge it, and
# the closing "N passed, N failed" line.
passed=0
failed=0
failed_names=()

ok() { echo "ok - $1"; passed=$((passed + 1)); }
not_ok() { echo "FAIL - $1"; failed=$((failed + 1)); failed_names+=("$1"); }

# run NAME CMD...: runs CMD, its output in $WORK/NAME.log; returns its status.
run() {
    local name=$1
    shift
    "$@" >"$WORK/$name.log" 2>&1
}

# check NAME CMD...: ok if CMD succeeds.
check() {
    local name=$1
    shift
    if "$@" >"$WORK/check.log" 2>&1; then ok "$name"; else not_ok "$name: $(tail -c 300 "$WORK/check.log")"; fi
}

# expect_error NAME PATTERN CMD...: CMD must exit 1 with exactly one stderr line, "error: ...",
# matching PATTERN (the file or field it names). With EXPECT_ERROR_AFTER_PROGRESS=1 other lines
# (progress) may come before it: the one error line must be the last. CMD's stdout stays in
# $WORK/expect_error.out.
expect_error() {
    local name=$1 pattern=$2
    shift 2
    "$@" >"$WORK/expect_error.out" 2>"$WORK/expect_error.err"
    local status=$? lines last
    lines=$(wc -l <"$WORK/expect_error.err")
    [ "${EXPECT_ERROR_AFTER_PROGRESS:-0}" = 1 ] && lines=$(grep -c "^error: " "$WORK/expect_error.err")
    last=$(tail -1 "$WORK/expect_error.err")
    if [ "$status" -eq 1 ] && [ "$lines" -eq 1 ] && printf '%s\n' "$last" | grep -q "^error: .*$pattern"; then
        ok "$name: $last"
    else
        not_ok "$name (exit $status, $lines error lines, want 1 and /$pattern/): $(head -c 300 "$WORK/expect_error.err")"
    fi
}

# finish [LINE]: the names of the failed checks, LINE, then "N passed, N failed"; returns non-zero
# if any check failed (a script ends with it).
finish() {
    if [ "$failed" -gt 0 ]; then
        echo "failed:"
        printf '  %s\n' "${failed_names[@]}"
    fi
    [ $# -eq 0 ] || echo "$1"
    echo "$passed passed, $failed failed"
    [ "$failed" -eq 0 ]
}
