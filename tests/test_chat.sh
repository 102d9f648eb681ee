#!/usr/bin/env bash
# Generation and chat tests (part of `make test`; alone: bash tests/test_chat.sh): the trainer keeps
# the tokenizer beside its checkpoints and chat finds it there; --complete (and llama.cpp's -p, -n,
# --temp) is deterministic, respects -n and its greedy continuation equals PyTorch's; a conversation
# that outgrows a small context drops its oldest turns and keeps the system message; an empty line
# is a message, /quit ends; Ctrl-C (a SIGINT sent here) stops an answer and chat takes the next
# line, and quits at the prompt; the untrained-chat-tokens warning; bad flags give one error line.
# Ends with one line "N passed, N failed"; exits non-zero if anything failed.
set -u
cd "$(dirname "$0")/.."
ROOT=$(pwd)
WORK=${LLMC_CHAT_TEST_DIR:-$ROOT/build/chat_test}
FIX=$ROOT/tests/fixtures/sft
rm -rf "$WORK"
mkdir -p "$WORK"
# shellcheck source=tests/lib_checks.sh
source "$ROOT/tests/lib_checks.sh"

make --no-print-directory -s "$BIN/tokenizer" "$BIN/train_gpt2" "$BIN/chat" >"$WORK/build.log" 2>&1 ||
    { cat "$WORK/build.log"; echo "error: make failed"; echo "0 passed, 1 failed"; exit 1; }
TORCH_PY=""
for candidate in "${PYTHON:-}" /usr/bin/python3 python3; do
    if [ -n "$candidate" ] && "$candidate" -c "import torch" >/dev/null 2>&1; then TORCH_PY=$candidate; break; fi
done
# one thread: the models are tiny, and on a busy machine OpenMP's barriers made two threads 12x
# slower (2 minutes for this script instead of 10 s); test_sft.sh runs the cache with threads
export OMP_NUM_THREADS=1

# ---------------------------------------------------------------------------------------------
# 1. models: a base model on plain text, an SFT model with a 64-token context, an SFT model with
#    the full 1024 (long answers for Ctrl-C). Small shapes: each trains in seconds.
$BIN/tokenizer prepare -i "$FIX/gsm8k.jsonl" --field question,answer --val-fraction 0 -o "$WORK/plain" \
    >"$WORK/prepare_plain.log" 2>&1
$BIN/tokenizer prepare --sft gsm8k --seq-len 32 --val-fraction 0 -i "$FIX/gsm8k.jsonl" -o "$WORK/sft" \
    >"$WORK/prepare_sft.log" 2>&1
train() { # NAME DESCRIPTOR DATA_DIR STEPS
    $BIN/train_gpt2 -e "$2" -i "$3/data_train_000000.bin" -j "" -b 1 -t 32 -x "$4" -l 3e-3 -s 0 --tokenizer "" \
        -o "$WORK/$1" >"$WORK/train_$1.log" 2>&1
}
train base "L=2,C=64,NH=4,maxT=128" "$WORK/plain" 8 &&
    train small "L=2,C=64,NH=4,maxT=64" "$WORK/sft" 2 &&
    train long "L=2,C=128,NH=4" "$WORK/sft" 2 ||
    not_ok "training the test models (see $WORK/train_*.log)"
BASE=$WORK/base/model_00000008.bin
SMALL=$WORK/small/model_00000002.bin
LONG=$WORK/long/model_00000002.bin

# ---------------------------------------------------------------------------------------------
# 2. the tokenizer beside the checkpoint (--tokenizer "": only the one beside the data can be kept)
if cmp -s "$WORK/sft/tokenizer.bin" "$WORK/small/tokenizer.bin" &&
    cmp -s "$WORK/plain/tokenizer.bin" "$WORK/base/tokenizer.bin" &&
    grep -q "kept beside the checkpoints" "$WORK/train_small.log"; then
    ok "the trainer keeps the data's tokenizer.bin beside its checkpoints (SFT and plain runs)"
else
    not_ok "tokenizer.bin beside the checkpoints (see $WORK/train_small.log, $WORK/train_base.log)"
fi
if $BIN/chat -e "$SMALL" -p "What is 10 - 4?" -n 4 --temp 0 >"$WORK/found.out" 2>"$WORK/found.err" &&
    [ -s "$WORK/found.out" ]; then
    ok "chat without -v finds the tokenizer beside the checkpoint and answers"
else
    not_ok "chat without -v: $(head -c 300 "$WORK/found.err")"
fi
# no tokenizer with the model's V: a note, nothing written
$BIN/train_gpt2 -e "L=2,C=64,NH=4,V=50300,maxT=64" -i "$WORK/plain/data_train_000000.bin" -j "" -b 1 -t 16 \
    -x 1 -s 0 --tokenizer "" -o "$WORK/vother" >"$WORK/train_vother.log" 2>&1
if grep -q "note: no tokenizer with the model's V=50300" "$WORK/train_vother.log" && [ ! -e "$WORK/vother/tokenizer.bin" ]; then
    ok "a tokenizer of another V is not kept (a note says so)"
else
    not_ok "tokenizer of another V (see $WORK/train_vother.log)"
fi

# ---------------------------------------------------------------------------------------------
# 3. completion: deterministic, -n respected, aliases, greedy = PyTorch's greedy continuation
PROMPT="Natalia sold clips to 48 of her friends"
ids() { $BIN/chat -e "$BASE" --ids 1 "$@" 2>>"$WORK/ids.err"; }
greedy_a=$(ids --complete "$PROMPT" --temperature 0 --max-tokens 20)
greedy_b=$(ids --complete "$PROMPT" --temperature 0 --max-tokens 20 --seed 7)
alias_c=$(ids -p "$PROMPT" --temp 0 -n 20)
alias_d=$(ids --complete "$PROMPT" --temp 0 --n-predict 20)
if [ "$(echo "$greedy_a" | wc -w)" -eq 20 ] && [ "$greedy_a" = "$greedy_b" ] && [ "$greedy_a" = "$alias_c" ] &&
    [ "$greedy_a" = "$alias_d" ]; then
    ok "greedy completion: 20 tokens for -n 20, the same for any seed and with -p/--temp/-n/--n-predict"
else
    not_ok "greedy completion: '$greedy_a' / '$greedy_b' / '$alias_c' / '$alias_d' ($(head -c 200 "$WORK/ids.err"))"
fi
sampled_1=$(ids --complete "$PROMPT" --temperature 1 --top-p 1 -n 30 --seed 1)
sampled_2=$(ids --complete "$PROMPT" --temperature 1 --top-p 1 -n 30 --seed 1)
sampled_3=$(ids --complete "$PROMPT" --temperature 1 --top-p 1 -n 30 --seed 2)
if [ -n "$sampled_1" ] && [ "$sampled_1" = "$sampled_2" ] && [ "$sampled_1" != "$sampled_3" ]; then
    ok "sampled completion: the same seed gives the same tokens, another seed others"
else
    not_ok "sampled completion: '$sampled_1' / '$sampled_2' / '$sampled_3'"
fi
$BIN/chat -e "$BASE" --complete "$PROMPT" -n 12 --seed 3 >"$WORK/complete.out" 2>"$WORK/complete.err"
if head -c ${#PROMPT} "$WORK/complete.out" | grep -qF "$PROMPT" &&
    grep -Eq '^\[[0-9]+ tokens in [0-9.]+ s: [0-9.]+ tokens/s; prompt [0-9]+ tokens' "$WORK/complete.err"; then
    ok "completion prints the text and its continuation; tokens/s on stderr: $(tail -1 "$WORK/complete.err")"
else
    not_ok "completion output (see $WORK/complete.out, $WORK/complete.err)"
fi
# without -n, what fits: a 128-token model holds <|endoftext|>, the prompt and 128 - prompt new
# tokens (the last one is printed, not run), unless <|endoftext|> comes first
full=$($BIN/chat -e "$BASE" --ids 1 --complete "$PROMPT" --temperature 1 --top-p 1 --seed 5 2>"$WORK/full.err")
prompt_tokens=$(printf '%s' "$PROMPT" | $BIN/tokenizer encode -v "$WORK/plain/tokenizer.bin" -i - -o - | wc -l)
count=$(echo "$full" | wc -w)
if { grep -q "the context is full" "$WORK/full.err" && [ "$count" -eq $((128 - prompt_tokens)) ]; } ||
    { grep -q "; <|endoftext|>" "$WORK/full.err" && [ "$count" -lt $((128 - prompt_tokens)) ]; }; then
    ok "without -n the continuation runs to the end of the context: $count tokens after 1 + $prompt_tokens ($(tail -1 "$WORK/full.err"))"
else
    not_ok "completion without -n: $count tokens after 1 + $prompt_tokens ($(tail -1 "$WORK/full.err"))"
fi
if [ -z "$TORCH_PY" ]; then
    not_ok "no python with torch: the PyTorch greedy reference is skipped"
else
    printf '%s' "$PROMPT" | $BIN/tokenizer encode -v "$WORK/plain/tokenizer.bin" -i - -o - >"$WORK/prompt.ids"
    echo "$greedy_a" >"$WORK/greedy_c.ids"
    # greedy from the full forward pass (no cache), one token at a time, near ties excepted
    # (tests/greedy_reference.py)
    if summary=$($TORCH_PY tests/greedy_reference.py "$BASE" "$WORK/prompt.ids" "$WORK/greedy_c.ids" 2>&1
    ); then
        ok "greedy completion = PyTorch's greedy continuation: $summary"
    else
        not_ok "greedy completion vs PyTorch: $summary"
    fi
fi

# ---------------------------------------------------------------------------------------------
# 4. a conversation longer than the context (64 tokens): the oldest turns go, the system stays
printf 'first question about apples\nsecond question\nthird question\nfourth question\nfifth question\n' |
    $BIN/chat -e "$SMALL" --system "Be brief." -n 8 --verbose 1 >"$WORK/overflow.out" 2>"$WORK/overflow.err"
status=$?
context_line=$(grep '^\[context:' "$WORK/overflow.err" | tail -1)
if [ "$status" -eq 0 ] && grep -q "^\[context full (64 tokens): dropped the oldest [0-9]* turn(s), kept the system message" "$WORK/overflow.err" &&
    [[ "$context_line" == "[context:<|endoftext|><|system_start|>Be brief.<|system_end|><|user_start|>"* ]] &&
    [[ "$context_line" != *apples* ]] && [ "$(grep -c ' tokens/s;' "$WORK/overflow.err")" -eq 5 ]; then
    ok "context overflow: oldest turns dropped with one line, system message kept, all 5 turns answered"
else
    not_ok "context overflow (exit $status, see $WORK/overflow.err)"
fi
# --max-tokens defaults to what fits: one message to the 64-token model, no reset, no drop
if $BIN/chat -e "$SMALL" -p "What is 10 - 4?" --temperature 1 --top-p 1 >"$WORK/fits.out" 2>"$WORK/fits.err" &&
    ! grep -q "context full" "$WORK/fits.err" && grep -q " tokens/s;" "$WORK/fits.err"; then
    ok "the default --max-tokens fits the context: $(tail -1 "$WORK/fits.err")"
else
    not_ok "default --max-tokens (see $WORK/fits.err)"
fi
# an empty line is an empty message; /quit ends (the line after it is not answered)
printf 'hello\n\nthird\n/quit\nnot answered\n' | $BIN/chat -e "$SMALL" -n 3 >"$WORK/lines.out" 2>"$WORK/lines.err"
if [ $? -eq 0 ] && [ "$(grep -c ' tokens/s;' "$WORK/lines.err")" -eq 3 ]; then
    ok "an empty line is a message, /quit ends: 3 answers"
else
    not_ok "empty line and /quit: $(grep -c ' tokens/s;' "$WORK/lines.err") answers (see $WORK/lines.err)"
fi
# a message that cannot fit: one error line, the conversation goes on
long_message=$(printf 'word %.0s' $(seq 80))
printf '%s\nshort\n' "$long_message" | $BIN/chat -e "$SMALL" -n 3 >"$WORK/toolong.out" 2>"$WORK/toolong.err"
if [ $? -eq 0 ] && grep -q "^error: the message is [0-9]* tokens, too long for the context of 64" "$WORK/toolong.err" &&
    [ "$(grep -c ' tokens/s;' "$WORK/toolong.err")" -eq 1 ]; then
    ok "a message longer than the context: one error line, then the next is answered"
else
    not_ok "message longer than the context (see $WORK/toolong.err)"
fi

# ---------------------------------------------------------------------------------------------
# 5. Ctrl-C: a SIGINT during an answer stops it and chat reads the next lines; at the prompt it
#    quits. Answers are long (the model almost never writes <|assistant_end|>, one token in 50263
#    before training moves it much; up to ~1000 tokens of the 1024 context), so each SIGINT is sent
#    once the answer has begun to print and lands while it is being written, however fast or slow
#    the build and the machine; both answers are stopped, so the test waits for neither to end.
rm -f "$WORK/fifo"
mkfifo "$WORK/fifo"
$BIN/chat -e "$LONG" --temperature 1 --top-p 1 <"$WORK/fifo" >"$WORK/sigint.out" 2>"$WORK/sigint.err" &
chat_pid=$!
exec 3>"$WORK/fifo"
# the watchdog's output goes nowhere: its sleep would otherwise hold the pipe of whoever reads this
# script's output (run_tests.sh's sub_suite and tee) open for 300 s after the script ends
(sleep 300 && kill "$chat_pid" 2>/dev/null) >/dev/null 2>&1 &
watchdog=$!
wait_for() { # FILE PATTERN COUNT: until PATTERN is on COUNT lines of FILE, up to 120 s
    for _ in $(seq 1200); do
        [ "$(grep -c -- "$2" "$1" 2>/dev/null)" -ge "$3" ] && return 0
        sleep 0.1
    done
    return 1
}
# stop_answer MESSAGE N: sends MESSAGE, waits until its answer prints, sends SIGINT, then waits for
# the N-th "stopped by Ctrl-C"
stop_answer() {
    local before
    before=$(stat -c %s "$WORK/sigint.out")
    echo "$1" >&3
    for _ in $(seq 2400); do [ "$(stat -c %s "$WORK/sigint.out")" -gt "$before" ] && break; sleep 0.05; done
    kill -INT "$chat_pid"
    wait_for "$WORK/sigint.err" 'stopped by Ctrl-C' "$2"
}
stop_answer "tell me a long story" 1
echo "/reset" >&3
wait_for "$WORK/sigint.err" 'new conversation' 1
stop_answer "and another one" 2
# at the prompt Ctrl-C quits, though the input is still open. One that lands while the stopped
# answer's end token is still being run is taken as stopping that answer: send it until chat ends
for _ in $(seq 20); do
    kill -INT "$chat_pid" 2>/dev/null || break
    sleep 0.5
    ps -o stat= -p "$chat_pid" | grep -qv Z || break # ended (a zombie until waited for)
done
wait "$chat_pid"
status=$?
exec 3>&-
pkill -P "$watchdog" sleep 2>/dev/null # its sleep, then the watchdog itself
kill "$watchdog" 2>/dev/null
wait "$watchdog" 2>/dev/null
answers=$(grep ' tokens/s;' "$WORK/sigint.err" | sed 's/^\[\([0-9]*\) tokens.*/\1/' | tr '\n' ' ')
if [ "$status" -eq 0 ] && [ "$(grep -c "stopped by Ctrl-C" "$WORK/sigint.err")" -eq 2 ] &&
    grep -q "new conversation" "$WORK/sigint.err" && [ "$(grep -c ' tokens/s;' "$WORK/sigint.err")" -eq 2 ]; then
    ok "Ctrl-C stops both answers (after ${answers}tokens), the next lines are read; at the prompt it quits (exit 0)"
else
    not_ok "Ctrl-C (exit $status, answers of ${answers}tokens; see $WORK/sigint.err)"
fi

# ---------------------------------------------------------------------------------------------
# 6. the chat tokens of a base model were never trained: one warning line; an SFT model: none
$BIN/chat -e "$BASE" -v "$WORK/sft/tokenizer.bin" -p "hi" -n 2 >"$WORK/warn.out" 2>"$WORK/warn.err"
$BIN/chat -e "$SMALL" -p "hi" -n 2 >"$WORK/nowarn.out" 2>"$WORK/nowarn.err"
if [ "$(grep -c '^warning: .*the chat tokens were never trained' "$WORK/warn.err")" -eq 1 ] &&
    ! grep -q '^warning' "$WORK/nowarn.err"; then
    ok "untrained chat tokens: one warning for a base model, none after SFT"
else
    not_ok "untrained chat tokens warning (see $WORK/warn.err, $WORK/nowarn.err)"
fi

# ---------------------------------------------------------------------------------------------
# 7. flags: help lists every flag; bad ones give one error line
$BIN/chat -h >"$WORK/help.txt" 2>&1
missing=""
for flag in --model --tokenizer --temperature --temp --top-k --top-p --seed --max-tokens --n-predict \
    --context --system --prompt --complete --eval-gsm8k --eval-count --verbose --ids --help; do
    grep -q -- "$flag " "$WORK/help.txt" || missing="$missing $flag"
done
[ -z "$missing" ] && grep -q "default 0.7" "$WORK/help.txt" && ok "chat -h lists every flag with its default" ||
    not_ok "chat -h misses:$missing"
expect_error "chat: unknown flag" "unknown flag '--bogus'" $BIN/chat -e "$SMALL" --bogus 1
expect_error "chat: -n not a number" "bad value 'ten' for -n" $BIN/chat -e "$SMALL" -n ten
expect_error "chat: negative --max-tokens" "bad value -1 for --max-tokens" $BIN/chat -e "$SMALL" --max-tokens -1
expect_error "chat: --top-p out of range" "bad value 2 for --top-p" $BIN/chat -e "$SMALL" --top-p 2
expect_error "chat: two modes" "separate modes" $BIN/chat -e "$SMALL" --complete a -p b
expect_error "chat: no model" "-e MODEL is required" $BIN/chat -p hi
expect_error "chat: a base tokenizer cannot chat" "no special token <|user_start|>.*--complete" $BIN/chat -e "$BASE"
expect_error "chat: text longer than the context" "--complete: the text is [0-9]* tokens, too long" \
    $BIN/chat -e "$SMALL" --complete "$long_message"

# ---------------------------------------------------------------------------------------------
# 8. chat on the GPU (chat.cu: the CUDA forward with the key/value cache in GPU memory), on the
#    emulation: greedy completion and a greedy chat answer equal the CPU's token for token in the
#    FP32 build (the logits differ by rounding only: tests/test_generate_cu.cu bounds them); the
#    BF16 build (cuDNN attention) completes as many tokens. Seeded sampling at temperature 1 is not
#    compared: on these barely trained, nearly uniform logits a rounding difference moves a draw.
make --no-print-directory -s build/cuda/emu-fp32/chatcu build/cuda/emu-bf16/chatcu >"$WORK/build_gpu.log" 2>&1 ||
    not_ok "building chatcu (see $WORK/build_gpu.log)"
GPU32=./build/cuda/emu-fp32/chatcu
GPU16=./build/cuda/emu-bf16/chatcu
gpu_greedy=$(OMP_WAIT_POLICY=passive $GPU32 -e "$BASE" --ids 1 --complete "$PROMPT" --temp 0 -n 20 2>"$WORK/gpu32.err")
if [ -n "$gpu_greedy" ] && [ "$gpu_greedy" = "$greedy_a" ]; then
    ok "chatcu (fp32, emulated): greedy --complete = the CPU's, 20 of 20 tokens"
else
    not_ok "chatcu (fp32, emulated) greedy: '$gpu_greedy' vs CPU '$greedy_a' ($(head -c 200 "$WORK/gpu32.err"))"
fi
gpu16_greedy=$(OMP_WAIT_POLICY=passive $GPU16 -e "$BASE" --ids 1 --complete "$PROMPT" --temp 0 -n 20 2>"$WORK/gpu16.err")
same=0
read -ra cpu_ids <<<"$greedy_a"
read -ra bf16_ids <<<"$gpu16_greedy"
for i in "${!cpu_ids[@]}"; do [ "${cpu_ids[$i]}" = "${bf16_ids[$i]:-}" ] && same=$((same + 1)); done
if [ "${#bf16_ids[@]}" -eq 20 ] && grep -q "tokens/s" "$WORK/gpu16.err"; then
    ok "chatcu (bf16, emulated, cuDNN attention): --complete gives 20 tokens ($same of 20 equal the fp32 CPU's)"
else
    not_ok "chatcu (bf16, emulated): '$gpu16_greedy' ($(head -c 200 "$WORK/gpu16.err"))"
fi
cpu_answer=$($BIN/chat -e "$SMALL" -p "What is 10 - 4?" -n 12 --temp 0 2>/dev/null)
gpu_answer=$(OMP_WAIT_POLICY=passive $GPU32 -e "$SMALL" -p "What is 10 - 4?" -n 12 --temp 0 2>"$WORK/gpu_chat.err")
if [ -n "$gpu_answer" ] && [ "$gpu_answer" = "$cpu_answer" ]; then
    ok "chatcu (fp32, emulated): a greedy chat answer (template, SFT model) = the CPU's"
else
    not_ok "chatcu chat answer: '$gpu_answer' vs CPU '$cpu_answer' ($(head -c 200 "$WORK/gpu_chat.err"))"
fi
# the conversation outgrowing the 64-token context on the GPU too
printf 'What is 2 + 2?\nWhat is 3 + 3?\nWhat is 4 + 4?\nWhat is 5 + 5?\n' |
    OMP_WAIT_POLICY=passive $GPU32 -e "$SMALL" -n 8 --temp 0 --verbose 1 >"$WORK/gpu_overflow.out" 2>&1
if grep -q "dropped" "$WORK/gpu_overflow.out"; then
    ok "chatcu (fp32, emulated): a conversation longer than the context drops its oldest turns"
else
    not_ok "chatcu context overflow (see $WORK/gpu_overflow.out)"
fi
expect_error "chatcu: a missing model file" "no_such_model.bin" $GPU32 -e "$WORK/no_such_model.bin" --complete "x"

checks_summary
