# Shared by the test scripts (sourced, not run): the ok/FAIL lines and their counts, the check that
# a command fails with one error line, and the closing "N passed, N failed". The caller sets WORK
# (its scratch directory) before calling expect_error.
passed=0
failed=0
failed_names=()

ok() { echo "ok - $1"; passed=$((passed + 1)); }
not_ok() { echo "FAIL - $1"; failed=$((failed + 1)); failed_names+=("$1"); }

# expect_error NAME PATTERN CMD...: exit 1, exactly one stderr line "error: ..." matching PATTERN
expect_error() {
    local name=$1 pattern=$2
    shift 2
    "$@" >"$WORK/err.out" 2>"$WORK/err.txt"
    local status=$? lines
    lines=$(wc -l <"$WORK/err.txt")
    if [ "$status" -eq 1 ] && [ "$lines" -eq 1 ] && grep -q "^error: .*$pattern" "$WORK/err.txt"; then
        ok "$name: $(cat "$WORK/err.txt")"
    else
        not_ok "$name (exit $status, $lines stderr lines, want 1 and /$pattern/): $(head -c 300 "$WORK/err.txt")"
    fi
}

# The failed checks' names, then "N passed, N failed"; returns non-zero if any failed.
finish_tests() {
    if [ "$failed" -gt 0 ]; then
        echo "failed:"
        printf '  %s\n' "${failed_names[@]}"
    fi
    echo "$passed passed, $failed failed"
    [ "$failed" -eq 0 ]
}
