# shellcheck shell=bash
# The check helpers of the test scripts (sourced, not run; the caller sets WORK, its scratch
# directory). Each check prints "ok - NAME" or "FAIL - NAME"; checks_summary ends a script with
# the failed names and the line "N passed, N failed", and returns non-zero if anything failed.
passed=0
failed=0
failed_names=()

ok() { echo "ok - $1"; passed=$((passed + 1)); }
not_ok() { echo "FAIL - $1"; failed=$((failed + 1)); failed_names+=("$1"); }

# run NAME CMD...: runs CMD with its output in $WORK/NAME.log, returns its status
run() {
    local name=$1
    shift
    "$@" >"$WORK/$name.log" 2>&1
}

# check NAME CMD...: ok if CMD succeeds
check() {
    local name=$1
    shift
    if "$@" >"$WORK/check.log" 2>&1; then ok "$name"; else not_ok "$name: $(tail -c 300 "$WORK/check.log")"; fi
}

# expect_error NAME PATTERN CMD...: CMD must exit 1 (not another code, not a signal) with exactly
# one stderr line "error: ..." matching PATTERN (the file or field it names). Its output stays in
# $WORK/NAME.out and NAME.err (NAME with each character other than [A-Za-z0-9._-] as '_').
expect_error() {
    local name=$1 pattern=$2
    shift 2
    local log=$WORK/${name//[^A-Za-z0-9._-]/_}
    "$@" >"$log.out" 2>"$log.err"
    local status=$? lines
    lines=$(wc -l <"$log.err")
    if [ "$status" -eq 1 ] && [ "$lines" -eq 1 ] && grep -q "^error: .*$pattern" "$log.err"; then
        ok "$name: $(cat "$log.err")"
    else
        not_ok "$name (exit $status, $lines stderr lines, want 1 and /$pattern/): $(head -c 300 "$log.err")"
    fi
}

checks_summary() {
    if [ "$failed" -gt 0 ]; then
        echo "failed:"
        printf '  %s\n' "${failed_names[@]}"
    fi
    echo "$passed passed, $failed failed"
    [ "$failed" -eq 0 ]
}
