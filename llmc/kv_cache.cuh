// Generation on the GPU with a key/value cache: the CUDA counterpart of llmc/kv_cache.h, with the
// same names (KVCache, gpt2_forward_step, ...) for train_gpt2.cu's GPT2. One new token at a time
// runs through the trainer's own kernels (encoder, layernorm, cuBLASLt matmuls with their GELU
// epilogue, the fused residual + layernorm) at B = T = 1, attends to the keys and values the
// earlier tokens left in the cache (floatX: bf16 in BF16 builds, in GPU memory) with the
// one-query kernel below, and copies its logits to the host for sampling. Included after
// train_gpt2.cu (`#define TESTING` + `#include "train_gpt2.cu"`). The llama family
// (llama_forward_step) caches its KV key/value heads per position (grouped-query attention: query
// head h reads kv head h / (NH / KV)), rotated by RoPE at their position before they are stored.
#ifndef LLMC_KV_CACHE_CUH
#define LLMC_KV_CACHE_CUH

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    int max_T, L, C, NH, Vp;
    int KV, HS;            // key/value heads (GPT-2: NH) and head size
    int length;            // tokens in the cache: the next token goes to this position
    floatX *keys, *values; // device, (L, max_T, KV * HS)
    floatX *buffers;       // device: the one token's activations, carved below
    floatX *x, *x_next, *ln, *qkv, *atty, *projected, *residual2, *fch, *fch_gelu;
    floatX *logits_device; // (Vp)
    float *mean_rstd;      // device, 2 floats
    int *token;            // device, 1 int
    floatX *logits_host;   // (Vp), pinned
    float *logits;         // (Vp) host: the last logits computed, returned to the caller
} KVCache;

// The one-query attention's dynamic shared memory (scores of up to max_T keys, 32 floats for the
// block reductions) must fit the default 48 KiB.
#define KV_CACHE_MAX_T ((48 * 1024) / 4 - 64)

static inline void kv_cache_init(KVCache *cache, const GPT2Config *config, int max_T) {
    memset(cache, 0, sizeof(*cache));
    if (max_T <= 0 || max_T > config->max_seq_len) max_T = config->max_seq_len;
    if (max_T > KV_CACHE_MAX_T) {
        fatal("kv cache: context %d exceeds the %d positions the GPU generation supports", max_T,
              KV_CACHE_MAX_T);
    }
    cache->max_T = max_T;
    cache->L = config->num_layers;
    cache->C = config->channels;
    cache->NH = config->num_heads;
    cache->Vp = config->padded_vocab_size;
    int llama = config->arch == MODEL_ARCH_LLAMA;
    cache->KV = llama ? config->num_kv_heads : config->num_heads;
    cache->HS = config->channels / config->num_heads;
    size_t C = (size_t)cache->C, kv_width = (size_t)cache->KV * cache->HS;
    size_t cached = (size_t)cache->L * max_T * kv_width;
    // llama: qkv is (NH + 2 KV) HS, fc's output 2 ffn and SwiGLU's ffn
    size_t qkv = llama ? (size_t)llama_qkv_width(config) : 3 * C;
    size_t fch = llama ? 2 * (size_t)config->ffn : 4 * C, act = llama ? (size_t)config->ffn : 4 * C;
    cache->keys = (floatX *)cuda_malloc_check(cached * sizeof(floatX), "kv cache keys");
    cache->values = (floatX *)cuda_malloc_check(cached * sizeof(floatX), "kv cache values");
    // x, x_next, ln, atty, projected, residual2 (C each), qkv (3C), fch, fch_gelu (4C), logits
    size_t sizes[] = {C, C, C, qkv, C, C, C, fch, act, (size_t)cache->Vp};
    floatX **slots[] = {&cache->x,        &cache->x_next,       &cache->ln,        &cache->qkv,
                        &cache->atty,     &cache->projected,    &cache->residual2, &cache->fch,
                        &cache->fch_gelu, &cache->logits_device};
    size_t total = 0;
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) total += sizes[i];
    cache->buffers = (floatX *)cuda_malloc_check(total * sizeof(floatX), "kv activations");
    floatX *next = cache->buffers;
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        *slots[i] = next;
        next += sizes[i];
    }
    cache->mean_rstd = (float *)cuda_malloc_check(2 * sizeof(float), "kv ln stats");
    cache->token = (int *)cuda_malloc_check(sizeof(int), "kv token");
    cuda_check(cudaMallocHost((void **)&cache->logits_host, (size_t)cache->Vp * sizeof(floatX)));
    cache->logits = (float *)malloc_check((size_t)cache->Vp * sizeof(float), "kv logits");
}

static inline void kv_cache_reset(KVCache *cache) {
    cache->length = 0;
}

static inline void kv_cache_free(KVCache *cache) {
    cuda_check(cudaFree(cache->keys));
    cuda_check(cudaFree(cache->values));
    cuda_check(cudaFree(cache->buffers));
    cuda_check(cudaFree(cache->mean_rstd));
    cuda_check(cudaFree(cache->token));
    cuda_check(cudaFreeHost(cache->logits_host));
    free(cache->logits);
    memset(cache, 0, sizeof(*cache));
}

// Copies the new token's k and v (kv_width values each, at qkv + k_offset and right after them)
// to position pos of the layer's keys and values (max_T, kv_width). GPT-2: k_offset = kv_width = C.
__global__ void kv_cache_store_kernel(floatX *keys, floatX *values, const floatX *qkv, int pos,
                                      int k_offset, int kv_width) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= kv_width) return;
    keys[(size_t)pos * kv_width + i] = qkv[k_offset + i];
    values[(size_t)pos * kv_width + i] = qkv[k_offset + kv_width + i];
}

// One query against keys 0..pos of one layer: block h is head h, reading kv head h / group (rows
// kv_width apart). out (NH * HS) = softmax(q . k_t * scale) weighted sum of v_t. Scores in dynamic
// shared memory (pos + 1 floats, then 32 floats for the reductions); fp32 throughout, out rounded
// to floatX once, as the flash kernel does.
__global__ void attention_forward_step_kernel(floatX *out, const floatX *q, const floatX *keys,
                                              const floatX *values, int pos, int kv_width, int HS,
                                              int group, float scale) {
    LLMC_EXTERN_SHARED(float, shared);
    float *scores = shared, *reduce = shared + pos + 1;
    int h = blockIdx.x;
    size_t kv_head = (size_t)(h / group) * HS;
    const floatX *q_head = q + (size_t)h * HS;
    float local_max = -INFINITY;
    for (int t = threadIdx.x; t <= pos; t += blockDim.x) {
        const floatX *k = keys + (size_t)t * kv_width + kv_head;
        float dot = 0.0f;
        for (int d = 0; d < HS; d++) dot += to_float(q_head[d]) * to_float(k[d]);
        scores[t] = dot * scale;
        local_max = fmaxf(local_max, scores[t]);
    }
    float max = block_reduce_max(local_max, reduce);
    float local_sum = 0.0f;
    for (int t = threadIdx.x; t <= pos; t += blockDim.x) {
        scores[t] = expf(scores[t] - max);
        local_sum += scores[t];
    }
    // its barriers also make every thread's scores visible to all
    float sum = block_reduce_sum(local_sum, reduce);
    for (int d = threadIdx.x; d < HS; d += blockDim.x) {
        const floatX *v = values + kv_head + d;
        float acc = 0.0f;
        for (int t = 0; t <= pos; t++) acc += scores[t] * to_float(v[(size_t)t * kv_width]);
        out[(size_t)h * HS + d] = from_float<floatX>(acc / sum);
    }
}

static inline void attention_forward_step(floatX *out, const floatX *qkv, const floatX *keys,
                                          const floatX *values, int pos, int NH, int KV, int HS,
                                          cudaStream_t stream) {
    size_t shared_bytes = ((size_t)pos + 1 + 32) * sizeof(float);
    LLMC_LAUNCH(attention_forward_step_kernel, NH, 128, shared_bytes, stream)
    (out, qkv, keys, values, pos, KV * HS, HS, NH / KV, 1.0f / sqrtf((float)HS));
    cuda_check(cudaGetLastError());
}

// The new token's logits (Vp) from the final norm's output in cache->ln, to the host.
static inline const float *kv_cache_logits(KVCache *cache, const floatX *head,
                                           cudaStream_t stream) {
    matmul_forward(cache->logits_device, NULL, cache->ln, head, NULL, 1, cache->C, cache->Vp,
                   stream);
    cuda_check(cudaMemcpyAsync(cache->logits_host, cache->logits_device,
                               (size_t)cache->Vp * sizeof(floatX), cudaMemcpyDeviceToHost, stream));
    cuda_check(cudaStreamSynchronize(stream));
    floatX_to_floats(cache->logits, cache->logits_host, (size_t)cache->Vp);
    return cache->logits;
}

// The llama family's step (train_gpt2.cu's llama_forward_layers for one token at position pos):
// RoPE rotates q and k by the table's row pos; QK-norm runs in place (no backward here).
static inline const float *llama_forward_step(GPT2 *model, KVCache *cache, int token,
                                              int want_logits) {
    const GPT2Config *cfg = &model->config;
    int pos = cache->length, C = cache->C, L = cache->L, NH = cache->NH, KV = cache->KV;
    int HS = cache->HS, F = cfg->ffn, QKV = llama_qkv_width(cfg);
    size_t c = (size_t)C, w = (size_t)QKV, f = (size_t)F, hs = (size_t)HS;
    LlamaTensors p = point_llama_tensors(model->params_memory, cfg);
    cudaStream_t stream = model->stream;
    cuda_check(cudaMemcpyAsync(cache->token, &token, sizeof(int), cudaMemcpyHostToDevice, stream));
    encoder_forward(cache->x, cache->token, p.wte, NULL, 1, 1, C, stream);
    for (int l = 0; l < L; l++) {
        floatX *keys = cache->keys + (size_t)l * cache->max_T * KV * hs;
        floatX *values = cache->values + (size_t)l * cache->max_T * KV * hs;
        rmsnorm_forward(cache->ln, NULL, cache->x, p.rms1w + l * c, 1, 1, C, c, stream);
        matmul_forward(cache->qkv, NULL, cache->ln, p.qkvw + l * w * c, NULL, 1, C, QKV, stream);
        if (cfg->qknorm) {
            rmsnorm_forward(cache->qkv, NULL, cache->qkv, p.qnormw + l * hs, 1, NH, HS, w, stream);
            rmsnorm_forward(cache->qkv + NH * hs, NULL, cache->qkv + NH * hs, p.knormw + l * hs, 1,
                            KV, HS, w, stream);
        }
        // one row at "position 0" of the table's row pos: rotated by pos
        rope_forward(cache->qkv, model->rope_table + (size_t)pos * hs, 1, 1, NH, KV, HS, stream);
        LLMC_LAUNCH(kv_cache_store_kernel, ceil_div(KV * HS, 256), 256, 0, stream)
        (keys, values, cache->qkv, pos, NH * HS, KV * HS);
        cuda_check(cudaGetLastError());
        attention_forward_step(cache->atty, cache->qkv, keys, values, pos, NH, KV, HS, stream);
        matmul_forward(cache->projected, NULL, cache->atty, p.attprojw + l * c * c, NULL, 1, C, C,
                       stream);
        residual_forward(cache->residual2, cache->x, cache->projected, c, stream);
        rmsnorm_forward(cache->ln, NULL, cache->residual2, p.rms2w + l * c, 1, 1, C, c, stream);
        matmul_forward(cache->fch, NULL, cache->ln, p.fcw + l * 2 * f * c, NULL, 1, C, 2 * F,
                       stream);
        swiglu_forward(cache->fch_gelu, cache->fch, 1, F, stream);
        matmul_forward(cache->projected, NULL, cache->fch_gelu, p.fcprojw + l * c * f, NULL, 1, F,
                       C, stream);
        residual_forward(cache->x_next, cache->residual2, cache->projected, c, stream);
        floatX *swap = cache->x;
        cache->x = cache->x_next;
        cache->x_next = swap;
    }
    cache->length++;
    if (!want_logits) return NULL;
    rmsnorm_forward(cache->ln, NULL, cache->x, p.rmsfw, 1, 1, C, c, stream);
    return kv_cache_logits(cache, p.lm_head, stream);
}

// Runs token at position cache->length and stores its keys and values. With want_logits, returns
// the logits (Vp host floats; only the first V are real) of the token after it, else NULL (a
// prompt's tokens but the last need none). Fails when full.
static inline const float *gpt2_forward_step(GPT2 *model, KVCache *cache, int token,
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
    cudaStream_t stream = model->stream;
    size_t c = (size_t)C;
    float *mean = cache->mean_rstd, *rstd = cache->mean_rstd + 1;
    cuda_check(cudaMemcpyAsync(cache->token, &token, sizeof(int), cudaMemcpyHostToDevice, stream));
    encoder_forward(cache->x, cache->token, p.wte, p.wpe + (size_t)pos * c, 1, 1, C, stream);
    layernorm_forward(cache->ln, mean, rstd, cache->x, p.ln1w, p.ln1b, 1, C, stream);
    for (int l = 0; l < L; l++) {
        floatX *keys = cache->keys + (size_t)l * cache->max_T * c;
        floatX *values = cache->values + (size_t)l * cache->max_T * c;
        matmul_forward(cache->qkv, NULL, cache->ln, p.qkvw + l * 3 * c * c, p.qkvb + l * 3 * c, 1,
                       C, 3 * C, stream);
        LLMC_LAUNCH(kv_cache_store_kernel, ceil_div(C, 256), 256, 0, stream)
        (keys, values, cache->qkv, pos, C, C);
        cuda_check(cudaGetLastError());
        attention_forward_step(cache->atty, cache->qkv, keys, values, pos, cache->NH, cache->NH,
                               cache->HS, stream);
        matmul_forward(cache->projected, NULL, cache->atty, p.attprojw + l * c * c,
                       p.attprojb + l * c, 1, C, C, stream);
        fused_residual_layernorm_forward(cache->residual2, cache->ln, mean, rstd, cache->x,
                                         cache->projected, p.ln2w + l * c, p.ln2b + l * c, 1, C,
                                         stream);
        matmul_forward(cache->fch_gelu, cache->fch, cache->ln, p.fcw + l * 4 * c * c,
                       p.fcb + l * 4 * c, 1, C, 4 * C, stream);
        matmul_forward(cache->projected, NULL, cache->fch_gelu, p.fcprojw + l * 4 * c * c,
                       p.fcprojb + l * c, 1, 4 * C, C, stream);
        // the residual add with the layernorm after it (next layer's ln1, or lnf), as in forward
        const floatX *weight = l + 1 < L ? p.ln1w + (l + 1) * c : p.lnfw;
        const floatX *bias = l + 1 < L ? p.ln1b + (l + 1) * c : p.lnfb;
        fused_residual_layernorm_forward(cache->x_next, cache->ln, mean, rstd, cache->residual2,
                                         cache->projected, weight, bias, 1, C, stream);
        floatX *swap = cache->x;
        cache->x = cache->x_next;
        cache->x_next = swap;
    }
    cache->length++;
    if (!want_logits) return NULL;
    return kv_cache_logits(cache, p.wte, stream);
}

static inline const float *gpt2_forward_next(GPT2 *model, KVCache *cache, int token) {
    return gpt2_forward_step(model, cache, token, 1);
}

#endif // LLMC_KV_CACHE_CUH
