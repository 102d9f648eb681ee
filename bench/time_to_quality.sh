#!/usr/bin/env bash
# Time to quality (issue 20): validation loss against tokens seen at equal non-embedding parameter
# count (about 10M, T=256) for (a) GPT-2 + AdamW, (b) llama + AdamW, (c) llama + Muon, each with a
# learning-rate sweep, on ../shared/data's text (bench/ttq_data.sh). Reports the best learning rate
# of each config (lowest final val loss), the val loss against tokens, and the tokens (b) and (c)
# need to reach (a)'s final val loss (linear between eval points); goal: (c) <= 2/3 of (a).
# Results: OUT/summary.md (machine, commit, commands, sweep, curves, estimate), OUT/curves.csv,
# OUT/results.json, OUT/loss_vs_tokens.svg (build/ttq_plot: llmc/report.h's plot writer).
#
# usage: bench/time_to_quality.sh [options]
#   --smoke              a tiny model on tiny data, 2 learning rates, 20 steps: the whole pipeline
#                        in under a minute (tests/test_ttq.sh); results in build/ttq-smoke/results
#   --configs LIST       a,b,c (comma-separated) or auto: a, and b / c when the trainer's --help
#                        shows arch=llama / --optimizer muon (default auto)
#   --trainer PATH       the trainer (default ./train_gpt2; a CUDA build takes the same flags)
#   --data DIR           shared data (default ../shared/data)
#   --work DIR           shards in DIR/data, runs in DIR/runs (default build/ttq)
#   --prepared-data DIR  shards already made by bench/ttq_data.sh in DIR (a machine without the
#                        shared data or the tokenizer's libraries: bench/gpu_check.sh carries them)
#   --out DIR            results (default bench/results/ttq-YYYY-MM-DD)
#   --tokens N           token budget of each run (default 4915200: 300 steps of 16384, 2.7 epochs)
#   --batch B            micro-batch (default 16)     --seq-len T   (default 256)
#   --total-batch D      tokens a step (default 16384; a multiple of B*T)
#   --val-every N        validate every N steps (default 20)
#   --val-batches M      val batches of B*T (default 0: the whole val set)
#   --lrs-a LIST, --lrs-b LIST     AdamW lr sweeps (default "1e-3 2e-3 4e-3")
#   --lrs-c LIST         Muon lr sweep (default "0.01 0.02 0.04")
#   --adamw-lr-c LR      (c)'s AdamW lr (embeddings, head, norms) (default: the best of (b))
#   --model-a DESC       (default L=6,C=384,NH=6,V=50257,maxT=256)
#   --model-b DESC       (b) and (c) (default arch=llama,L=6,C=384,NH=6,KV=3,V=50257,maxT=256,ffn=1152)
#   --warmup-frac F      warmup steps as a fraction of the steps (default 0.05)
#   --final-lr-frac F    cosine decay to F of the peak (default 0.1)
#   --weight-decay W     (default 0.0)
#   --threads N          OMP_NUM_THREADS of the trainer (default 1)
#   --jobs N             runs at a time (default 1): (a)'s and (b)'s sweeps together, then (c)'s,
#                        which takes (b)'s best AdamW lr; N * --threads should not exceed the cores
#   --compact-vocab      renumber the data's tokens densely (bench/ttq_data.sh --compact-vocab) and
#                        give every model V = the ids that occur (23656 of 50257 for the full data):
#                        the output layer at under half the cost (a CPU budget); losses run a
#                        little lower early on, the same for every config (README)
#   --keep-checkpoints   keep each run's final checkpoint (default: deleted, they are ~0.2-0.6 GB)
#   --analyze-only       only read the runs in WORK/runs and write the results
#   --dry-run            print the commands, run nothing
# A run whose main.log already reaches its last step with the same command is kept (the
# benchmark resumes).
set -u
cd "$(dirname "$0")/.." || exit 1
PYTHON=${PYTHON:-python3}

SMOKE=0 CONFIGS=auto TRAINER=./train_gpt2 DATA=../shared/data WORK="" OUT="" TOKENS=4915200
PREPARED=""
B=16 T=256 D=16384 VAL_EVERY=20 VAL_BATCHES=0
LRS_A="1e-3 2e-3 4e-3" LRS_B="1e-3 2e-3 4e-3" LRS_C="0.01 0.02 0.04" ADAMW_LR_C=""
MODEL_A="L=6,C=384,NH=6,V=50257,maxT=256"
MODEL_B="arch=llama,L=6,C=384,NH=6,KV=3,V=50257,maxT=256,ffn=1152"
WARMUP_FRAC=0.05 FINAL_LR_FRAC=0.1 WEIGHT_DECAY=0.0 THREADS=1 KEEP=0 ANALYZE_ONLY=0 DRY_RUN=0
MAX_DOCS=0 JOBS=1 COMPACT=0
die() { echo "error: $*" >&2; exit 1; }
while [ $# -gt 0 ]; do
    [ "$1" != --smoke ] && [ "$1" != --keep-checkpoints ] && [ "$1" != --compact-vocab ] && [ "$1" != --analyze-only ] &&
        [ "$1" != --dry-run ] && [ "$1" != --help ] && [ "$1" != -h ] && [ $# -lt 2 ] &&
        die "option $1 needs a value (see --help)"
    case "$1" in
    --smoke)
        SMOKE=1 TOKENS=2560 B=4 T=32 D=128 VAL_EVERY=5 VAL_BATCHES=4 MAX_DOCS=30
        LRS_A="1e-3 3e-3" LRS_B="1e-3 3e-3" LRS_C="0.01 0.02" WARMUP_FRAC=0.1
        MODEL_A="L=2,C=64,NH=4,V=50257,maxT=32"
        MODEL_B="arch=llama,L=2,C=64,NH=4,KV=2,V=50257,maxT=32,ffn=192"
        shift ;;
    --configs) CONFIGS=$2; shift 2 ;;
    --trainer) TRAINER=$2; shift 2 ;;
    --data) DATA=$2; shift 2 ;;
    --work) WORK=$2; shift 2 ;;
    --prepared-data) PREPARED=$2; shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    --tokens) TOKENS=$2; shift 2 ;;
    --batch) B=$2; shift 2 ;;
    --seq-len) T=$2; shift 2 ;;
    --total-batch) D=$2; shift 2 ;;
    --val-every) VAL_EVERY=$2; shift 2 ;;
    --val-batches) VAL_BATCHES=$2; shift 2 ;;
    --lrs-a) LRS_A=$2; shift 2 ;;
    --lrs-b) LRS_B=$2; shift 2 ;;
    --lrs-c) LRS_C=$2; shift 2 ;;
    --adamw-lr-c) ADAMW_LR_C=$2; shift 2 ;;
    --model-a) MODEL_A=$2; shift 2 ;;
    --model-b) MODEL_B=$2; shift 2 ;;
    --warmup-frac) WARMUP_FRAC=$2; shift 2 ;;
    --final-lr-frac) FINAL_LR_FRAC=$2; shift 2 ;;
    --weight-decay) WEIGHT_DECAY=$2; shift 2 ;;
    --threads) THREADS=$2; shift 2 ;;
    --jobs) JOBS=$2; shift 2 ;;
    --compact-vocab) COMPACT=1; shift ;;
    --keep-checkpoints) KEEP=1; shift ;;
    --analyze-only) ANALYZE_ONLY=1; shift ;;
    --dry-run) DRY_RUN=1; shift ;;
    -h | --help) sed -n '2,/^set -u/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown option '$1' (see --help)" ;;
    esac
done
if [ "$SMOKE" = 1 ]; then
    WORK=${WORK:-build/ttq-smoke}
    OUT=${OUT:-$WORK/results}
fi
WORK=${WORK:-build/ttq}
OUT=${OUT:-bench/results/ttq-$(date -u +%F)}
for pair in "--tokens:$TOKENS" "--batch:$B" "--seq-len:$T" "--total-batch:$D" "--val-every:$VAL_EVERY" \
    "--val-batches:$VAL_BATCHES" "--threads:$THREADS" "--jobs:$JOBS"; do
    [[ ${pair#*:} =~ ^[0-9]+$ ]] || die "${pair%%:*} ${pair#*:}: expected a whole number"
done
[ $((B * T)) -gt 0 ] && [ $((D % (B * T))) -eq 0 ] || die "--total-batch $D: expected a multiple of --batch * --seq-len = $((B * T))"
[ "$JOBS" -ge 1 ] || die "--jobs $JOBS: expected at least 1"
STEPS=$((TOKENS / D))
[ "$STEPS" -ge 1 ] || die "--tokens $TOKENS: less than one step of $D tokens"
WARMUP=$("$PYTHON" -c "print(int($STEPS * float('$WARMUP_FRAC')))") || die "--warmup-frac $WARMUP_FRAC: not a number"
[ "$VAL_BATCHES" -eq 0 ] && VAL_BATCHES=1000000 # the trainer stops after one pass over val

# What the trainer supports (issue 20 adds arch=llama and --optimizer muon to its --help)
[ -x "$TRAINER" ] || { [ "$TRAINER" = ./train_gpt2 ] && make --no-print-directory -s train_gpt2; }
[ -x "$TRAINER" ] || die "$TRAINER: no such trainer (make train_gpt2, or --trainer PATH)"
HELP=$("$TRAINER" --help 2>&1)
HAS_LLAMA=0 HAS_MUON=0
grep -q "arch=llama" <<<"$HELP" && HAS_LLAMA=1
grep -q -- "--optimizer" <<<"$HELP" && grep -q -- "--muon-lr" <<<"$HELP" && HAS_MUON=1
missing() { # config -> what the trainer lacks for it, or nothing
    case "$1" in
    a) ;;
    b) [ "$HAS_LLAMA" = 1 ] || echo "the llama architecture ('arch=llama' in -e of $TRAINER --help)" ;;
    c) [ "$HAS_LLAMA" = 1 ] && [ "$HAS_MUON" = 1 ] ||
        echo "$([ "$HAS_LLAMA" = 1 ] || echo "the llama architecture ('arch=llama') and ")the Muon optimizer ('--optimizer muon', '--muon-lr' in $TRAINER --help)" ;;
    esac
}
[[ $CONFIGS =~ ^(auto|[abc](,[abc])*)$ ]] || die "--configs $CONFIGS: expected auto or a comma-separated list of a, b, c"
if [ "$CONFIGS" = auto ]; then
    CONFIGS=a
    for c in b c; do
        why=$(missing $c)
        if [ -z "$why" ]; then CONFIGS="$CONFIGS,$c"; else echo "note: config ($c) left out: $TRAINER lacks $why"; fi
    done
else
    for c in ${CONFIGS//,/ }; do
        why=$(missing "$c")
        [ -z "$why" ] || [ "$ANALYZE_ONLY" = 1 ] || die "config ($c) cannot run: $TRAINER lacks $why"
    done
fi

DATA_OUT=$WORK/data RUNS=$WORK/runs
if [ -n "$PREPARED" ]; then
    [ -f "$PREPARED/ttq_train_000000.bin" ] && [ -f "$PREPARED/ttq_val_000000.bin" ] ||
        die "--prepared-data $PREPARED: no ttq_train_000000.bin and ttq_val_000000.bin there (bench/ttq_data.sh --out $PREPARED)"
    DATA_OUT=$PREPARED
fi

# The time it takes, before it runs: train tokens of all runs, plus each validation's forward pass
# over the val set at about a third of a training token's cost (forward ~1/3 of forward+backward),
# at the CPU trainer's rate measured on the 2-core dev machine (config (a), 1 thread, nice,
# 2026-12-07: 16384 tokens in 29.7 CPU s = 550 tok/s; the llama config has the same FLOPs a token
# within 1%, Muon's Newton-Schulz adds ~3% a step) and an H100 rate that is a guess, not a
# measurement (train_gpt2cu, bf16, 30M parameters at ~20% MFU: ~1M tok/s; say 0.5-1M).
CPU_TOKENS_PER_S=550 H100_TOKENS_PER_S=500000
estimate() {
    local n_runs=0 c lrs val_tokens
    for c in ${CONFIGS//,/ }; do
        lrs=$LRS_A
        [ "$c" = b ] && lrs=$LRS_B
        [ "$c" = c ] && lrs=$LRS_C
        n_runs=$((n_runs + $(echo $lrs | wc -w)))
    done
    val_tokens=$(sed -n 's/^val_tokens //p' "$DATA_OUT/tokens.txt" 2>/dev/null)
    val_tokens=${val_tokens:-89445} # the full data's (bench/ttq_data.sh)
    local max_val=$((VAL_BATCHES * B * T))
    [ "$val_tokens" -gt "$max_val" ] && val_tokens=$max_val
    "$PYTHON" - "$n_runs" "$TOKENS" "$STEPS" "$VAL_EVERY" "$val_tokens" "$CPU_TOKENS_PER_S" "$H100_TOKENS_PER_S" <<'PYEOF'
import sys
runs, tokens, steps, every, val, cpu, gpu = map(int, sys.argv[1:])
evals = steps // every + 1 + (steps % every != 0)
work = runs * (tokens + evals * val / 3)  # training-token equivalents
print(f"estimate: {runs} runs x {tokens} tokens + {evals} validations of {val} tokens each = "
      f"{work / 1e6:.1f}M training-token equivalents: ~{work / cpu / 3600:.1f} h of one core of the dev "
      f"machine at {cpu} tok/s (~{work / (1.75 * cpu) / 3600:.1f} h on both cores, if alone on them); "
      f"~{work / gpu / 60:.1f} min on one H100 at {gpu} tok/s (a guess) plus ~5 s start-up a run")
PYEOF
}
ESTIMATE=$(estimate)
echo "$ESTIMATE"
export OMP_NUM_THREADS=$THREADS
COMMANDS=$OUT/commands.txt
if [ "$DRY_RUN" = 1 ]; then
    COMMANDS=/dev/null
else
    mkdir -p "$RUNS" "$OUT"
    [ "$ANALYZE_ONLY" = 1 ] || : >"$COMMANDS"
fi
say() { printf '%s\n' "$*" | tee -a "$COMMANDS"; }

if [ -n "$PREPARED" ]; then
    say "# shards prepared in $PREPARED ($(tr '\n' ' ' <"$PREPARED/tokens.txt" 2>/dev/null))"
elif [ "$ANALYZE_ONLY" = 0 ]; then
    compact_flag=()
    [ "$COMPACT" = 1 ] && compact_flag=(--compact-vocab)
    say "bench/ttq_data.sh --data $DATA --out $DATA_OUT --max-docs $MAX_DOCS ${compact_flag[*]}"
    if [ "$DRY_RUN" = 0 ]; then
        bash bench/ttq_data.sh --data "$DATA" --out "$DATA_OUT" --max-docs "$MAX_DOCS" "${compact_flag[@]}" >"$WORK/data.log" 2>&1 ||
            { cat "$WORK/data.log"; die "bench/ttq_data.sh failed"; }
        head -1 "$WORK/data.log" >/dev/null
        grep "^ttq data\|^compact vocab" "$WORK/data.log"
    fi
fi
# Shards renumbered by --compact-vocab (here or where --prepared-data made them) set every model's V
VOCAB=$(sed -n 's/^vocab //p' "$DATA_OUT/tokens.txt" 2>/dev/null)
if [ -n "$VOCAB" ]; then
    MODEL_A=$(sed -E "s/(^|,)V=[0-9]+/\1V=$VOCAB/" <<<"$MODEL_A")
    MODEL_B=$(sed -E "s/(^|,)V=[0-9]+/\1V=$VOCAB/" <<<"$MODEL_B")
    say "# compact vocabulary (bench/ttq.py compact): V=$VOCAB in both models"
elif [ "$COMPACT" = 1 ] && [ "$DRY_RUN" = 0 ]; then
    die "--compact-vocab: no 'vocab' line in $DATA_OUT/tokens.txt (shards prepared without --compact-vocab?)"
fi

# run CONFIG LR: one training run into RUNS/CONFIG_lrLR (kept when complete)
run() {
    local config=$1 lr=$2 dir=$RUNS/$1_lr$2 model=$MODEL_A extra=()
    [ "$config" = a ] || model=$MODEL_B
    if [ "$config" = c ]; then
        local adamw_lr=$ADAMW_LR_C
        if [ -z "$adamw_lr" ]; then
            adamw_lr=$("$PYTHON" bench/ttq.py best --runs "$RUNS" --config b 2>/dev/null) ||
                adamw_lr=$(echo "$LRS_B" | awk '{print $((NF + 1) / 2)}')
            adamw_lr=${adamw_lr:-2e-3}
        fi
        extra=(--optimizer muon --muon-lr "$lr")
        lr=$adamw_lr
    fi
    local cmd=("$TRAINER" -i "$DATA_OUT/ttq_train_*.bin" -j "$DATA_OUT/ttq_val_*.bin" -e "$model" -o "$dir"
        -b "$B" -t "$T" -d "$D" -x "$STEPS" -l "$lr" -u "$WARMUP" -k cosine -q "$FINAL_LR_FRAC"
        -c "$WEIGHT_DECAY" -v "$VAL_EVERY" -m "$VAL_BATCHES" -s 0 --shuffle 1 --seed 42 "${extra[@]}")
    # (no tokenizer.bin after --compact-vocab: its ids are GPT-2's)
    [ -f "$DATA_OUT/tokenizer.bin" ] && cmd+=(--tokenizer "$DATA_OUT/tokenizer.bin")
    local line="OMP_NUM_THREADS=$THREADS ${cmd[*]}"
    # kept: the same command (a changed budget, model or (c)'s AdamW lr runs again), run to its end
    if [ -f "$dir.command" ] && [ "$(cat "$dir.command")" = "$line" ] &&
        grep -q "^s:$STEPS tel:" "$dir/main.log" 2>/dev/null; then
        say "$line   # kept from an earlier invocation"
        echo "($config) lr $2: complete in $dir, kept"
        return 0
    fi
    say "$line"
    [ "$DRY_RUN" = 1 ] && return 0
    rm -rf "$dir" "$dir.max_steps" "$dir.seconds" "$dir.command"
    local start=$SECONDS status=0
    "${cmd[@]}" >"$dir.out" 2>&1 || status=$?
    if [ "$status" != 0 ]; then
        tail -3 "$dir.out" >&2
        echo "warning: ($config) lr $2 failed (exit $status; $dir.out): the sweep goes on" >&2
    fi
    echo "$STEPS" >"$dir.max_steps"
    echo "$line" >"$dir.command"
    echo $((SECONDS - start)) >"$dir.seconds"
    [ "$KEEP" = 1 ] || rm -f "$dir"/model_*.bin "$dir"/state_*.bin
    echo "($config) lr $2: $(grep -c ' tel:' "$dir/main.log" 2>/dev/null || echo 0) val points, $((SECONDS - start)) s, last: $(grep ' tel:' "$dir/main.log" 2>/dev/null | tail -1)"
}

# sweep CONFIG...: their runs, --jobs at a time
sweep() {
    local c lr lrs
    for c in "$@"; do
        lrs=$LRS_A
        [ "$c" = b ] && lrs=$LRS_B
        [ "$c" = c ] && lrs=$LRS_C
        for lr in $lrs; do
            if [ "$JOBS" = 1 ] || [ "$DRY_RUN" = 1 ]; then
                run "$c" "$lr"
            else
                while [ "$(jobs -rp | wc -l)" -ge "$JOBS" ]; do wait -n; done
                run "$c" "$lr" &
            fi
        done
    done
    wait
}
if [ "$ANALYZE_ONLY" = 0 ]; then
    first=() # (c) needs (b)'s best AdamW lr unless --adamw-lr-c gives it
    last=()
    for c in ${CONFIGS//,/ }; do
        if [ "$c" = c ] && [ -z "$ADAMW_LR_C" ]; then last+=(c); else first+=("$c"); fi
    done
    sweep "${first[@]}"
    [ ${#last[@]} = 0 ] || sweep "${last[@]}"
fi
[ "$DRY_RUN" = 1 ] && exit 0

# every run's main.log beside the results (a few KB each), so the numbers can be checked again
mkdir -p "$OUT/logs"
for log in "$RUNS"/*_lr*/main.log; do
    [ -f "$log" ] && cp "$log" "$OUT/logs/$(basename "$(dirname "$log")").log"
done
"$PYTHON" bench/ttq.py analyze --runs "$RUNS" --out "$OUT" --tokens-per-step "$D" --configs "$CONFIGS" \
    >"$OUT/analyze.log" 2>&1 || { cat "$OUT/analyze.log"; die "bench/ttq.py analyze failed"; }

# the plot of the best run of each config, by llmc/report.h's writer
make --no-print-directory -s build/ttq_plot || die "make build/ttq_plot failed"
plot_args=()
while IFS=$'\t' read -r config name lr log; do
    plot_args+=("($config) $name, lr $lr" "$log")
done <"$OUT/best_runs.tsv"
build/ttq_plot "$OUT/loss_vs_tokens.svg" "$D" "val loss vs tokens, best lr of each config" "${plot_args[@]}" ||
    die "build/ttq_plot failed"

# summary.md
PARAMS=$("$PYTHON" bench/ttq.py params "$MODEL_A" "$MODEL_B")
{
    echo "# Time to quality: $([ "$SMOKE" = 1 ] && echo "SMOKE RUN (tiny model, tiny data; not a result)" || echo "issue 20 benchmark")"
    echo
    echo "- date: $(date -u '+%F %T UTC')"
    echo "- machine: $(uname -srm); $(grep -m1 'model name' /proc/cpuinfo 2>/dev/null | sed 's/.*: //'), $(getconf _NPROCESSORS_ONLN) cores"
    command -v nvidia-smi >/dev/null 2>&1 && echo "- GPU: $(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1)"
    echo "- commit: $(git rev-parse --short HEAD 2>/dev/null)$(git diff --quiet HEAD 2>/dev/null || echo ' (with local changes)')"
    echo "- trainer: $TRAINER, OMP_NUM_THREADS=$THREADS, $JOBS run(s) at a time; configs run: $CONFIGS"
    echo "- data: $(tr '\n' ' ' <"$DATA_OUT/tokens.txt" 2>/dev/null) (bench/ttq_data.sh)"
    echo "- budget: $TOKENS tokens a run = $STEPS steps of $D tokens (B=$B, T=$T), warmup $WARMUP steps, cosine to $FINAL_LR_FRAC, weight decay $WEIGHT_DECAY, val every $VAL_EVERY steps"
    echo "- models (non-embedding = blocks + final norm; embedding = wte, GPT-2's wpe, llama's untied lm_head):"
    echo
    echo '```'
    echo "$PARAMS"
    echo '```'
    echo
    cat "$OUT/sweep.md"
    echo
    echo "Plot: loss_vs_tokens.svg. Curves of every run: curves.csv. Each run's main.log: logs/. Commands: commands.txt."
    echo
    echo "### Time"
    echo
    echo "- $ESTIMATE"
    echo "- measured here: $(cat "$RUNS"/*.seconds 2>/dev/null | awk '{s += $1} END {print s + 0}') s of wall time over the runs of this invocation and earlier ones kept ($(ls "$RUNS"/*.seconds 2>/dev/null | wc -l) runs)"
} >"$OUT/summary.md"
cat "$OUT/sweep.md"
echo "results: $OUT/summary.md, $OUT/curves.csv, $OUT/loss_vs_tokens.svg"
