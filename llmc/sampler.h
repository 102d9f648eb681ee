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

#endif // LLMC_SAMPLER_H
