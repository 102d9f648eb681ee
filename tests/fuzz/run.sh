#!/usr/bin/env bash
# Runs the libFuzzer harnesses of tests/fuzz/ (tests/fuzz/README.md): each one's seeds are written
# fresh by its own writers, then it fuzzes for FUZZ_SECONDS (default 60) from its corpus
# directory, FUZZ_JOBS harnesses at a time (default 2). One "ok - " line per harness with its
# executions, or "FAIL - " with the harness, the reproducer and the command that replays it; ends
# with "N passed, N failed".
#
#   bash tests/fuzz/run.sh [HARNESS...]     (default: all; make fuzz runs it)
#
# FUZZ_WORK: seeds, corpora, logs and crash reproducers (default build/fuzz/work; the corpora are
# kept from run to run, so `make fuzz` goes on where it stopped). FUZZ_RESULTS=FILE appends one
# line per harness: name, executions, seconds, crashes.
set -u
cd "$(dirname "$0")/../.."
ROOT=$(pwd)
SECONDS_EACH=${FUZZ_SECONDS:-60}
JOBS=${FUZZ_JOBS:-2}
WORK=${FUZZ_WORK:-$ROOT/build/fuzz/work}
ALL=(model state shard mask tokenizer gpt2_vocab tiktoken sft safetensors eval)
if [ $# -gt 0 ]; then HARNESSES=("$@"); else HARNESSES=("${ALL[@]}"); fi
for name in "${HARNESSES[@]}"; do
    case " ${ALL[*]} " in *" $name "*) ;; *)
        echo "error: tests/fuzz/run.sh: no harness '$name' (expected one of: ${ALL[*]})" >&2
        exit 2
        ;;
    esac
done
case "$SECONDS_EACH" in '' | *[!0-9]*)
    echo "error: FUZZ_SECONDS: expected a whole number of seconds, found '$SECONDS_EACH'" >&2
    exit 2
    ;;
esac
mkdir -p "$WORK"
# shellcheck source=tests/lib_checks.sh
source "$ROOT/tests/lib_checks.sh"
if ! make --no-print-directory -s "${HARNESSES[@]/#/build/fuzz/fuzz_}" >"$WORK/build.log" 2>&1; then
    not_ok "building the harnesses failed (clang and libclang-rt-dev installed? see $WORK/build.log): $(tail -c 300 "$WORK/build.log")"
    checks_summary
    exit 1
fi

# fuzz_one NAME: seeds, then the fuzzing run; its log in $WORK/NAME/fuzz.log
fuzz_one() {
    local name=$1 dir=$WORK/$1 binary=$ROOT/build/fuzz/fuzz_$1
    rm -rf "$dir/seeds" "$dir/crashes"
    mkdir -p "$dir/corpus" "$dir/crashes"
    if ! LLMC_FUZZ_SEEDS="$dir/seeds" "$binary" >"$dir/seeds.log" 2>&1; then
        echo "seeds failed" >"$dir/status"
        return
    fi
    # -close_fd_mask=1: the loaders' progress lines on stdout would only slow it down;
    # -timeout: an input that takes 10 s is a hang, reported like a crash
    "$binary" -max_total_time="$SECONDS_EACH" -timeout=10 -close_fd_mask=1 -print_final_stats=1 \
        -artifact_prefix="$dir/crashes/" "$dir/corpus" "$dir/seeds" >"$dir/fuzz.log" 2>&1
    echo "$?" >"$dir/status"
}

running=0
for name in "${HARNESSES[@]}"; do
    fuzz_one "$name" &
    running=$((running + 1))
    if [ "$running" -ge "$JOBS" ]; then
        wait -n
        running=$((running - 1))
    fi
done
wait

for name in "${HARNESSES[@]}"; do
    dir=$WORK/$name
    [ -f "$dir/status" ] || continue
    status=$(cat "$dir/status")
    runs=$(awk '/stat::number_of_executed_units:/ {print $2}' "$dir/fuzz.log" 2>/dev/null)
    crash=$(find "$dir/crashes" -type f 2>/dev/null | head -n 1)
    if [ "$status" = "seeds failed" ]; then
        not_ok "$name: writing its seeds failed: $(tail -c 300 "$dir/seeds.log")"
    elif [ "$status" = 0 ] && [ -z "$crash" ] && [ -n "$runs" ]; then
        ok "$name: $runs executions in ${SECONDS_EACH} s, no crash (corpus: $(find "$dir/corpus" -type f | wc -l) inputs)"
    else
        # the sanitizer's or the harness's own verdict ("fuzz: ...")
        what=$(grep -a -m 1 -E "^(fuzz: |SUMMARY: )" "$dir/fuzz.log" | head -c 300)
        not_ok "$name: crash (exit $status): ${what:-see $dir/fuzz.log}; reproducer: ${crash:-none written}; replay: build/fuzz/fuzz_$name ${crash:-}"
    fi
    if [ -n "${FUZZ_RESULTS:-}" ]; then
        printf '%-12s %12s executions %6s s %s crashes\n' "$name" "${runs:-?}" "$SECONDS_EACH" \
            "$(find "$dir/crashes" -type f 2>/dev/null | wc -l)" >>"$FUZZ_RESULTS"
    fi
done
checks_summary
