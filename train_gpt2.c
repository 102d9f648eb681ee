/*
GPT-2 training on the CPU: the fp32 reference of this project. Also the llama family (RMSNorm,
RoPE, SwiGLU, grouped-query attention, optional QK-norm, untied head; llmc/model_config.h), whose
layers follow GPT-2's below.

Readable first: one forward/backward pair of plain functions per layer, all parameters in one
allocation viewed through named pointers, and a main loop that reads as config -> load -> train ->
save. scripts/train_gpt2.py is the PyTorch twin that test_gpt2.c checks this file against.
OpenMP parallelises every loop whose cost matters; no reduction depends on the thread count, so a
run gives the same bits with any number of threads.
*/
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "llmc/checkpoint.h"
#include "llmc/cli.h"
#include "llmc/dataloader.h"
#include "llmc/divergence.h"
#include "llmc/fastmath.h"
#include "llmc/formats.h"
#include "llmc/logger.h"
#include "llmc/matmul.h"
#include "llmc/model_config.h"
#include "llmc/muon.h"
#include "llmc/rope_table.h"
#include "llmc/run_dir.h"
#include "llmc/safetensors.h"
#include "llmc/sampler.h"
#include "llmc/schedulers.h"
#include "llmc/tokenizer.h"
#include "llmc/train_loop.h"
#include "llmc/train_options.h"
#include "llmc/utils.h"

// ----------------------------------------------------------------------------
// Layers. N = B*T rows; backward functions accumulate (+=) into their gradients.

// out (B,T,C) = wte[inp] + wpe[t]; inp (B,T) token ids. wpe NULL (llama): wte[inp] only.
void encoder_forward(float *out, const int *inp, const float *wte, const float *wpe, int B, int T,
                     int C) {
#pragma omp parallel for collapse(2)
    for (int b = 0; b < B; b++) {
        for (int t = 0; t < T; t++) {
            float *out_bt = out + ((size_t)b * T + t) * C;
            const float *wte_ix = wte + (size_t)inp[b * T + t] * C;
            if (wpe == NULL) {
                memcpy(out_bt, wte_ix, (size_t)C * sizeof(float));
                continue;
            }
            const float *wpe_t = wpe + (size_t)t * C;
            for (int i = 0; i < C; i++) {
                out_bt[i] = wte_ix[i] + wpe_t[i];
            }
        }
    }
}

// Parallel over channels so each gradient element is summed by one thread in a fixed order.
// dwpe NULL (llama): no position embedding.
void encoder_backward(float *dwte, float *dwpe, const float *dout, const int *inp, int B, int T,
                      int C) {
#pragma omp parallel for
    for (int i = 0; i < C; i++) {
        for (int b = 0; b < B; b++) {
            for (int t = 0; t < T; t++) {
                float d = dout[((size_t)b * T + t) * C + i];
                dwte[(size_t)inp[b * T + t] * C + i] += d;
                if (dwpe != NULL) dwpe[(size_t)t * C + i] += d;
            }
        }
    }
}

// out (N,C) = (inp - mean) * rstd * weight + bias, per row; mean, rstd (N) kept for backward.
void layernorm_forward(float *out, float *mean, float *rstd, const float *inp, const float *weight,
                       const float *bias, int N, int C) {
    const float eps = 1e-5f;
#pragma omp parallel for
    for (int n = 0; n < N; n++) {
        const float *x = inp + (size_t)n * C;
        double sum = 0.0; // double sums keep us well inside the 1e-5 parity budget
        for (int i = 0; i < C; i++) sum += x[i];
        float m = (float)(sum / C);
        double var = 0.0;
        for (int i = 0; i < C; i++) {
            float diff = x[i] - m;
            var += (double)diff * diff;
        }
        float s = 1.0f / sqrtf((float)(var / C) + eps);
        float *y = out + (size_t)n * C;
        for (int i = 0; i < C; i++) {
            y[i] = (x[i] - m) * s * weight[i] + bias[i];
        }
        mean[n] = m;
        rstd[n] = s;
    }
}

void layernorm_backward(float *dinp, float *dweight, float *dbias, const float *dout,
                        const float *inp, const float *weight, const float *mean, const float *rstd,
                        int N, int C) {
#pragma omp parallel for
    for (int n = 0; n < N; n++) {
        const float *dy = dout + (size_t)n * C;
        const float *x = inp + (size_t)n * C;
        float m = mean[n], s = rstd[n];
        double dnorm_mean = 0.0, dnorm_norm_mean = 0.0;
        for (int i = 0; i < C; i++) {
            float norm = (x[i] - m) * s;
            float dnorm = weight[i] * dy[i];
            dnorm_mean += dnorm;
            dnorm_norm_mean += (double)dnorm * norm;
        }
        float a = (float)(dnorm_mean / C), b = (float)(dnorm_norm_mean / C);
        float *dx = dinp + (size_t)n * C;
        for (int i = 0; i < C; i++) {
            float norm = (x[i] - m) * s;
            float dnorm = weight[i] * dy[i];
            dx[i] += (dnorm - a - norm * b) * s;
        }
    }
    // weight and bias gradients: a reduction over rows, parallel over channels
#pragma omp parallel for
    for (int i = 0; i < C; i++) {
        float dw = 0.0f, db = 0.0f;
        for (int n = 0; n < N; n++) {
            float dy = dout[(size_t)n * C + i];
            dw += (inp[(size_t)n * C + i] - mean[n]) * rstd[n] * dy;
            db += dy;
        }
        dweight[i] += dw;
        dbias[i] += db;
    }
}

// Dot product with 8 independent partial sums, so the compiler vectorises it without being
// allowed to reorder a single sum (we compile without -ffast-math).
static inline float dot_product(const float *a, const float *b, int n) {
    float partial[8] = {0};
    int i = 0;
    for (; i + 8 <= n; i += 8) {
        for (int k = 0; k < 8; k++) partial[k] += a[i + k] * b[i + k];
    }
    float sum = 0.0f;
    for (int k = 0; k < 8; k++) sum += partial[k];
    for (; i < n; i++) sum += a[i] * b[i];
    return sum;
}

// Maximum and double-precision sum of a row, again with 8 independent lanes: the max is exact in
// any order, and the sum of 50257 probabilities in 8 double lanes stays far inside 1e-5.
static inline float max_of(const float *x, int n) {
    float partial[8] = {-INFINITY, -INFINITY, -INFINITY, -INFINITY,
                        -INFINITY, -INFINITY, -INFINITY, -INFINITY};
    int i = 0;
    for (; i + 8 <= n; i += 8) {
        for (int k = 0; k < 8; k++) partial[k] = x[i + k] > partial[k] ? x[i + k] : partial[k];
    }
    float maxval = -INFINITY;
    for (int k = 0; k < 8; k++) maxval = partial[k] > maxval ? partial[k] : maxval;
    for (; i < n; i++) maxval = x[i] > maxval ? x[i] : maxval;
    return maxval;
}

static inline double sum_of(const float *x, int n) {
    double partial[8] = {0};
    int i = 0;
    for (; i + 8 <= n; i += 8) {
        for (int k = 0; k < 8; k++) partial[k] += x[i + k];
    }
    double sum = 0.0;
    for (int k = 0; k < 8; k++) sum += partial[k];
    for (; i < n; i++) sum += x[i];
    return sum;
}

// out (N,OC) = inp (N,C) @ weight (OC,C)^T + bias (OC); bias may be NULL.
// All three products of a linear layer go through sgemm (llmc/matmul.h).
void matmul_forward(float *out, const float *inp, const float *weight, const float *bias, int N,
                    int C, int OC) {
    if (bias != NULL) {
#pragma omp parallel for
        for (int n = 0; n < N; n++) memcpy(out + (size_t)n * OC, bias, (size_t)OC * sizeof(float));
    }
    sgemm(out, (size_t)OC, inp, (size_t)C, 1, weight, 1, (size_t)C, N, OC, C, bias != NULL);
}

// dinp (N,C) += dout @ weight; dweight (OC,C) += dout^T @ inp; dbias (OC) += column sums of dout.
void matmul_backward(float *dinp, float *dweight, float *dbias, const float *dout, const float *inp,
                     const float *weight, int N, int C, int OC) {
    sgemm(dinp, (size_t)C, dout, (size_t)OC, 1, weight, (size_t)C, 1, N, C, OC, 1);
    sgemm(dweight, (size_t)C, dout, 1, (size_t)OC, inp, (size_t)C, 1, OC, C, N, 1);
    if (dbias != NULL) {
        // 64 columns at a time, walking dout's rows: each column still adds its rows in order,
        // but the loop vectorises across columns instead of striding down one (13 -> 1 ms on d12)
#pragma omp parallel for
        for (int o0 = 0; o0 < OC; o0 += 64) {
            float sum[64] = {0};
            int width = OC - o0 < 64 ? OC - o0 : 64;
            for (int n = 0; n < N; n++) {
                const float *row = dout + (size_t)n * OC + o0;
                for (int j = 0; j < width; j++) sum[j] += row[j];
            }
            for (int j = 0; j < width; j++) dbias[o0 + j] += sum[j];
        }
    }
}

// Causal self-attention with grouped-query heads. Each token's row of qkv holds NH query heads,
// then KV key heads, then KV value heads, each of hs values (GPT-2: KV = NH, the row is q, k, v of
// C each); query head h reads kv head h / (NH/KV). out (B,T,NH*hs). Only the log-sum-exp of each
// score row, lse (B,NH,T), is kept for backward, which recomputes the probabilities: B*NH*T*T
// floats per layer would be 2.4 GB for d12 at T=1024.
typedef struct {
    size_t row;        // values per token: (NH + 2 KV) hs
    size_t k, v;       // offsets of the key and value heads in a row
    int NH, KV, group; // group = NH / KV query heads per kv head
    int hs;
    float scale;
} AttentionShape;

static inline AttentionShape attention_shape(int NH, int KV, int hs) {
    AttentionShape s;
    s.row = (size_t)(NH + 2 * KV) * hs;
    s.k = (size_t)NH * hs;
    s.v = (size_t)(NH + KV) * hs;
    s.NH = NH;
    s.KV = KV;
    s.group = NH / KV;
    s.hs = hs;
    s.scale = 1.0f / sqrtf((float)hs);
    return s;
}

// Scores of row t of query head h against keys 0..t, scaled; returns their maximum.
static inline float attention_scores(float *scores, const float *qkv, const AttentionShape *s,
                                     int b, int h, int t, int T) {
    const float *q = qkv + ((size_t)b * T + t) * s->row + (size_t)h * s->hs;
    size_t k_offset = s->k + (size_t)(h / s->group) * s->hs;
    float maxval = -INFINITY;
    for (int t2 = 0; t2 <= t; t2++) {
        const float *k = qkv + ((size_t)b * T + t2) * s->row + k_offset;
        scores[t2] = dot_product(q, k, s->hs) * s->scale;
        if (scores[t2] > maxval) maxval = scores[t2];
    }
    return maxval;
}

void attention_forward_gqa(float *out, float *lse, const float *qkv, int B, int T, int NH, int KV,
                           int hs) {
    AttentionShape s = attention_shape(NH, KV, hs);
    size_t out_row = (size_t)NH * hs;
#pragma omp parallel
    {
        float *prob = (float *)malloc_check((size_t)T * sizeof(float), "attention row");
#pragma omp for collapse(3)
        for (int b = 0; b < B; b++) {
            for (int h = 0; h < NH; h++) {
                for (int t = 0; t < T; t++) {
                    float maxval = attention_scores(prob, qkv, &s, b, h, t, T);
                    for (int t2 = 0; t2 <= t; t2++) prob[t2] = exp_approx(prob[t2] - maxval);
                    float sum = 0.0f;
                    for (int t2 = 0; t2 <= t; t2++) sum += prob[t2];
                    float inv = 1.0f / sum;
                    float *y = out + ((size_t)b * T + t) * out_row + (size_t)h * hs;
                    for (int i = 0; i < hs; i++) y[i] = 0.0f;
                    size_t v_offset = s.v + (size_t)(h / s.group) * hs;
                    for (int t2 = 0; t2 <= t; t2++) {
                        const float *v = qkv + ((size_t)b * T + t2) * s.row + v_offset;
                        float a = prob[t2] * inv;
                        for (int i = 0; i < hs; i++) y[i] += a * v[i];
                    }
                    lse[((size_t)b * NH + h) * T + t] = maxval + logf(sum);
                }
            }
        }
        free(prob);
    }
}

// GPT-2's: qkv (B,T,3C), NH heads of C/NH, out (B,T,C).
void attention_forward(float *out, float *lse, const float *qkv, int B, int T, int C, int NH) {
    attention_forward_gqa(out, lse, qkv, B, T, NH, NH, C / NH);
}

// Each (b, kv head) pair owns its slices of dqkv (its query heads', its key and value head's), so
// the parallel loop needs no atomics, and the query heads of a group add into the shared key and
// value gradients in a fixed order.
void attention_backward_gqa(float *dqkv, const float *dout, const float *qkv, const float *lse,
                            int B, int T, int NH, int KV, int hs) {
    AttentionShape s = attention_shape(NH, KV, hs);
    size_t out_row = (size_t)NH * hs;
#pragma omp parallel
    {
        float *prob = (float *)malloc_check((size_t)T * sizeof(float), "attention row");
        float *dprob = (float *)malloc_check((size_t)T * sizeof(float), "attention row grad");
#pragma omp for collapse(2)
        for (int b = 0; b < B; b++) {
            for (int kvh = 0; kvh < KV; kvh++) {
                size_t k_offset = s.k + (size_t)kvh * hs, v_offset = s.v + (size_t)kvh * hs;
                for (int h = kvh * s.group; h < (kvh + 1) * s.group; h++) {
                    for (int t = 0; t < T; t++) {
                        attention_scores(prob, qkv, &s, b, h, t, T);
                        float row_lse = lse[((size_t)b * NH + h) * T + t];
                        for (int t2 = 0; t2 <= t; t2++) prob[t2] = exp_approx(prob[t2] - row_lse);
                        const float *dy = dout + ((size_t)b * T + t) * out_row + (size_t)h * hs;
                        // through out = prob @ v
                        for (int t2 = 0; t2 <= t; t2++) {
                            const float *v = qkv + ((size_t)b * T + t2) * s.row + v_offset;
                            float *dv = dqkv + ((size_t)b * T + t2) * s.row + v_offset;
                            dprob[t2] = dot_product(v, dy, hs);
                            float a = prob[t2];
                            for (int i = 0; i < hs; i++) dv[i] += a * dy[i];
                        }
                        // through the softmax: dscore = prob * (dprob - sum(prob * dprob))
                        float weighted = 0.0f;
                        for (int t2 = 0; t2 <= t; t2++) weighted += prob[t2] * dprob[t2];
                        const float *q = qkv + ((size_t)b * T + t) * s.row + (size_t)h * hs;
                        float *dq = dqkv + ((size_t)b * T + t) * s.row + (size_t)h * hs;
                        for (int t2 = 0; t2 <= t; t2++) {
                            float dscore = prob[t2] * (dprob[t2] - weighted) * s.scale;
                            const float *k = qkv + ((size_t)b * T + t2) * s.row + k_offset;
                            float *dk = dqkv + ((size_t)b * T + t2) * s.row + k_offset;
                            for (int i = 0; i < hs; i++) {
                                dq[i] += k[i] * dscore;
                                dk[i] += q[i] * dscore;
                            }
                        }
                    }
                }
            }
        }
        free(prob);
        free(dprob);
    }
}

void attention_backward(float *dqkv, const float *dout, const float *qkv, const float *lse, int B,
                        int T, int C, int NH) {
    attention_backward_gqa(dqkv, dout, qkv, lse, B, T, NH, NH, C / NH);
}

#define GELU_SCALE 0.7978845608028654f // sqrt(2 / pi)

// GELU, tanh approximation (GPT-2's): 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
void gelu_forward(float *out, const float *inp, size_t N) {
#pragma omp parallel for
    for (size_t i = 0; i < N; i++) {
        float x = inp[i];
        float cube = 0.044715f * x * x * x;
        out[i] = 0.5f * x * (1.0f + tanh_approx(GELU_SCALE * (x + cube)));
    }
}

void gelu_backward(float *dinp, const float *inp, const float *dout, size_t N) {
#pragma omp parallel for
    for (size_t i = 0; i < N; i++) {
        float x = inp[i];
        float cube = 0.044715f * x * x * x;
        float tanh_out = tanh_approx(GELU_SCALE * (x + cube));
        float sech2 = 1.0f - tanh_out * tanh_out;
        float local_grad = 0.5f * (1.0f + tanh_out) +
                           x * 0.5f * sech2 * GELU_SCALE * (1.0f + 3.0f * 0.044715f * x * x);
        dinp[i] += local_grad * dout[i];
    }
}

void residual_forward(float *out, const float *inp1, const float *inp2, size_t N) {
#pragma omp parallel for
    for (size_t i = 0; i < N; i++) out[i] = inp1[i] + inp2[i];
}

void residual_backward(float *dinp1, float *dinp2, const float *dout, size_t N) {
#pragma omp parallel for
    for (size_t i = 0; i < N; i++) {
        dinp1[i] += dout[i];
        dinp2[i] += dout[i];
    }
}

// Softmax over the first V of Vp logits, then cross-entropy against targets.
// probs (N,Vp) are kept for backward (padding columns 0); losses (N).
void crossentropy_softmax_forward(float *probs, float *losses, const float *logits,
                                  const int *targets, int N, int V, int Vp) {
#pragma omp parallel for
    for (int n = 0; n < N; n++) {
        const float *logit = logits + (size_t)n * Vp;
        float *prob = probs + (size_t)n * Vp;
        float maxval = max_of(logit, V);
        for (int i = 0; i < V; i++) prob[i] = exp_approx(logit[i] - maxval);
        double sum = sum_of(prob, V);
        float inv = (float)(1.0 / sum);
        for (int i = 0; i < V; i++) prob[i] *= inv;
        for (int i = V; i < Vp; i++) prob[i] = 0.0f;
        if (losses != NULL) {
            // log-sum-exp form: exact even when the target's probability underflows
            losses[n] = (float)(log(sum) + (double)maxval - (double)logit[targets[n]]);
        }
    }
}

// dlogits (N,Vp) += (probs - onehot(target)) / normaliser; padding columns get no gradient.
// mask (N) may be NULL; where it is 0 the target is not trained and its row gets no gradient
// (SFT: only the assistant's tokens). normaliser: the number of trained targets the loss is the
// mean over (the whole accumulated batch's), divided by any extra loss scale.
void crossentropy_softmax_backward(float *dlogits, const float *probs, const int *targets,
                                   const unsigned char *mask, float normaliser, int N, int V,
                                   int Vp) {
    float dloss = 1.0f / normaliser;
#pragma omp parallel for
    for (int n = 0; n < N; n++) {
        if (mask != NULL && mask[n] == 0) continue;
        float *dlogit = dlogits + (size_t)n * Vp;
        const float *prob = probs + (size_t)n * Vp;
        int target = targets[n];
        for (int i = 0; i < V; i++) {
            float indicator = i == target ? 1.0f : 0.0f;
            dlogit[i] += (prob[i] - indicator) * dloss;
        }
    }
}

// ----------------------------------------------------------------------------
// Layers of the llama family (llmc/model_config.h): RMSNorm, QK-norm, RoPE, SwiGLU.

#define RMSNORM_EPS 1e-5f

// y = x * rstd * w over one row of n, rstd = 1/sqrt(mean(x^2) + eps); returns rstd.
static inline float rmsnorm_row(float *y, const float *x, const float *w, int n) {
    double sum = 0.0; // double, as layernorm_forward: well inside the parity budget
    for (int i = 0; i < n; i++) sum += (double)x[i] * x[i];
    float s = 1.0f / sqrtf((float)(sum / n) + RMSNORM_EPS);
    for (int i = 0; i < n; i++) y[i] = x[i] * s * w[i];
    return s;
}

// dx += (dnorm - norm * mean(dnorm * norm)) * rstd with norm = x * rstd, dnorm = w * dy.
static inline void rmsnorm_row_backward(float *dx, const float *dy, const float *x, const float *w,
                                        float s, int n) {
    double dot = 0.0;
    for (int i = 0; i < n; i++) dot += (double)(w[i] * dy[i]) * (x[i] * s);
    float mean_dot = (float)(dot / n);
    for (int i = 0; i < n; i++) dx[i] += (w[i] * dy[i] - x[i] * s * mean_dot) * s;
}

// out (N,C) = inp * rstd * weight per row; rstd (N) kept for backward.
void rmsnorm_forward(float *out, float *rstd, const float *inp, const float *weight, int N, int C) {
#pragma omp parallel for
    for (int n = 0; n < N; n++) {
        rstd[n] = rmsnorm_row(out + (size_t)n * C, inp + (size_t)n * C, weight, C);
    }
}

void rmsnorm_backward(float *dinp, float *dweight, const float *dout, const float *inp,
                      const float *weight, const float *rstd, int N, int C) {
#pragma omp parallel for
    for (int n = 0; n < N; n++) {
        size_t row = (size_t)n * C;
        rmsnorm_row_backward(dinp + row, dout + row, inp + row, weight, rstd[n], C);
    }
    // the weight's gradient: a reduction over rows, parallel over channels
#pragma omp parallel for
    for (int i = 0; i < C; i++) {
        float dw = 0.0f;
        for (int n = 0; n < N; n++) {
            size_t at = (size_t)n * C + i;
            dw += inp[at] * rstd[n] * dout[at];
        }
        dweight[i] += dw;
    }
}

// QK-norm: out = qkv with each of the NH query and KV key heads (hs values) of every row RMS-
// normalised, with qnormw (hs) for query heads and knormw (hs) for key heads; the value heads are
// copied. rstd (N, NH+KV). Without QK-norm (qnormw NULL) out is a copy of qkv.
void qknorm_forward(float *out, float *rstd, const float *qkv, const float *qnormw,
                    const float *knormw, int N, int NH, int KV, int hs) {
    size_t width = (size_t)(NH + 2 * KV) * hs;
    int heads = NH + KV;
#pragma omp parallel for
    for (int n = 0; n < N; n++) {
        const float *x = qkv + (size_t)n * width;
        float *y = out + (size_t)n * width;
        if (qnormw == NULL) {
            memcpy(y, x, width * sizeof(float));
            continue;
        }
        for (int r = 0; r < heads; r++) {
            const float *w = r < NH ? qnormw : knormw;
            rstd[(size_t)n * heads + r] =
                rmsnorm_row(y + (size_t)r * hs, x + (size_t)r * hs, w, hs);
        }
        memcpy(y + (size_t)heads * hs, x + (size_t)heads * hs, (size_t)KV * hs * sizeof(float));
    }
}

void qknorm_backward(float *dqkv, float *dqnormw, float *dknormw, const float *dout,
                     const float *qkv, const float *qnormw, const float *knormw, const float *rstd,
                     int N, int NH, int KV, int hs) {
    size_t width = (size_t)(NH + 2 * KV) * hs;
    int heads = NH + KV;
#pragma omp parallel for
    for (int n = 0; n < N; n++) {
        size_t row = (size_t)n * width;
        size_t first_copied = qnormw == NULL ? 0 : (size_t)heads * hs;
        for (size_t i = first_copied; i < width; i++) dqkv[row + i] += dout[row + i];
        if (qnormw == NULL) continue;
        for (int r = 0; r < heads; r++) {
            size_t at = row + (size_t)r * hs;
            rmsnorm_row_backward(dqkv + at, dout + at, qkv + at, r < NH ? qnormw : knormw,
                                 rstd[(size_t)n * heads + r], hs);
        }
    }
    if (qnormw == NULL) return;
#pragma omp parallel for
    for (int i = 0; i < hs; i++) {
        float dq = 0.0f, dk = 0.0f;
        for (int n = 0; n < N; n++) {
            for (int r = 0; r < heads; r++) {
                size_t at = (size_t)n * width + (size_t)r * hs + i;
                float term = qkv[at] * rstd[(size_t)n * heads + r] * dout[at];
                if (r < NH) {
                    dq += term;
                } else {
                    dk += term;
                }
            }
        }
        dqnormw[i] += dq;
        dknormw[i] += dk;
    }
}

// RoPE, half-split (HuggingFace Llama's rotate_half): in each of the first `heads` head vectors
// (hs values) of every row (width values; row n is position n % T), the pair (i, i + hs/2) turns
// by the angle pos * theta^(-2i/hs), with the cos and sin of table row pos (llmc/rope_table.h,
// shared with the CUDA kernels: both rotate by the same fp32 values). In place; the backward turns
// the gradient back by the same angle (a rotation's transpose is its inverse: sin negated), so it
// replaces, not accumulates.
static void rope_rotate(float *x, const float *table, int B, int T, int heads, int hs, size_t width,
                        int inverse) {
    int half = hs / 2, N = B * T;
    float sign = inverse ? -1.0f : 1.0f;
#pragma omp parallel for
    for (int n = 0; n < N; n++) {
        const float *c = table + (size_t)(n % T) * hs, *s = c + half;
        for (int r = 0; r < heads; r++) {
            float *v = x + (size_t)n * width + (size_t)r * hs;
            for (int i = 0; i < half; i++) {
                float a = v[i], b = v[i + half], sn = sign * s[i];
                v[i] = a * c[i] - b * sn;
                v[i + half] = b * c[i] + a * sn;
            }
        }
    }
}

void rope_forward(float *qk, const float *table, int B, int T, int heads, int hs, size_t width) {
    rope_rotate(qk, table, B, T, heads, hs, width, 0);
}

void rope_backward(float *dqk, const float *table, int B, int T, int heads, int hs, size_t width) {
    rope_rotate(dqk, table, B, T, heads, hs, width, 1);
}

// SwiGLU: inp (N, 2F) = [gate | up] per row, out (N, F) = silu(gate) * up.
void swiglu_forward(float *out, const float *inp, int N, int F) {
#pragma omp parallel for
    for (int n = 0; n < N; n++) {
        const float *gate = inp + (size_t)n * 2 * F, *up = gate + F;
        float *y = out + (size_t)n * F;
        for (int i = 0; i < F; i++) {
            float g = gate[i];
            y[i] = g / (1.0f + exp_approx(-g)) * up[i];
        }
    }
}

// d gate = dout * up * silu'(gate), silu'(g) = sig(g) (1 + g (1 - sig(g))); d up = dout * silu.
void swiglu_backward(float *dinp, const float *inp, const float *dout, int N, int F) {
#pragma omp parallel for
    for (int n = 0; n < N; n++) {
        const float *gate = inp + (size_t)n * 2 * F, *up = gate + F;
        float *dgate = dinp + (size_t)n * 2 * F, *dup = dgate + F;
        const float *dy = dout + (size_t)n * F;
        for (int i = 0; i < F; i++) {
            float g = gate[i];
            float sig = 1.0f / (1.0f + exp_approx(-g));
            dgate[i] += dy[i] * up[i] * sig * (1.0f + g * (1.0f - sig));
            dup[i] += dy[i] * g * sig;
        }
    }
}

// ----------------------------------------------------------------------------
// The model

typedef struct {
    float *wte, *wpe, *ln1w, *ln1b, *qkvw, *qkvb, *attprojw, *attprojb;
    float *ln2w, *ln2b, *fcw, *fcb, *fcprojw, *fcprojb, *lnfw, *lnfb;
} ParameterTensors;

// Points the 16 named tensors into one block laid out as in the checkpoint.
static void point_parameters(ParameterTensors *p, float *memory, const GPT2Config *config) {
    size_t sizes[NUM_PARAMETER_TENSORS];
    gpt2_parameter_sizes(config, sizes);
    float **fields[NUM_PARAMETER_TENSORS] = {&p->wte,     &p->wpe,     &p->ln1w,     &p->ln1b,
                                             &p->qkvw,    &p->qkvb,    &p->attprojw, &p->attprojb,
                                             &p->ln2w,    &p->ln2b,    &p->fcw,      &p->fcb,
                                             &p->fcprojw, &p->fcprojb, &p->lnfw,     &p->lnfb};
    for (int i = 0; i < NUM_PARAMETER_TENSORS; i++) {
        *fields[i] = memory;
        memory += sizes[i];
    }
}

// The llama family's 11 tensors (llmc/model_config.h), pointed into the same kind of block.
typedef struct {
    float *wte, *rms1w, *qkvw, *qnormw, *knormw, *attprojw, *rms2w, *fcw, *fcprojw, *rmsfw;
    float *lm_head;
} LlamaParameters;

static LlamaParameters point_llama_parameters(float *memory, const GPT2Config *config) {
    size_t sizes[NUM_PARAMETER_TENSORS];
    gpt2_parameter_sizes(config, sizes);
    LlamaParameters p;
    float **fields[NUM_LLAMA_TENSORS] = {&p.wte,     &p.rms1w,    &p.qkvw,   &p.qnormw,
                                         &p.knormw,  &p.attprojw, &p.rms2w,  &p.fcw,
                                         &p.fcprojw, &p.rmsfw,    &p.lm_head};
    for (int i = 0; i < NUM_LLAMA_TENSORS; i++) {
        *fields[i] = memory;
        memory += sizes[i];
    }
    if (!config->qknorm) p.qnormw = p.knormw = NULL;
    return p;
}

#define NUM_ACTIVATION_TENSORS 24

// llama: ln* are the RMSNorms (no mean: 0 elements), qkv is (L,B,T,QKV) with QKV = (NH+2KV)*HS,
// qkvr the same after QK-norm and RoPE (what attention reads), qk_rstd (L,B,T,NH+KV) with QK-norm,
// fch (L,B,T,2ffn) and fch_gelu the SwiGLU output (L,B,T,ffn). GPT-2 has no qkvr, qk_rstd.
typedef struct {
    float *encoded;   // (B,T,C)
    float *ln1;       // (L,B,T,C)
    float *ln1_mean;  // (L,B,T)
    float *ln1_rstd;  // (L,B,T)
    float *qkv;       // (L,B,T,3C)
    float *qkvr;      // llama: (L,B,T,QKV)
    float *qk_rstd;   // llama with QK-norm: (L,B,T,NH+KV)
    float *atty;      // (L,B,T,C)
    float *att_lse;   // (L,B,NH,T) log-sum-exp of each attention score row
    float *attproj;   // (L,B,T,C)
    float *residual2; // (L,B,T,C)
    float *ln2;       // (L,B,T,C)
    float *ln2_mean;  // (L,B,T)
    float *ln2_rstd;  // (L,B,T)
    float *fch;       // (L,B,T,4C)
    float *fch_gelu;  // (L,B,T,4C)
    float *fcproj;    // (L,B,T,C)
    float *residual3; // (L,B,T,C)
    float *lnf;       // (B,T,C)
    float *lnf_mean;  // (B,T)
    float *lnf_rstd;  // (B,T)
    float *logits;    // (B,T,Vp)
    float *probs;     // (B,T,Vp)
    float *losses;    // (B,T)
} ActivationTensors;

static size_t point_activations(ActivationTensors *a, float *memory, const GPT2Config *config,
                                int B, int T) {
    size_t L = (size_t)config->num_layers, C = (size_t)config->channels;
    size_t NH = (size_t)config->num_heads, Vp = (size_t)config->padded_vocab_size;
    size_t BT = (size_t)B * T;
    int llama = config->arch == MODEL_ARCH_LLAMA;
    size_t QKV = llama ? (size_t)llama_qkv_width(config) : 3 * C;
    size_t F = (size_t)config->ffn, KV = (size_t)config->num_kv_heads;
    size_t mean = llama ? 0 : 1; // RMSNorm keeps no mean
    struct {
        float **field;
        size_t size;
    } table[NUM_ACTIVATION_TENSORS] = {{&a->encoded, BT * C},
                                       {&a->ln1, L * BT * C},
                                       {&a->ln1_mean, mean * L * BT},
                                       {&a->ln1_rstd, L * BT},
                                       {&a->qkv, L * BT * QKV},
                                       {&a->qkvr, llama ? L * BT * QKV : 0},
                                       {&a->qk_rstd, config->qknorm ? L * BT * (NH + KV) : 0},
                                       {&a->atty, L * BT * C},
                                       {&a->att_lse, L * B * NH * (size_t)T},
                                       {&a->attproj, L * BT * C},
                                       {&a->residual2, L * BT * C},
                                       {&a->ln2, L * BT * C},
                                       {&a->ln2_mean, mean * L * BT},
                                       {&a->ln2_rstd, L * BT},
                                       {&a->fch, llama ? L * BT * 2 * F : L * BT * 4 * C},
                                       {&a->fch_gelu, llama ? L * BT * F : L * BT * 4 * C},
                                       {&a->fcproj, L * BT * C},
                                       {&a->residual3, L * BT * C},
                                       {&a->lnf, BT * C},
                                       {&a->lnf_mean, mean * BT},
                                       {&a->lnf_rstd, BT},
                                       {&a->logits, BT * Vp},
                                       {&a->probs, BT * Vp},
                                       {&a->losses, BT}};
    // within the model caps (llmc/model_config.h) and B*T <= 2^31 (-b, -t) no product above
    // passes 2^62; the sum is checked
    size_t total = 0;
    for (int i = 0; i < NUM_ACTIVATION_TENSORS; i++) {
        if (memory != NULL) *table[i].field = memory + total;
        total = size_add_check(total, table[i].size, "activations");
    }
    return total;
}

typedef struct {
    GPT2Config config;
    size_t num_parameters;
    float *params_memory;
    ParameterTensors params;
    float *grads_memory;
    ParameterTensors grads;
    int grads_are_zero; // known all zero: just allocated, or cleared by the update that read them
    float *rope_table;  // llama: RoPE's cos | sin for positions 0..max_T-1 (llmc/rope_table.h)
    float *m_memory;    // AdamW first moment
    float *v_memory;    // AdamW second moment
    // activations, allocated on first forward for at most max_B x max_T
    int max_B, max_T;
    float *acts_memory;
    ActivationTensors acts;
    float *grads_acts_memory;
    ActivationTensors grads_acts;
    size_t num_activations;
    int B, T;                         // shape of the last forward
    const int *inputs;                // of the last forward (B,T)
    const int *targets;               // of the last forward, or NULL
    const unsigned char *target_mask; // of the last forward (B,T), or NULL: every target trained
    int num_targets;                  // trained targets of the last forward
    double loss_sum;                  // their summed loss
    float mean_loss;                  // loss_sum / num_targets (0 if none), -1 without targets
} GPT2;

static void gpt2_allocate_params(GPT2 *model) {
    model->num_parameters = gpt2_num_parameters(&model->config);
    model->params_memory =
        (float *)malloc_check(model->num_parameters * sizeof(float), "parameters");
    point_parameters(&model->params, model->params_memory, &model->config);
}

// path is a checkpoint file, a HuggingFace GPT-2 directory or a descriptor such as d12 (random
// init from seed).
void gpt2_build(GPT2 *model, const char *path_or_descriptor, uint32_t seed) {
    memset(model, 0, sizeof(*model));
    if (gpt2_config_from_descriptor(path_or_descriptor, &model->config)) {
        gpt2_allocate_params(model);
        gpt2_init_params(&model->config, model->params_memory, seed);
    } else {
        ModelSource source;
        model_source_open(&source, path_or_descriptor, &model->config);
        gpt2_allocate_params(model);
        model_source_read_params(&source, &model->config, model->params_memory,
                                 model->num_parameters);
    }
    model->mean_loss = -1.0f;
}

void gpt2_free(GPT2 *model) {
    free(model->params_memory);
    free(model->grads_memory);
    free(model->m_memory);
    free(model->v_memory);
    free(model->acts_memory);
    free(model->grads_acts_memory);
    free(model->rope_table);
}

// Activations for batches of up to B x T; gpt2_forward allocates on first use otherwise.
void gpt2_allocate_activations(GPT2 *model, int B, int T) {
    if (model->acts_memory != NULL) {
        fatal("internal: activations allocated twice");
    }
    model->max_B = B;
    model->max_T = T;
    model->num_activations = point_activations(&model->acts, NULL, &model->config, B, T);
    model->acts_memory = (float *)malloc_check(
        size_mul_check(model->num_activations, sizeof(float), "activations"), "activations");
    if (model->config.arch == MODEL_ARCH_LLAMA) {
        int hs = llama_head_size(&model->config);
        model->rope_table = (float *)malloc_check(
            size_mul_check((size_t)T, (size_t)hs * sizeof(float), "RoPE table"), "RoPE table");
        rope_table_init(model->rope_table, T, hs, model->config.rope_theta);
    }
}

// GPT-2 from the inputs of the last forward to its logits.
static void gpt2_forward_logits(GPT2 *model) {
    const GPT2Config *cfg = &model->config;
    int Vp = cfg->padded_vocab_size, L = cfg->num_layers, NH = cfg->num_heads, C = cfg->channels;
    int B = model->B, T = model->T;
    const int *inputs = model->inputs;
    ParameterTensors p = model->params;
    ActivationTensors a = model->acts;
    size_t BT = (size_t)B * T;
    encoder_forward(a.encoded, inputs, p.wte, p.wpe, B, T, C);
    for (int l = 0; l < L; l++) {
        const float *residual = l == 0 ? a.encoded : a.residual3 + (l - 1) * BT * C;
        size_t c = (size_t)C;
        float *ln1 = a.ln1 + l * BT * c;
        float *qkv = a.qkv + l * BT * 3 * c;
        float *atty = a.atty + l * BT * c;
        float *att_lse = a.att_lse + (size_t)l * B * NH * T;
        float *attproj = a.attproj + l * BT * c;
        float *residual2 = a.residual2 + l * BT * c;
        float *ln2 = a.ln2 + l * BT * c;
        float *fch = a.fch + l * BT * 4 * c;
        float *fch_gelu = a.fch_gelu + l * BT * 4 * c;
        float *fcproj = a.fcproj + l * BT * c;
        float *residual3 = a.residual3 + l * BT * c;
        layernorm_forward(ln1, a.ln1_mean + l * BT, a.ln1_rstd + l * BT, residual, p.ln1w + l * c,
                          p.ln1b + l * c, (int)BT, C);
        matmul_forward(qkv, ln1, p.qkvw + l * 3 * c * c, p.qkvb + l * 3 * c, (int)BT, C, 3 * C);
        attention_forward(atty, att_lse, qkv, B, T, C, NH);
        matmul_forward(attproj, atty, p.attprojw + l * c * c, p.attprojb + l * c, (int)BT, C, C);
        residual_forward(residual2, residual, attproj, BT * c);
        layernorm_forward(ln2, a.ln2_mean + l * BT, a.ln2_rstd + l * BT, residual2, p.ln2w + l * c,
                          p.ln2b + l * c, (int)BT, C);
        matmul_forward(fch, ln2, p.fcw + l * 4 * c * c, p.fcb + l * 4 * c, (int)BT, C, 4 * C);
        gelu_forward(fch_gelu, fch, BT * 4 * c);
        matmul_forward(fcproj, fch_gelu, p.fcprojw + l * 4 * c * c, p.fcprojb + l * c, (int)BT,
                       4 * C, C);
        residual_forward(residual3, residual2, fcproj, BT * c);
    }
    const float *final_residual = a.residual3 + (size_t)(L - 1) * BT * C;
    layernorm_forward(a.lnf, a.lnf_mean, a.lnf_rstd, final_residual, p.lnfw, p.lnfb, (int)BT, C);
    matmul_forward(a.logits, a.lnf, p.wte, NULL, (int)BT, C, Vp);
}

// GPT-2 from the gradient of the logits (in grads_acts) to the parameter gradients.
static void gpt2_backward_layers(GPT2 *model) {
    const GPT2Config *cfg = &model->config;
    int Vp = cfg->padded_vocab_size, L = cfg->num_layers, NH = cfg->num_heads, C = cfg->channels;
    int B = model->B, T = model->T;
    ParameterTensors p = model->params, g = model->grads;
    ActivationTensors a = model->acts, ga = model->grads_acts;
    size_t BT = (size_t)B * T, c = (size_t)C;
    matmul_backward(ga.lnf, g.wte, NULL, ga.logits, a.lnf, p.wte, (int)BT, C, Vp);
    float *final_residual = a.residual3 + (size_t)(L - 1) * BT * c;
    float *dfinal_residual = ga.residual3 + (size_t)(L - 1) * BT * c;
    layernorm_backward(dfinal_residual, g.lnfw, g.lnfb, ga.lnf, final_residual, p.lnfw, a.lnf_mean,
                       a.lnf_rstd, (int)BT, C);
    for (int l = L - 1; l >= 0; l--) {
        const float *residual = l == 0 ? a.encoded : a.residual3 + (l - 1) * BT * c;
        float *dresidual = l == 0 ? ga.encoded : ga.residual3 + (l - 1) * BT * c;
        size_t lse_offset = (size_t)l * B * NH * T;
        // MLP block
        residual_backward(ga.residual2 + l * BT * c, ga.fcproj + l * BT * c,
                          ga.residual3 + l * BT * c, BT * c);
        matmul_backward(ga.fch_gelu + l * BT * 4 * c, g.fcprojw + l * 4 * c * c, g.fcprojb + l * c,
                        ga.fcproj + l * BT * c, a.fch_gelu + l * BT * 4 * c,
                        p.fcprojw + l * 4 * c * c, (int)BT, 4 * C, C);
        gelu_backward(ga.fch + l * BT * 4 * c, a.fch + l * BT * 4 * c, ga.fch_gelu + l * BT * 4 * c,
                      BT * 4 * c);
        matmul_backward(ga.ln2 + l * BT * c, g.fcw + l * 4 * c * c, g.fcb + l * 4 * c,
                        ga.fch + l * BT * 4 * c, a.ln2 + l * BT * c, p.fcw + l * 4 * c * c, (int)BT,
                        C, 4 * C);
        layernorm_backward(ga.residual2 + l * BT * c, g.ln2w + l * c, g.ln2b + l * c,
                           ga.ln2 + l * BT * c, a.residual2 + l * BT * c, p.ln2w + l * c,
                           a.ln2_mean + l * BT, a.ln2_rstd + l * BT, (int)BT, C);
        // attention block
        residual_backward(dresidual, ga.attproj + l * BT * c, ga.residual2 + l * BT * c, BT * c);
        matmul_backward(ga.atty + l * BT * c, g.attprojw + l * c * c, g.attprojb + l * c,
                        ga.attproj + l * BT * c, a.atty + l * BT * c, p.attprojw + l * c * c,
                        (int)BT, C, C);
        attention_backward(ga.qkv + l * BT * 3 * c, ga.atty + l * BT * c, a.qkv + l * BT * 3 * c,
                           a.att_lse + lse_offset, B, T, C, NH);
        matmul_backward(ga.ln1 + l * BT * c, g.qkvw + l * 3 * c * c, g.qkvb + l * 3 * c,
                        ga.qkv + l * BT * 3 * c, a.ln1 + l * BT * c, p.qkvw + l * 3 * c * c,
                        (int)BT, C, 3 * C);
        layernorm_backward(dresidual, g.ln1w + l * c, g.ln1b + l * c, ga.ln1 + l * BT * c, residual,
                           p.ln1w + l * c, a.ln1_mean + l * BT, a.ln1_rstd + l * BT, (int)BT, C);
    }
    encoder_backward(g.wte, g.wpe, ga.encoded, model->inputs, B, T, C);
}

// The llama family (llmc/model_config.h) from the inputs of the last forward to its logits:
// x = wte[inp]; per layer x += attproj(attention(rope(qknorm(qkv(rms1(x)))))),
// x += fcproj(swiglu(fc(rms2(x)))); logits = lm_head(rmsf(x)).
static void llama_forward_logits(GPT2 *model) {
    const GPT2Config *cfg = &model->config;
    int Vp = cfg->padded_vocab_size, L = cfg->num_layers, NH = cfg->num_heads, C = cfg->channels;
    int KV = cfg->num_kv_heads, HS = llama_head_size(cfg), F = cfg->ffn;
    int QKV = llama_qkv_width(cfg), B = model->B, T = model->T;
    LlamaParameters p = point_llama_parameters(model->params_memory, cfg);
    ActivationTensors a = model->acts;
    size_t BT = (size_t)B * T, c = (size_t)C, w = (size_t)QKV, f = (size_t)F;
    size_t heads = (size_t)(NH + KV), hs = (size_t)HS;
    encoder_forward(a.encoded, model->inputs, p.wte, NULL, B, T, C);
    for (int l = 0; l < L; l++) {
        const float *residual = l == 0 ? a.encoded : a.residual3 + (l - 1) * BT * c;
        float *ln1 = a.ln1 + l * BT * c;
        float *qkv = a.qkv + l * BT * w, *qkvr = a.qkvr + l * BT * w;
        float *atty = a.atty + l * BT * c;
        float *attproj = a.attproj + l * BT * c;
        float *residual2 = a.residual2 + l * BT * c;
        float *ln2 = a.ln2 + l * BT * c;
        float *fch = a.fch + l * BT * 2 * f, *fch_swiglu = a.fch_gelu + l * BT * f;
        float *fcproj = a.fcproj + l * BT * c;
        float *residual3 = a.residual3 + l * BT * c;
        rmsnorm_forward(ln1, a.ln1_rstd + l * BT, residual, p.rms1w + l * c, (int)BT, C);
        matmul_forward(qkv, ln1, p.qkvw + l * w * c, NULL, (int)BT, C, QKV);
        if (cfg->qknorm) {
            qknorm_forward(qkvr, a.qk_rstd + l * BT * heads, qkv, p.qnormw + l * hs,
                           p.knormw + l * hs, (int)BT, NH, KV, HS);
        } else {
            qknorm_forward(qkvr, NULL, qkv, NULL, NULL, (int)BT, NH, KV, HS); // a copy
        }
        rope_forward(qkvr, model->rope_table, B, T, NH + KV, HS, w);
        attention_forward_gqa(atty, a.att_lse + (size_t)l * B * NH * T, qkvr, B, T, NH, KV, HS);
        matmul_forward(attproj, atty, p.attprojw + l * c * c, NULL, (int)BT, C, C);
        residual_forward(residual2, residual, attproj, BT * c);
        rmsnorm_forward(ln2, a.ln2_rstd + l * BT, residual2, p.rms2w + l * c, (int)BT, C);
        matmul_forward(fch, ln2, p.fcw + l * 2 * f * c, NULL, (int)BT, C, 2 * F);
        swiglu_forward(fch_swiglu, fch, (int)BT, F);
        matmul_forward(fcproj, fch_swiglu, p.fcprojw + l * c * f, NULL, (int)BT, F, C);
        residual_forward(residual3, residual2, fcproj, BT * c);
    }
    const float *final_residual = a.residual3 + (size_t)(L - 1) * BT * c;
    rmsnorm_forward(a.lnf, a.lnf_rstd, final_residual, p.rmsfw, (int)BT, C);
    matmul_forward(a.logits, a.lnf, p.lm_head, NULL, (int)BT, C, Vp);
}

// The llama family from the gradient of the logits (in grads_acts) to the parameter gradients.
static void llama_backward_layers(GPT2 *model) {
    const GPT2Config *cfg = &model->config;
    int Vp = cfg->padded_vocab_size, L = cfg->num_layers, NH = cfg->num_heads, C = cfg->channels;
    int KV = cfg->num_kv_heads, HS = llama_head_size(cfg), F = cfg->ffn;
    int QKV = llama_qkv_width(cfg), B = model->B, T = model->T;
    LlamaParameters p = point_llama_parameters(model->params_memory, cfg);
    LlamaParameters g = point_llama_parameters(model->grads_memory, cfg);
    ActivationTensors a = model->acts, ga = model->grads_acts;
    size_t BT = (size_t)B * T, c = (size_t)C, w = (size_t)QKV, f = (size_t)F;
    size_t heads = (size_t)(NH + KV), hs = (size_t)HS;
    matmul_backward(ga.lnf, g.lm_head, NULL, ga.logits, a.lnf, p.lm_head, (int)BT, C, Vp);
    const float *final_residual = a.residual3 + (size_t)(L - 1) * BT * c;
    float *dfinal_residual = ga.residual3 + (size_t)(L - 1) * BT * c;
    rmsnorm_backward(dfinal_residual, g.rmsfw, ga.lnf, final_residual, p.rmsfw, a.lnf_rstd, (int)BT,
                     C);
    for (int l = L - 1; l >= 0; l--) {
        const float *residual = l == 0 ? a.encoded : a.residual3 + (l - 1) * BT * c;
        float *dresidual = l == 0 ? ga.encoded : ga.residual3 + (l - 1) * BT * c;
        size_t at = l * BT * c; // offset of this layer's (B,T,C) activations
        // MLP block
        residual_backward(ga.residual2 + at, ga.fcproj + at, ga.residual3 + at, BT * c);
        matmul_backward(ga.fch_gelu + l * BT * f, g.fcprojw + l * c * f, NULL, ga.fcproj + at,
                        a.fch_gelu + l * BT * f, p.fcprojw + l * c * f, (int)BT, F, C);
        swiglu_backward(ga.fch + l * BT * 2 * f, a.fch + l * BT * 2 * f, ga.fch_gelu + l * BT * f,
                        (int)BT, F);
        matmul_backward(ga.ln2 + at, g.fcw + l * 2 * f * c, NULL, ga.fch + l * BT * 2 * f,
                        a.ln2 + at, p.fcw + l * 2 * f * c, (int)BT, C, 2 * F);
        rmsnorm_backward(ga.residual2 + at, g.rms2w + l * c, ga.ln2 + at, a.residual2 + at,
                         p.rms2w + l * c, a.ln2_rstd + l * BT, (int)BT, C);
        // attention block
        residual_backward(dresidual, ga.attproj + at, ga.residual2 + at, BT * c);
        matmul_backward(ga.atty + at, g.attprojw + l * c * c, NULL, ga.attproj + at, a.atty + at,
                        p.attprojw + l * c * c, (int)BT, C, C);
        float *dqkvr = ga.qkvr + l * BT * w;
        attention_backward_gqa(dqkvr, ga.atty + at, a.qkvr + l * BT * w,
                               a.att_lse + (size_t)l * B * NH * T, B, T, NH, KV, HS);
        rope_backward(dqkvr, model->rope_table, B, T, NH + KV, HS, w);
        if (cfg->qknorm) {
            qknorm_backward(ga.qkv + l * BT * w, g.qnormw + l * hs, g.knormw + l * hs, dqkvr,
                            a.qkv + l * BT * w, p.qnormw + l * hs, p.knormw + l * hs,
                            a.qk_rstd + l * BT * heads, (int)BT, NH, KV, HS);
        } else {
            qknorm_backward(ga.qkv + l * BT * w, NULL, NULL, dqkvr, a.qkv + l * BT * w, NULL, NULL,
                            NULL, (int)BT, NH, KV, HS); // adds dqkvr
        }
        matmul_backward(ga.ln1 + at, g.qkvw + l * w * c, NULL, ga.qkv + l * BT * w, a.ln1 + at,
                        p.qkvw + l * w * c, (int)BT, C, QKV);
        rmsnorm_backward(dresidual, g.rms1w + l * c, ga.ln1 + at, residual, p.rms1w + l * c,
                         a.ln1_rstd + l * BT, (int)BT, C);
    }
    encoder_backward(g.wte, NULL, ga.encoded, model->inputs, B, T, C);
}

// Runs the model on inputs (B,T); with targets also computes the mean loss over the targets whose
// target_mask is 1 (target_mask NULL: all of them).
void gpt2_forward_masked(GPT2 *model, const int *inputs, const int *targets,
                         const unsigned char *target_mask, int B, int T) {
    const GPT2Config *cfg = &model->config;
    int V = cfg->vocab_size, Vp = cfg->padded_vocab_size;
    if (T > cfg->max_seq_len) {
        fatal("sequence length T=%d exceeds the model's maxT=%d", T, cfg->max_seq_len);
    }
    for (int i = 0; i < B * T; i++) {
        if (inputs[i] < 0 || inputs[i] >= V ||
            (targets != NULL && (targets[i] < 0 || targets[i] >= V))) {
            fatal("token id out of range at position %d (input %d, target %d): must be < V=%d", i,
                  inputs[i], targets != NULL ? targets[i] : 0, V);
        }
    }
    if (model->acts_memory == NULL) {
        gpt2_allocate_activations(model, B, T);
    } else if (B > model->max_B || T > model->max_T) {
        fatal("internal: forward with B=%d T=%d after allocating for B=%d T=%d", B, T, model->max_B,
              model->max_T);
    }
    point_activations(&model->acts, model->acts_memory, cfg, B, T);
    model->B = B;
    model->T = T;
    model->inputs = inputs;
    model->targets = targets;
    model->target_mask = targets != NULL ? target_mask : NULL;

    if (cfg->arch == MODEL_ARCH_LLAMA) {
        llama_forward_logits(model);
    } else {
        gpt2_forward_logits(model);
    }
    ActivationTensors a = model->acts;
    size_t BT = (size_t)B * T;
    if (targets != NULL) {
        crossentropy_softmax_forward(a.probs, a.losses, a.logits, targets, (int)BT, V, Vp);
        double sum = 0.0;
        int count = 0;
        for (size_t i = 0; i < BT; i++) {
            if (target_mask != NULL && target_mask[i] == 0) continue;
            sum += a.losses[i];
            count++;
        }
        model->loss_sum = sum;
        model->num_targets = count;
        model->mean_loss = count > 0 ? (float)(sum / count) : 0.0f;
    } else {
        model->loss_sum = 0.0;
        model->num_targets = 0;
        model->mean_loss = -1.0f;
    }
}

void gpt2_forward(GPT2 *model, const int *inputs, const int *targets, int B, int T) {
    gpt2_forward_masked(model, inputs, targets, NULL, B, T);
}

void gpt2_zero_grad(GPT2 *model) {
    if (model->grads_memory == NULL || model->grads_are_zero) return;
    const size_t chunk = 1 << 20;
    size_t n = model->num_parameters;
#pragma omp parallel for
    for (size_t start = 0; start < n; start += chunk) {
        memset(model->grads_memory + start, 0,
               (n - start < chunk ? n - start : chunk) * sizeof(float));
    }
    model->grads_are_zero = 1;
}

// Backward of the last forward, of the loss "sum of the trained targets' losses / normaliser".
// With gradient accumulation over masked batches the normaliser is the number of trained
// targets in the whole step, so every trained token weighs the same whatever micro-batch it is in.
void gpt2_backward_normalised(GPT2 *model, float normaliser) {
    if (model->targets == NULL) {
        fatal("internal: backward without a forward with targets");
    }
    const GPT2Config *cfg = &model->config;
    int V = cfg->vocab_size, Vp = cfg->padded_vocab_size;
    int B = model->B, T = model->T;
    if (model->grads_memory == NULL) {
        model->grads_memory =
            (float *)calloc_check(model->num_parameters, sizeof(float), "gradients");
        point_parameters(&model->grads, model->grads_memory, cfg);
    }
    model->grads_are_zero = 0;
    if (model->grads_acts_memory == NULL) {
        model->grads_acts_memory =
            (float *)malloc_check(model->num_activations * sizeof(float), "activation gradients");
    }
    point_activations(&model->grads_acts, model->grads_acts_memory, cfg, B, T);
    size_t used = point_activations(&model->grads_acts, NULL, cfg, B, T);
    const size_t chunk = 1 << 20;
#pragma omp parallel for
    for (size_t start = 0; start < used; start += chunk) {
        size_t count = used - start < chunk ? used - start : chunk;
        memset(model->grads_acts_memory + start, 0, count * sizeof(float));
    }

    ActivationTensors a = model->acts, ga = model->grads_acts;
    size_t BT = (size_t)B * T;
    crossentropy_softmax_backward(ga.logits, a.probs, model->targets, model->target_mask,
                                  normaliser, (int)BT, V, Vp);
    if (cfg->arch == MODEL_ARCH_LLAMA) {
        llama_backward_layers(model);
    } else {
        gpt2_backward_layers(model);
    }
}

// Backward of the last forward's mean loss times loss_scale (1/grad_accum_steps when
// accumulating unmasked batches), so parameter gradients sum correctly over micro-batches.
void gpt2_backward(GPT2 *model, float loss_scale) {
    int count = model->target_mask != NULL ? model->num_targets : model->B * model->T;
    // no trained target: every row is skipped, the normaliser does not matter
    gpt2_backward_normalised(model, count > 0 ? (float)count / loss_scale : 1.0f);
}

// Grows V into the padded rows for the chat tokens of SFT data (shared with train_gpt2.cu).
void gpt2_grow_vocab(GPT2 *model, int vocab_size) {
    gpt2_grow_vocab_params(&model->config, model->params_memory, vocab_size);
}

// Global L2 norm of all gradients (double accumulation in fixed chunks: thread-count independent).
float gpt2_grad_norm(const GPT2 *model) {
    const size_t chunk = 1 << 16;
    size_t n = model->num_parameters;
    size_t num_chunks = (n + chunk - 1) / chunk;
    double *partial = (double *)malloc_check(num_chunks * sizeof(double), "norm partials");
#pragma omp parallel for
    for (size_t k = 0; k < num_chunks; k++) {
        size_t end = (k + 1) * chunk < n ? (k + 1) * chunk : n;
        // independent partial sums, so the loop vectorises: 32 doubles are four AVX-512 (eight
        // AVX2) registers, enough chains to hide the add latency (8 sums: 50 -> 35 ms on d12)
        double sums[32] = {0};
        size_t i = k * chunk;
        for (; i + 32 <= end; i += 32) {
            for (int j = 0; j < 32; j++) {
                double g = model->grads_memory[i + j];
                sums[j] += g * g;
            }
        }
        for (; i < end; i++) sums[0] += (double)model->grads_memory[i] * model->grads_memory[i];
        for (int width = 16; width > 0; width /= 2) {
            for (int j = 0; j < width; j++) sums[j] += sums[j + width];
        }
        partial[k] = sums[0];
    }
    double total = 0.0;
    for (size_t k = 0; k < num_chunks; k++) total += partial[k];
    free(partial);
    return (float)sqrt(total);
}

typedef struct {
    float learning_rate, beta1, beta2, eps, weight_decay;
} AdamWConfig;

// One optimizer step t (1-based) on gradients times grad_scale (clipping). AdamW, written the
// way torch.optim.AdamW computes it so the two agree closely, with weight decay only on matrices;
// with muon (NULL: AdamW everywhere) the blocks' 2-D matrices take a Muon step instead
// (llmc/muon.h), their momentum in m. It clears each gradient as it reads it, which saves
// gpt2_zero_grad a pass over all of them.
void gpt2_update(GPT2 *model, const AdamWConfig *opt, const MuonConfig *muon, int t,
                 float grad_scale) {
    if (model->m_memory == NULL) {
        model->m_memory = (float *)calloc_check(model->num_parameters, sizeof(float), "AdamW m");
        model->v_memory = (float *)calloc_check(model->num_parameters, sizeof(float), "AdamW v");
    }
    double bias_correction1 = 1.0 - pow(opt->beta1, t);
    double bias_correction2 = 1.0 - pow(opt->beta2, t);
    float step_size = (float)(opt->learning_rate / bias_correction1);
    float bias_correction2_sqrt = (float)sqrt(bias_correction2);
    size_t sizes[NUM_PARAMETER_TENSORS];
    gpt2_parameter_sizes(&model->config, sizes);
    MuonScratch scratch;
    memset(&scratch, 0, sizeof(scratch));
    size_t offset = 0;
    for (int k = 0; k < NUM_PARAMETER_TENSORS; k++) {
        float decay = model_tensor_is_decayed(&model->config, k)
                          ? 1.0f - opt->learning_rate * opt->weight_decay
                          : 1.0f;
        float *param = model->params_memory + offset;
        float *grad = model->grads_memory + offset;
        float *m = model->m_memory + offset;
        float *v = model->v_memory + offset;
        BlockMatrixShape shape;
        if (muon != NULL && gpt2_block_matrix_shape(&model->config, k, &shape)) {
            size_t matrix = (size_t)shape.rows * shape.cols;
            for (int l = 0; l < shape.layers; l++) {
                muon_update_matrix(param + l * matrix, grad + l * matrix, m + l * matrix,
                                   shape.rows, shape.cols, grad_scale, muon, &scratch);
            }
            offset += sizes[k];
            continue;
        }
#pragma omp parallel for
        for (size_t i = 0; i < sizes[k]; i++) {
            float g = grad[i] * grad_scale;
            grad[i] = 0.0f; // consumed: the next gpt2_zero_grad has nothing left to do
            param[i] *= decay;
            m[i] += (g - m[i]) * (1.0f - opt->beta1);
            v[i] = v[i] * opt->beta2 + (1.0f - opt->beta2) * g * g;
            float denom = sqrtf(v[i]) / bias_correction2_sqrt + opt->eps;
            param[i] -= step_size * (m[i] / denom);
        }
        offset += sizes[k];
    }
    muon_scratch_free(&scratch);
    model->grads_are_zero = 1;
}

#ifndef TESTING
// ----------------------------------------------------------------------------
// Training

// The model for llmc/train_loop.h: the callbacks behind a TrainModel.
static BatchLoss batch_loss(const GPT2 *model) {
    BatchLoss loss = {model->mean_loss, model->loss_sum, model->num_targets};
    return loss;
}

static BatchLoss train_forward(void *model, const int *inputs, const int *targets,
                               const unsigned char *target_mask, int B, int T) {
    gpt2_forward_masked((GPT2 *)model, inputs, targets, target_mask, B, T);
    return batch_loss((GPT2 *)model);
}

static const float *train_position_losses(void *model) {
    return ((GPT2 *)model)->acts.losses;
}

static BatchLoss train_forward_backward(void *model, const int *inputs, const int *targets,
                                        const unsigned char *target_mask, int B, int T,
                                        float normaliser, float loss_scale, int last_micro_step) {
    (void)last_micro_step; // one process: nothing to reduce
    GPT2 *gpt2 = (GPT2 *)model;
    if (target_mask != NULL) {
        gpt2_forward_masked(gpt2, inputs, targets, target_mask, B, T);
        gpt2_backward_normalised(gpt2, normaliser);
    } else {
        gpt2_forward(gpt2, inputs, targets, B, T);
        gpt2_backward(gpt2, loss_scale);
    }
    return batch_loss(gpt2);
}

static const float *train_last_logits(void *model, const int *tokens, int length, float *scratch) {
    (void)scratch; // the CPU logits are already on the host
    GPT2 *gpt2 = (GPT2 *)model;
    gpt2_forward(gpt2, tokens, NULL, 1, length);
    return gpt2->acts.logits + (size_t)(length - 1) * gpt2->config.padded_vocab_size;
}

// Checks every value before any file is written: a diverged run keeps its last good checkpoint.
static void save_checkpoint(void *model, const char *dir, int step, const DataLoader *loader,
                            uint64_t rng_state, const OutlierHistory *outliers) {
    GPT2 *gpt2 = (GPT2 *)model;
    size_t n = gpt2->num_parameters;
    if (gpt2->m_memory == NULL) { // a checkpoint before the first update: zero moments
        gpt2->m_memory = (float *)calloc_check(n, sizeof(float), "AdamW m");
        gpt2->v_memory = (float *)calloc_check(n, sizeof(float), "AdamW v");
    }
    CheckedTensor tensors[] = {{"weights", gpt2->params_memory, n},
                               {"AdamW m", gpt2->m_memory, n},
                               {"AdamW v", gpt2->v_memory, n}};
    char problem[256];
    if (tensors_find_non_finite(tensors, 3, problem, sizeof(problem))) {
        checkpoint_refuse_non_finite(dir, step, problem);
    }
    char path[4096];
    checkpoint_path(path, sizeof(path), dir, "model", step);
    model_write(path, &gpt2->config, gpt2->params_memory, MODEL_VERSION_FP32);
    checkpoint_write_state(dir, step, n, gpt2->m_memory, gpt2->v_memory, NULL, loader, rng_state,
                           outliers);
}

int main(int argc, char **argv) {
    // flags, defaults and their validation are shared with train_gpt2.cu (llmc/train_options.h)
    TrainOptions opt;
    train_options_defaults(&opt);
    CliOption options[TRAIN_OPTIONS_MAX];
    int num_options = train_options_table(&opt, options);
    cli_parse(argc, argv,
              "Trains GPT-2 (or a llama-family model) on the CPU in fp32 (the reference trainer). "
              "Threads: OMP_NUM_THREADS.",
              options, num_options);
    train_options_plot_command(&opt); // --plot: only redraw a plot
    train_options_validate(&opt, 1);
    // one trainer per output directory, locked before anything in it is read (llmc/run_dir.h)
    if (opt.output_dir[0] != '\0') run_dir_claim(opt.output_dir);
    // resume: the newest complete checkpoint in the output directory replaces -e
    char resume_model_path[4096];
    int start_step = train_options_resume(&opt, resume_model_path, sizeof(resume_model_path));
    const char *train_pattern = opt.train_pattern, *val_pattern = opt.val_pattern;
    const char *model_spec = opt.model_spec, *output_dir = opt.output_dir;
    const char *tokenizer_path = opt.tokenizer_path;
    ScheduleType schedule = opt.schedule;
    int B = opt.B, T = opt.T, total_batch_size = opt.total_batch_size, max_steps = opt.max_steps;
    int warmup_steps = opt.warmup_steps, val_every = opt.val_every;
    int seed = opt.seed, shuffle = opt.shuffle, grad_accum_steps = opt.grad_accum_steps;
    float learning_rate = opt.learning_rate, final_lr_fraction = opt.final_lr_fraction;
    float weight_decay = opt.weight_decay, grad_clip = opt.grad_clip, beta1 = opt.beta1;
    float beta2 = opt.beta2, eps = opt.eps;

    GPT2 model;
    gpt2_build(&model, model_spec, (uint32_t)seed);
    gpt2_config_print(&model.config, model.num_parameters);
    if (T > model.config.max_seq_len) {
        fatal("bad value %d for -t: exceeds the model's maxT=%d", T, model.config.max_seq_len);
    }
    if (opt.loss_mask !=
        DATALOADER_MASKS_OFF) { // SFT data: its chat tokens may be new to the model
        gpt2_grow_vocab(&model, dataloader_mask_vocab_size(train_pattern));
    }
    DataLoader train_loader, val_loader;
    dataloader_init_with_masks(&train_loader, train_pattern, B, T, model.config.vocab_size, 0, 1,
                               shuffle, (uint32_t)seed, opt.loss_mask);
    int have_val = val_pattern[0] != '\0' && val_every > 0;
    if (have_val) {
        dataloader_init_with_masks(&val_loader, val_pattern, B, T, model.config.vocab_size, 0, 1, 0,
                                   0, opt.loss_mask);
    }
    StepBatches step_batches = {0}; // masked training loads a whole step ahead (see StepBatches)
    if (train_loader.has_masks) {
        step_batches_init(&step_batches, &train_loader, grad_accum_steps);
        printf(
            "loss masks: on (SFT); the loss is the mean over the trained targets of each step\n");
    }
    if (max_steps < 0) max_steps = train_epoch_steps(&train_loader, grad_accum_steps);
    Tokenizer tokenizer;
    int eot_token;
    int have_tokenizer =
        train_load_tokenizer(&tokenizer, tokenizer_path, model.config.vocab_size, &eot_token);
    train_keep_tokenizer(output_dir, train_loader.glob_result.gl_pathv[0], tokenizer_path,
                         model.config.vocab_size);

    gpt2_allocate_activations(&model, B, T);
    TrainEval eval;
    int have_eval = opt.hellaswag_path[0] != '\0';
    if (have_eval) {
        train_eval_init(&eval, opt.hellaswag_path, opt.hellaswag_out, model.config.vocab_size, B,
                        T);
    }
    uint64_t rng_state = 1337;
    OutlierDetector detector;
    outlier_detector_init(&detector, opt.outlier_window, opt.skip_loss_z, opt.skip_norm_z);
    if (start_step > 0) {
        model.m_memory = (float *)malloc_check(model.num_parameters * sizeof(float), "AdamW m");
        model.v_memory = (float *)malloc_check(model.num_parameters * sizeof(float), "AdamW v");
        OutlierHistory outliers;
        TrainState state =
            checkpoint_read_state(output_dir, start_step, model.num_parameters, model.m_memory,
                                  model.v_memory, NULL, &train_loader, &outliers);
        rng_state = state.rng_state;
        outlier_detector_restore(&detector, &outliers);
        printf("resume: from step %d of %s\n", start_step, output_dir);
    }
    if (max_steps == 0) {
        printf("-x 0: no training step, only evaluation\n");
    } else if (start_step >= max_steps) {
        printf("nothing to do: step %d already reached -x %d\n", start_step, max_steps);
    }
    Logger logger;
    logger_init(&logger, output_dir, start_step);
    LRScheduler scheduler = {schedule, learning_rate, warmup_steps, max_steps, final_lr_fraction};
    AdamWConfig adamw = {learning_rate, beta1, beta2, eps, weight_decay};
    // Muon's lr follows the same schedule from its own peak
    LRScheduler muon_scheduler = {schedule, opt.muon_lr, warmup_steps, max_steps,
                                  final_lr_fraction};
    MuonConfig muon = {opt.muon_lr, opt.muon_momentum, weight_decay, opt.muon_ns_steps};
    int use_muon = opt.optimizer == OPTIMIZER_MUON;
    train_print_optimizer(&opt, &model.config);
    int tokens_per_step = total_batch_size;
    printf("train: %zu shard(s) from %s | B=%d T=%d, %d tokens/step (%d micro-steps) | %d steps | "
           "%d threads\n",
           train_loader.num_shards, train_pattern, B, T, tokens_per_step, grad_accum_steps,
           max_steps, max_threads());

    TrainModel train_model = {&model,
                              model.config.vocab_size,
                              model.config.padded_vocab_size,
                              train_forward,
                              train_forward_backward,
                              train_last_logits,
                              save_checkpoint,
                              0,
                              1,
                              NULL,
                              train_position_losses};
    StepTimer timer = {0.0, 0};
    double run_start = now_seconds();
    for (int step = start_step; step <= max_steps; step++) {
        train_checkpoint_validate_sample(
            &train_model, &opt, step, start_step, max_steps, &train_loader,
            have_val ? &val_loader : NULL, have_eval ? &eval : NULL,
            have_tokenizer ? &tokenizer : NULL, eot_token, &rng_state, &detector, &logger);
        if (step == max_steps) break;

        double start = now_seconds();
        gpt2_zero_grad(&model);
        int skip_update;
        float loss = train_accumulate(&train_model, &train_loader, &step_batches, grad_accum_steps,
                                      &skip_update);
        float norm = gpt2_grad_norm(&model);
        float grad_scale = gpt2_clip_scale(norm, grad_clip);
        float lr = lr_scheduler_get(&scheduler, step);
        adamw.learning_rate = lr;
        muon.learning_rate = lr_scheduler_get(&muon_scheduler, step);
        OutlierVerdict verdict = {NAN, NAN, 0, 0};
        if (skip_update) {
            printf("step %d: no trained target in the whole step: no update\n", step + 1);
        } else {
            verdict = train_guard_step(&detector, &opt, step, loss, norm);
            if (!outlier_verdict_skips(&verdict)) {
                gpt2_update(&model, &adamw, use_muon ? &muon : NULL, step + 1, grad_scale);
            }
        }
        train_report_step(&timer, &logger, step, start_step, max_steps, loss, lr, norm,
                          now_seconds() - start, tokens_per_step, "", &verdict);
    }
    train_report_done(&timer, tokens_per_step);

    logger_free(&logger);
    char device[64]; // DIR/report.md and DIR/loss.svg (llmc/report.h)
    snprintf(device, sizeof(device), "CPU, fp32, %d thread(s)", max_threads());
    RunReport report = train_report_init(&opt, &timer, &model.config, model.num_parameters, device,
                                         start_step, max_steps, 1, now_seconds() - run_start);
    train_report_finish(&report, 0);
    step_batches_free(&step_batches);
    dataloader_free(&train_loader);
    if (have_val) dataloader_free(&val_loader);
    if (have_eval) train_eval_free(&eval);
    if (have_tokenizer) tokenizer_free(&tokenizer);
    gpt2_free(&model);
    return 0;
}
#endif // TESTING
