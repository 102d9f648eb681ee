#!/usr/bin/env bash
# CPU decoding speed (a benchmark, not a test): tokens/s of `./chat --complete` at d12 (124M, fp32),
# batch 1, 256 new tokens after a 64-token prompt, greedy, against HuggingFace transformers'
# generate (PyPI torch, the same weights and threads, KV cache on) in the same run, and against the
# memory-bandwidth floor: each new token reads every weight once, so no batch-1 CPU decoder beats
# (DRAM read bandwidth, build/bench_membw) / (weight bytes per token).
#
#   bash bench/bench_decode.sh                  (THREADS=2 ROUNDS=3 NEW_TOKENS=256)
#
# The transformers side runs in the venv build/venv-decode (torch and transformers from PyPI,
# pinned; made on the first run: a large download, as PyPI's Linux torch brings CUDA libraries);
# SKIP_HF=1 leaves it out. Both sides decode the same ids from the same weights: the script also
# reports how many of the greedy tokens agree (rounding may break a near tie either way).
# Timings are printed, never asserted; run it on an otherwise idle machine.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
THREADS=${THREADS:-2}
ROUNDS=${ROUNDS:-3}
NEW_TOKENS=${NEW_TOKENS:-256}
PROMPT_TOKENS=64
WORK=$ROOT/build/bench_decode
VENV=$ROOT/build/venv-decode
HF_REQUIREMENTS="torch==2.15.0 transformers==5.23.0"
mkdir -p "$WORK"
export OMP_NUM_THREADS=$THREADS

echo "# bench/bench_decode.sh: d12 fp32, batch 1, $NEW_TOKENS new tokens after $PROMPT_TOKENS, $THREADS threads, best of $ROUNDS, $(date -u +%Y-%m-%dT%H:%M:%SZ)"
echo "# commit $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- . 2>/dev/null || echo ' (+ local changes)')"
echo "# cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(nproc) cores online; load average $(cut -d' ' -f1-3 /proc/loadavg)"

make -s chat tokenizer build/bench_membw
[ -f dev/data/tinyshakespeare/gpt2_tokenizer.bin ] || bash dev/data/tinyshakespeare.sh >/dev/null
# a d12 model with random weights (speed does not depend on them), the GPT-2 tokenizer beside it
MODEL=$WORK/d12.bin
if [ ! -f "$MODEL" ]; then
    for python in "${PYTHON:-}" /usr/bin/python3 "$VENV/bin/python" python3; do # one with torch
        [ -n "$python" ] && "$python" -c "import torch" >/dev/null 2>&1 && break
    done
    "$python" scripts/train_gpt2.py --model d12 --seed 1 --write-model "$MODEL" --mode none >/dev/null
fi
cp dev/data/tinyshakespeare/gpt2_tokenizer.bin "$WORK/tokenizer.bin"
# the prompt: " the" 64 times is 64 tokens (id 262 each); chat puts <|endoftext|> before it
PROMPT=$(printf ' the%.0s' $(seq $PROMPT_TOKENS))
count=$(printf '%s' "$PROMPT" | ./tokenizer encode -v "$WORK/tokenizer.bin" -i - -o - | wc -l)
[ "$count" -eq $PROMPT_TOKENS ] || { echo "error: the prompt is $count tokens, expected $PROMPT_TOKENS"; exit 1; }

# 1. ours: the tokens/s line of chat (decoding only; the prompt is timed apart)
best_ours=0
for round in $(seq "$ROUNDS"); do
    ./chat -e "$MODEL" --complete "$PROMPT" -n "$NEW_TOKENS" --temperature 0 --ids 1 \
        >"$WORK/ours.ids" 2>"$WORK/ours.err"
    line=$(tail -1 "$WORK/ours.err")
    echo "ours, round $round: $line"
    rate=$(echo "$line" | sed -n 's/.* s: \([0-9.]*\) tokens\/s.*/\1/p')
    best_ours=$(awk -v a="$best_ours" -v b="$rate" 'BEGIN { print (b > a) ? b : a }')
done

# 2. the floor: weight bytes read per token (all parameters but wpe, of which one row) / bandwidth
bandwidth_line=$(build/bench_membw 1024)
echo "$bandwidth_line"
bandwidth=$(echo "$bandwidth_line" | sed -n 's/read bandwidth: \([0-9.]*\) GB\/s.*/\1/p')
weight_bytes=$(python3 - "$MODEL" <<'EOF'
import struct, sys
h = struct.unpack_from("<8i", open(sys.argv[1], "rb").read(32))
maxT, V, L, NH, C, Vp = h[2:8]
params = Vp * C + maxT * C + L * (12 * C * C + 13 * C) + 2 * C
print(4 * (params - maxT * C + C))
EOF
)
floor=$(awk -v bw="$bandwidth" -v b="$weight_bytes" 'BEGIN { printf "%.1f", bw * 1e9 / b }')
echo "floor: $weight_bytes weight bytes per token / $bandwidth GB/s = $floor tokens/s"

# 3. transformers' generate on the same weights and threads
hf_rate=""
if [ "${SKIP_HF:-0}" != 1 ]; then
    if ! "$VENV/bin/python" -c "import torch, transformers" >/dev/null 2>&1; then
        echo "installing $HF_REQUIREMENTS into $VENV (PyPI) ..."
        python3 -m venv "$VENV"
        "$VENV/bin/pip" install --quiet $HF_REQUIREMENTS
    fi
    "$VENV/bin/python" - "$MODEL" "$WORK/ours.ids" "$THREADS" "$ROUNDS" "$NEW_TOKENS" "$PROMPT_TOKENS" \
        >"$WORK/hf.log" 2>&1 <<'EOF' || { cat "$WORK/hf.log"; exit 1; }
import struct, sys, time
import numpy as np
import torch
import transformers
from transformers import GPT2Config, GPT2LMHeadModel

path, ours_path = sys.argv[1], sys.argv[2]
threads, rounds, new_tokens, prompt_tokens = (int(x) for x in sys.argv[3:7])
torch.set_num_threads(threads)
data = open(path, "rb").read()
maxT, V, L, NH, C, Vp = struct.unpack_from("<8i", data)[2:8]
flat = np.frombuffer(data, dtype=np.float32, offset=1024)
offset = 0
def take(*shape):
    global offset
    n = int(np.prod(shape))
    out = torch.from_numpy(flat[offset:offset + n].copy()).view(*shape)
    offset += n
    return out
wte, wpe = take(Vp, C)[:V], take(maxT, C)
ln1w, ln1b, qkvw, qkvb = take(L, C), take(L, C), take(L, 3 * C, C), take(L, 3 * C)
projw, projb, ln2w, ln2b = take(L, C, C), take(L, C), take(L, C), take(L, C)
fcw, fcb, fcprojw, fcprojb = take(L, 4 * C, C), take(L, 4 * C), take(L, C, 4 * C), take(L, C)
lnfw, lnfb = take(C), take(C)
config = GPT2Config(vocab_size=V, n_positions=maxT, n_embd=C, n_layer=L, n_head=NH,
                    activation_function="gelu_new", resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
model = GPT2LMHeadModel(config).eval()
state = {"transformer.wte.weight": wte, "transformer.wpe.weight": wpe,
         "transformer.ln_f.weight": lnfw, "transformer.ln_f.bias": lnfb, "lm_head.weight": wte}
for l in range(L):  # HF's Conv1D stores (in, out): our (out, in) transposed
    p = f"transformer.h.{l}."
    state.update({p + "ln_1.weight": ln1w[l], p + "ln_1.bias": ln1b[l],
                  p + "attn.c_attn.weight": qkvw[l].T, p + "attn.c_attn.bias": qkvb[l],
                  p + "attn.c_proj.weight": projw[l].T, p + "attn.c_proj.bias": projb[l],
                  p + "ln_2.weight": ln2w[l], p + "ln_2.bias": ln2b[l],
                  p + "mlp.c_fc.weight": fcw[l].T, p + "mlp.c_fc.bias": fcb[l],
                  p + "mlp.c_proj.weight": fcprojw[l].T, p + "mlp.c_proj.bias": fcprojb[l]})
missing, unexpected = model.load_state_dict({k: v.contiguous() for k, v in state.items()}, strict=False)
assert not unexpected and all("attn.bias" in k or "masked_bias" in k for k in missing), (missing, unexpected)
ids = torch.tensor([[50256] + [262] * prompt_tokens])
def generate(n):
    start = time.perf_counter()
    with torch.inference_mode():
        out = model.generate(ids, max_new_tokens=n, min_new_tokens=n, do_sample=False, use_cache=True,
                             pad_token_id=50256, eos_token_id=None)
    return time.perf_counter() - start, out[0, ids.shape[1]:].tolist()
generate(4)  # warm-up
best = 0.0
for r in range(rounds):
    prefill, _ = generate(1)  # the prompt and the first token
    total, out = generate(new_tokens)
    rate = (new_tokens - 1) / (total - prefill)
    best = max(best, rate)
    print(f"transformers, round {r + 1}: {new_tokens} tokens in {total:.2f} s, of which the prompt "
          f"and first token {prefill:.2f} s: {rate:.1f} tokens/s decoding")
ours = [int(x) for x in open(ours_path).read().split()]
agree = next((i for i, (a, b) in enumerate(zip(ours, out)) if a != b), min(len(ours), len(out)))
print(f"greedy tokens: the first {agree} of {len(out)} equal to ours")
print(f"versions: torch {torch.__version__}, transformers {transformers.__version__}, "
      f"{torch.get_num_threads()} threads, CPU capability {torch.backends.cpu.get_cpu_capability()}")
print(f"hf_best {best:.2f}")
EOF
    grep -v '^hf_best' "$WORK/hf.log"
    hf_rate=$(sed -n 's/^hf_best //p' "$WORK/hf.log")
fi

echo
echo "summary: ours $best_ours tokens/s ($(awk -v a="$best_ours" -v f="$floor" 'BEGIN { printf "%.0f", 100 * a / f }')% of the $floor tokens/s floor)"
if [ -n "$hf_rate" ]; then
    echo "         transformers $hf_rate tokens/s: ours is $(awk -v a="$best_ours" -v b="$hf_rate" 'BEGIN { printf "%.2f", a / b }')x"
fi
