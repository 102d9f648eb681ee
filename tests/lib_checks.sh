# shellcheck shell=bash
# The check helpers of the test scripts (sourced, not run; the caller sets WORK, its scratch
# directory). Each check prints "ok - NAME" or "FAIL - NAME"; checks_summary ends a script with
# the failed names and the line "N passed, N failed", and returns non-zero if anything failed.
passed=0
failed=0

# The CPU binaries under test: $BIN/train_gpt2, test_gpt2, tokenizer, chat and $UNIT_BIN/test_units,
# test_tokenizer_units, test_sft; with LLMC_SANITIZE=1 their AddressSanitizer + UBSan builds
# (make SANITIZE=1: build/sanitize/), which run_tests.sh's sanitized pass uses.
if [ "${LLMC_SANITIZE:-0}" = 1 ]; then
    BIN=build/sanitize
    UNIT_BIN=build/sanitize
else
    BIN=.
    UNIT_BIN=build
fi
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
# one stderr line "error: ..." matching PATTERN (the file or field it names). With
# EXPECT_ERROR_AFTER_PROGRESS=1 other stderr lines (progress) may come first: the one error line
# must be the last. Its output stays in $EXPECT_ERROR_LOG.out and .err ($WORK/NAME with each
# character other than [A-Za-z0-9._-] as '_').
expect_error() {
    local name=$1 pattern=$2
    shift 2
    EXPECT_ERROR_LOG=$WORK/${name//[^A-Za-z0-9._-]/_}
    local log=$EXPECT_ERROR_LOG
    "$@" >"$log.out" 2>"$log.err"
    local status=$? lines last
    lines=$(wc -l <"$log.err")
    [ "${EXPECT_ERROR_AFTER_PROGRESS:-0}" = 1 ] && lines=$(grep -c "^error: " "$log.err")
    last=$(tail -n 1 "$log.err")
    if [ "$status" -eq 1 ] && [ "$lines" -eq 1 ] && printf '%s\n' "$last" | grep -q "^error: .*$pattern"; then
        ok "$name: $last"
    else
        not_ok "$name (exit $status, $lines error lines, want 1 and /$pattern/): $(head -c 300 "$log.err")"
    fi
}

# compare_losses NAME C_LOG(main.log) PY_LOSSES TOLERANCE: the trainer's losses (its main.log) against
# a reference's (scripts/train_gpt2.py --losses); prints the worst difference. $PY: a python.
compare_losses() {
    $PY - "$2" "$3" "$4" <<'EOF'
import sys
c = {}
for line in open(sys.argv[1]):
    if " trl:" in line:
        step = int(line.split()[0][2:]); c[step] = float(line.split()[1][4:])
ref = [tuple(l.split()) for l in open(sys.argv[2]) if l.strip()]
ref = {int(s): float(v) for s, v in ref}
tol = float(sys.argv[3])
worst = max(abs(c[s] - ref[s]) for s in ref)
print("steps %d, max |diff| %.2e (tolerance %g)" % (len(ref), worst, tol))
sys.exit(0 if len(c) == len(ref) and worst <= tol else 1)
EOF
}
# reused_reference ARGS...: in place of a PyTorch reference run (scripts/train_gpt2.py ARGS...),
# copies each file it would write (--write-model, --write-model-bf16, --write-state, --losses
# PATH) from $LLMC_REFERENCE_DIR, where an earlier run of the same checks wrote it under the same
# name: the sanitized pass (run_tests.sh, LLMC_SANITIZE=1) checks its binaries against those.
reused_reference() {
    while [ $# -gt 0 ]; do
        case $1 in --write-model | --write-model-bf16 | --write-state | --losses)
            cp "$LLMC_REFERENCE_DIR/$(basename "$2")" "$2" || return 1
            echo "reused: $2 from $LLMC_REFERENCE_DIR"
            shift
            ;;
        esac
        shift
    done
}

checks_summary() {
    if [ "$failed" -gt 0 ]; then
        echo "failed:"
        printf '  %s\n' "${failed_names[@]}"
    fi
    echo "$passed passed, $failed failed"
    [ "$failed" -eq 0 ]
}
