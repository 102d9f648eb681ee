// Generation with a key/value cache: the forward pass of one new token at a time, which attends to
// the keys and values the earlier tokens left in the cache instead of recomputing them. Per token
// it costs O(parameters + position * C) instead of a full forward over the whole context.
//
// It reuses the CPU trainer's layer functions (encoder, layernorm, matmul, gelu, residual), so it
// is included after them: `#define TESTING` + `#include "train_gpt2.c"`, then this header
// (chat.c, tests/test_sft.c). Only attention has its own one-query version here, written as
// attention_forward computes one row; the matmuls of one row (matvec_forward) sum in another order
// than the full forward's, so the logits agree to rounding (1e-5 relative, tests/test_sft.c).
// The llama family (llama_forward_step) caches its KV key and value heads after QK-norm and RoPE.
#ifndef LLMC_KV_CACHE_H
#define LLMC_KV_CACHE_H

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    int max_T, L, C, NH, Vp;
    int KV, hs;           // key/value heads and head size (GPT-2: KV = NH)
    size_t kv_width;      // KV * hs: one position's keys (GPT-2: C)
    int length;           // tokens in the cache: the next token goes to this position
    float *keys, *values; // (L, max_T, kv_width)
    // activations of the one token being run; llama: qkv (NH+2KV)*hs, qkvr the same after QK-norm
    // and RoPE, qk_rstd (NH+KV), fch 2*ffn, fch_gelu ffn
    float *residual, *ln, *ln_mean_rstd, *qkv, *atty, *attproj, *residual2, *fch, *fch_gelu;
    float *fcproj, *scores, *logits; // scores (max_T), logits (Vp)
    float *qkvr, *qk_rstd;
    float *rope_table; // llama: (max_T, hs), llmc/rope_table.h
} KVCache;

static inline void kv_cache_init(KVCache *cache, const GPT2Config *config, int max_T) {
    memset(cache, 0, sizeof(*cache));
    if (max_T <= 0 || max_T > config->max_seq_len) max_T = config->max_seq_len;
    cache->max_T = max_T;
    cache->L = config->num_layers;
    cache->C = config->channels;
    cache->NH = config->num_heads;
    cache->Vp = config->padded_vocab_size;
    int llama = config->arch == MODEL_ARCH_LLAMA;
    cache->KV = llama ? config->num_kv_heads : config->num_heads;
    cache->hs = config->channels / config->num_heads;
    cache->kv_width = (size_t)cache->KV * cache->hs;
    size_t C = (size_t)cache->C;
    size_t cached = size_mul_check((size_t)cache->L * max_T, cache->kv_width, "kv cache");
    size_t qkv = llama ? (size_t)llama_qkv_width(config) : 3 * C;
    size_t fch = llama ? 2 * (size_t)config->ffn : 4 * C, fch_out = llama ? fch / 2 : fch;
    cache->keys = (float *)malloc_check(cached * sizeof(float), "kv cache keys");
    cache->values = (float *)malloc_check(cached * sizeof(float), "kv cache values");
    cache->residual = (float *)malloc_check(C * sizeof(float), "kv residual");
    cache->ln = (float *)malloc_check(C * sizeof(float), "kv ln");
    cache->ln_mean_rstd = (float *)malloc_check(2 * sizeof(float), "kv ln stats");
    cache->qkv = (float *)malloc_check(qkv * sizeof(float), "kv qkv");
    cache->qkvr = (float *)malloc_check(qkv * sizeof(float), "kv qkv rotated");
    cache->qk_rstd =
        (float *)malloc_check((size_t)(cache->NH + cache->KV) * sizeof(float), "kv qk-norm rstd");
    cache->atty = (float *)malloc_check(C * sizeof(float), "kv atty");
    cache->attproj = (float *)malloc_check(C * sizeof(float), "kv attproj");
    cache->residual2 = (float *)malloc_check(C * sizeof(float), "kv residual2");
    if (llama) {
        cache->rope_table = (float *)malloc_check(
            size_mul_check((size_t)max_T, (size_t)cache->hs * sizeof(float), "kv RoPE table"),
            "kv RoPE table");
        rope_table_init(cache->rope_table, max_T, cache->hs, config->rope_theta);
    }
    cache->fch = (float *)malloc_check(fch * sizeof(float), "kv fch");
    cache->fch_gelu = (float *)malloc_check(fch_out * sizeof(float), "kv fch gelu");
    cache->fcproj = (float *)malloc_check(C * sizeof(float), "kv fcproj");
    cache->scores = (float *)malloc_check((size_t)max_T * sizeof(float), "kv scores");
    cache->logits = (float *)malloc_check((size_t)cache->Vp * sizeof(float), "kv logits");
}

static inline void kv_cache_reset(KVCache *cache) {
    cache->length = 0;
}

static inline void kv_cache_free(KVCache *cache) {
    float *buffers[] = {cache->keys,         cache->values, cache->residual, cache->ln,
                        cache->ln_mean_rstd, cache->qkv,    cache->atty,     cache->attproj,
                        cache->residual2,    cache->fch,    cache->fch_gelu, cache->fcproj,
                        cache->scores,       cache->logits, cache->qkvr,     cache->qk_rstd,
                        cache->rope_table};
    for (size_t i = 0; i < sizeof(buffers) / sizeof(buffers[0]); i++) free(buffers[i]);
    memset(cache, 0, sizeof(*cache));
}

// out (NH*hs) = softmax(q . k_t * scale over t = 0..pos) weighted sum of v_t, per query head h,
// with key/value head h / (NH/KV); the new token's k and v are already at position pos of
// keys/values (layer slices, (max_T, KV*hs)). GPT-2: KV = NH, hs = C/NH.
static inline void attention_forward_one(float *out, float *scores, const float *q,
                                         const float *keys, const float *values, int pos, int NH,
                                         int KV, int hs) {
    float scale = 1.0f / sqrtf((float)hs);
    size_t width = (size_t)KV * hs;
    for (int h = 0; h < NH; h++) {
        const float *qh = q + (size_t)h * hs;
        size_t kv_offset = (size_t)(h / (NH / KV)) * hs;
        float maxval = -INFINITY;
        for (int t = 0; t <= pos; t++) {
            scores[t] = dot_product(qh, keys + (size_t)t * width + kv_offset, hs) * scale;
            if (scores[t] > maxval) maxval = scores[t];
        }
        for (int t = 0; t <= pos; t++) scores[t] = exp_approx(scores[t] - maxval);
        float sum = 0.0f;
        for (int t = 0; t <= pos; t++) sum += scores[t];
        float inv = 1.0f / sum;
        float *y = out + (size_t)h * hs;
        for (int i = 0; i < hs; i++) y[i] = 0.0f;
        for (int t = 0; t <= pos; t++) {
            const float *v = values + (size_t)t * width + kv_offset;
            float a = scores[t] * inv;
            for (int i = 0; i < hs; i++) y[i] += a * v[i];
        }
    }
}

// Rows of one matvec block and lanes of each row's partial sums (see matvec_forward).
#define MATVEC_ROWS 4
#define MATVEC_LANES 16

// out (OC) = weight (OC,C) @ inp (C) + bias: matmul_forward for one row, without the packing that
// pays off only for many rows (per generated token it would repack the whole wte). At batch 1 each
// weight is read once and used once, so this is bound by memory bandwidth if the arithmetic keeps
// up: a block of MATVEC_ROWS rows is summed at once in MATVEC_ROWS x MATVEC_LANES independent
// partial sums (one long dependency chain per row could not), the rows streamed front to back, and
// the threads take contiguous runs of blocks. The order of each output's sum, whatever the thread
// count or the row's place in a block: lane k sums inp[i] * w[i] over i = k mod 16 (i < C rounded
// down to 16) in increasing i; the 16 lanes are added pairwise (lane k += lane k + 8, then + 4, +
// 2,
// + 1); then the C mod 16 remaining products in increasing i; then the bias.
static inline void matvec_forward(float *out, const float *inp, const float *weight,
                                  const float *bias, int C, int OC) {
    int blocks = (OC + MATVEC_ROWS - 1) / MATVEC_ROWS;
    int C16 = C - C % MATVEC_LANES;
#pragma omp parallel for schedule(static)
    for (int block = 0; block < blocks; block++) {
        int o0 = block * MATVEC_ROWS;
        // a last, short block repeats its last row (same order, the copies' sums are dropped)
        const float *w0 = weight + (size_t)o0 * C;
        const float *w1 = weight + (size_t)(o0 + 1 < OC ? o0 + 1 : OC - 1) * C;
        const float *w2 = weight + (size_t)(o0 + 2 < OC ? o0 + 2 : OC - 1) * C;
        const float *w3 = weight + (size_t)(o0 + 3 < OC ? o0 + 3 : OC - 1) * C;
        // one array per row, each a register's worth: an acc[rows][lanes] array stays in memory
        float acc0[MATVEC_LANES] = {0}, acc1[MATVEC_LANES] = {0};
        float acc2[MATVEC_LANES] = {0}, acc3[MATVEC_LANES] = {0};
        for (int i = 0; i < C16; i += MATVEC_LANES) {
            for (int k = 0; k < MATVEC_LANES; k++) {
                float x = inp[i + k];
                acc0[k] += x * w0[i + k];
                acc1[k] += x * w1[i + k];
                acc2[k] += x * w2[i + k];
                acc3[k] += x * w3[i + k];
            }
        }
        float *accs[MATVEC_ROWS] = {acc0, acc1, acc2, acc3};
        const float *rows[MATVEC_ROWS] = {w0, w1, w2, w3};
        for (int r = 0; r < MATVEC_ROWS && o0 + r < OC; r++) {
            float *acc = accs[r];
            for (int width = MATVEC_LANES / 2; width >= 1; width /= 2) {
                for (int k = 0; k < width; k++) acc[k] += acc[k + width];
            }
            float sum = acc[0];
            for (int i = C16; i < C; i++) sum += inp[i] * rows[r][i];
            out[o0 + r] = bias != NULL ? sum + bias[o0 + r] : sum;
        }
    }
}

// Runs token at position cache->length and stores its keys and values. With want_logits, returns
// the logits (Vp; only the first V are real) of the token after it, else NULL (a prompt's tokens
// but the last need none: the classifier is most of a small model's cost). Fails when full.
// The llama family's step (train_gpt2.c's llama_forward_logits for one token).
static inline const float *llama_forward_step(const GPT2 *model, KVCache *cache, int token,
                                              int want_logits) {
    const GPT2Config *cfg = &model->config;
    int pos = cache->length, C = cache->C, L = cache->L, NH = cache->NH, KV = cache->KV;
    int hs = cache->hs, F = cfg->ffn, QKV = llama_qkv_width(cfg);
    LlamaParameters p = point_llama_parameters(model->params_memory, cfg);
    size_t c = (size_t)C, w = (size_t)QKV, f = (size_t)F, kvw = cache->kv_width;
    float *x = cache->residual, *rstd = cache->ln_mean_rstd;
    encoder_forward(x, &token, p.wte, NULL, 1, 1, C);
    for (int l = 0; l < L; l++) {
        float *keys = cache->keys + (size_t)l * cache->max_T * kvw;
        float *values = cache->values + (size_t)l * cache->max_T * kvw;
        rmsnorm_forward(cache->ln, rstd, x, p.rms1w + l * c, 1, C);
        matvec_forward(cache->qkv, cache->ln, p.qkvw + l * w * c, NULL, C, QKV);
        if (cfg->qknorm) {
            qknorm_forward(cache->qkvr, cache->qk_rstd, cache->qkv, p.qnormw + l * hs,
                           p.knormw + l * hs, 1, NH, KV, hs);
        } else {
            qknorm_forward(cache->qkvr, NULL, cache->qkv, NULL, NULL, 1, NH, KV, hs); // a copy
        }
        rope_forward(cache->qkvr, cache->rope_table + (size_t)pos * hs, 1, 1, NH + KV, hs, w);
        memcpy(keys + (size_t)pos * kvw, cache->qkvr + (size_t)NH * hs, kvw * sizeof(float));
        memcpy(values + (size_t)pos * kvw, cache->qkvr + (size_t)(NH + KV) * hs,
               kvw * sizeof(float));
        attention_forward_one(cache->atty, cache->scores, cache->qkvr, keys, values, pos, NH, KV,
                              hs);
        matvec_forward(cache->attproj, cache->atty, p.attprojw + l * c * c, NULL, C, C);
        residual_forward(cache->residual2, x, cache->attproj, c);
        rmsnorm_forward(cache->ln, rstd, cache->residual2, p.rms2w + l * c, 1, C);
        matvec_forward(cache->fch, cache->ln, p.fcw + l * 2 * f * c, NULL, C, 2 * F);
        swiglu_forward(cache->fch_gelu, cache->fch, 1, F);
        matvec_forward(cache->fcproj, cache->fch_gelu, p.fcprojw + l * c * f, NULL, F, C);
        residual_forward(x, cache->residual2, cache->fcproj, c);
    }
    cache->length++;
    if (!want_logits) return NULL;
    rmsnorm_forward(cache->ln, rstd, x, p.rmsfw, 1, C);
    matvec_forward(cache->logits, cache->ln, p.lm_head, NULL, C, cache->Vp);
    return cache->logits;
}

static inline const float *gpt2_forward_step(const GPT2 *model, KVCache *cache, int token,
                                             int want_logits) {
    const GPT2Config *cfg = &model->config;
    int pos = cache->length, C = cache->C, L = cache->L;
    if (pos >= cache->max_T) {
        fatal("internal: kv cache full (%d tokens): reset it before running more", cache->max_T);
    }
    if (token < 0 || token >= cfg->vocab_size) {
        fatal("token id %d out of range: must be < V=%d", token, cfg->vocab_size);
    }
    if (cfg->arch == MODEL_ARCH_LLAMA) return llama_forward_step(model, cache, token, want_logits);
    ParameterTensors p = model->params;
    size_t c = (size_t)C;
    float *x = cache->residual, *mean = cache->ln_mean_rstd, *rstd = cache->ln_mean_rstd + 1;
    encoder_forward(x, &token, p.wte, p.wpe + (size_t)pos * c, 1, 1, C);
    for (int l = 0; l < L; l++) {
        float *keys = cache->keys + (size_t)l * cache->max_T * c;
        float *values = cache->values + (size_t)l * cache->max_T * c;
        layernorm_forward(cache->ln, mean, rstd, x, p.ln1w + l * c, p.ln1b + l * c, 1, C);
        matvec_forward(cache->qkv, cache->ln, p.qkvw + l * 3 * c * c, p.qkvb + l * 3 * c, C, 3 * C);
        memcpy(keys + (size_t)pos * c, cache->qkv + c, c * sizeof(float));
        memcpy(values + (size_t)pos * c, cache->qkv + 2 * c, c * sizeof(float));
        attention_forward_one(cache->atty, cache->scores, cache->qkv, keys, values, pos, cache->NH,
                              cache->NH, cache->hs);
        matvec_forward(cache->attproj, cache->atty, p.attprojw + l * c * c, p.attprojb + l * c, C,
                       C);
        residual_forward(cache->residual2, x, cache->attproj, c);
        layernorm_forward(cache->ln, mean, rstd, cache->residual2, p.ln2w + l * c, p.ln2b + l * c,
                          1, C);
        matvec_forward(cache->fch, cache->ln, p.fcw + l * 4 * c * c, p.fcb + l * 4 * c, C, 4 * C);
        gelu_forward(cache->fch_gelu, cache->fch, 4 * c);
        matvec_forward(cache->fcproj, cache->fch_gelu, p.fcprojw + l * 4 * c * c, p.fcprojb + l * c,
                       4 * C, C);
        residual_forward(x, cache->residual2, cache->fcproj, c);
    }
    cache->length++;
    if (!want_logits) return NULL;
    layernorm_forward(cache->ln, mean, rstd, x, p.lnfw, p.lnfb, 1, C);
    matvec_forward(cache->logits, cache->ln, p.wte, NULL, C, cache->Vp);
    return cache->logits;
}

static inline const float *gpt2_forward_next(const GPT2 *model, KVCache *cache, int token) {
    return gpt2_forward_step(model, cache, token, 1);
}

#endif // LLMC_KV_CACHE_H
