// Sampling the next token from logits: temperature, optional top-k, from a xorshift generator.
#ifndef LLMC_SAMPLER_H
#define LLMC_SAMPLER_H

#include <math.h>
#include <stdint.h>
#include <stdlib.h>

#include "rand.h"

// logits: (n) raw scores, only the first n (= V, never the padding) are considered.
// temperature <= 0 means argmax. top_k <= 0 means no top-k cut. work: n floats of scratch.
static inline int sample_token(const float *logits, int n, float temperature, int top_k,
                               uint64_t *rng_state, float *work) {
    int best = 0;
    for (int i = 1; i < n; i++) {
        if (logits[i] > logits[best]) best = i;
    }
    if (temperature <= 0.0f) {
        return best;
    }
    float threshold = -INFINITY;
    if (top_k > 0 && top_k < n) {
        // the k-th largest logit, by repeated max over a copy (k is small)
        for (int i = 0; i < n; i++) work[i] = logits[i];
        for (int k = 0; k < top_k; k++) {
            int arg = 0;
            for (int i = 1; i < n; i++) {
                if (work[i] > work[arg]) arg = i;
            }
            threshold = work[arg];
            work[arg] = -INFINITY;
        }
    }
    double sum = 0.0;
    for (int i = 0; i < n; i++) {
        work[i] = logits[i] >= threshold ? expf((logits[i] - logits[best]) / temperature) : 0.0f;
        sum += work[i];
    }
    double coin = (double)xorshift_f32(rng_state) * sum;
    double cumulative = 0.0;
    for (int i = 0; i < n; i++) {
        cumulative += work[i];
        if (coin < cumulative) {
            return i;
        }
    }
    return best; // rounding left the coin past the end
}

typedef struct {
    float probability;
    int index;
} SamplerCandidate;

static inline int sampler_candidate_descending(const void *a, const void *b) {
    float pa = ((const SamplerCandidate *)a)->probability;
    float pb = ((const SamplerCandidate *)b)->probability;
    if (pa != pb) return pa < pb ? 1 : -1;
    return ((const SamplerCandidate *)a)->index - ((const SamplerCandidate *)b)->index;
}

// As sample_token, then nucleus (top-p) sampling: only the most likely tokens whose probabilities
// sum to top_p are kept (top_p >= 1: no cut). candidates: n entries of scratch.
static inline int sample_token_top_p(const float *logits, int n, float temperature, int top_k,
                                     float top_p, uint64_t *rng_state, float *work,
                                     SamplerCandidate *candidates) {
    if (temperature <= 0.0f || top_p >= 1.0f) {
        return sample_token(logits, n, temperature, top_k, rng_state, work);
    }
    int best = 0;
    for (int i = 1; i < n; i++) {
        if (logits[i] > logits[best]) best = i;
    }
    double sum = 0.0;
    for (int i = 0; i < n; i++) {
        work[i] = expf((logits[i] - logits[best]) / temperature);
        sum += work[i];
    }
    // probabilities below (1 - top_p) / n cannot be needed to reach top_p: leave them unsorted
    float cutoff = (float)((1.0 - top_p) / (double)n);
    int count = 0;
    for (int i = 0; i < n; i++) {
        float p = (float)(work[i] / sum);
        if (p >= cutoff) candidates[count++] = (SamplerCandidate){p, i};
    }
    qsort(candidates, (size_t)count, sizeof(SamplerCandidate), sampler_candidate_descending);
    if (top_k > 0 && top_k < count) count = top_k;
    double kept = 0.0;
    int last = 0;
    for (; last < count; last++) {
        kept += candidates[last].probability;
        if (kept >= top_p) break;
    }
    if (last == count) last = count - 1;
    double coin = (double)xorshift_f32(rng_state) * kept, cumulative = 0.0;
    for (int k = 0; k <= last; k++) {
        cumulative += candidates[k].probability;
        if (coin < cumulative) return candidates[k].index;
    }
    return candidates[last].index;
}

#endif // LLMC_SAMPLER_H
