# Shared by scripts/run_gpt2_*.sh (sourced, not run). The caller has already cd'd to the repo root.
#
# Environment:
#   NUM_GPUS     processes/GPUs on this node (default: GPUs listed by `nvidia-smi -L`, else 1)
#   DATA         directory with llm.c's FineWeb shards fineweb_train_*.bin / fineweb_val_*.bin
#                (default dev/data/fineweb10B; this repo has no script that downloads them)
#   MAX_RETRIES  failed runs in a row without a new checkpoint before giving up (default 20)
#   RETRY_SLEEP  seconds to wait before a retry (default 10)
#
# HellaSwag evaluation is not yet available in train_gpt2cu, so no script passes a flag for it.

if [ -z "${NUM_GPUS:-}" ]; then
    NUM_GPUS=$( (nvidia-smi -L 2>/dev/null || true) | grep -c '^GPU ' || true)
    [ "${NUM_GPUS:-0}" -ge 1 ] 2>/dev/null || NUM_GPUS=1
fi
DATA=${DATA:-dev/data/fineweb10B}

# The trainer command line without model flags: one process, or one per GPU under mpirun with
# ZeRO-1 (-z 1). -d is the global batch, so it must be a multiple of B*T*NUM_GPUS.
if [ "$NUM_GPUS" -eq 1 ]; then
    LAUNCH=(./train_gpt2cu)
else
    command -v mpirun >/dev/null || { echo "NUM_GPUS=$NUM_GPUS needs mpirun on PATH" >&2; exit 1; }
    LAUNCH=(mpirun -np "$NUM_GPUS")
    [ "$(id -u)" -eq 0 ] && LAUNCH+=(--allow-run-as-root)
    LAUNCH+=(./train_gpt2cu -z 1)
fi
# Validate every 250 steps, sample every 20000, checkpoint every 2000, always resume (-y 1 starts
# from scratch when -o has no checkpoint yet).
COMMON=(-i "$DATA/fineweb_train_*.bin" -j "$DATA/fineweb_val_*.bin" -k cosine
        -v 250 -m 20 -s 20000 -g 128 -n 2000 -y 1)

if ! compgen -G "$DATA/fineweb_train_*.bin" >/dev/null ||
   ! compgen -G "$DATA/fineweb_val_*.bin" >/dev/null; then
    echo "no $DATA/fineweb_train_*.bin or fineweb_val_*.bin: make them with llm.c's" \
         "dev/data/fineweb.py, or point DATA at them" >&2
    exit 1
fi

# Newest step with a DONE marker in $1 (empty if none).
latest_done() {
    ls "$1" | sed -n 's/^DONE_\([0-9]\{8\}\)$/\1/p' | sort | tail -n 1
}

# run_until_done OUT LAST_STEP CMD...: runs CMD (which must resume with -y 1) until
# OUT/DONE_<LAST_STEP> exists. A failed run is retried after RETRY_SLEEP seconds; the count of
# failures resets whenever a run got as far as a new checkpoint. Stops on Ctrl-C / SIGTERM, and
# when CMD succeeds (warning if the final marker is still missing, e.g. -x was overridden).
run_until_done() {
    local out=$1 last=$2
    shift 2
    local done_file max=${MAX_RETRIES:-20} fails=0 before rc
    done_file=$(printf '%s/DONE_%08d' "$out" "$last")
    mkdir -p "$out"
    until [ -f "$done_file" ]; do
        before=$(latest_done "$out")
        echo "run_until_done: starting from checkpoint '${before:-none}': $*"
        rc=0
        "$@" || rc=$?
        if [ "$rc" -eq 0 ]; then
            [ -f "$done_file" ] || echo "run_until_done: finished without $done_file" >&2
            return 0
        fi
        if [ "$rc" -eq 130 ] || [ "$rc" -eq 143 ]; then
            echo "run_until_done: interrupted (exit $rc)" >&2
            return "$rc"
        fi
        [ "$(latest_done "$out")" != "$before" ] && fails=0
        fails=$((fails + 1))
        if [ "$fails" -gt "$max" ]; then
            echo "run_until_done: $fails failures in a row without progress, giving up" >&2
            return "$rc"
        fi
        echo "run_until_done: exit $rc; retry $fails/$max in ${RETRY_SLEEP:-10}s" >&2
        sleep "${RETRY_SLEEP:-10}"
    done
    echo "run_until_done: $done_file exists, training is complete"
}
