// Muon (MomentUm Orthogonalized by Newton-schulz) for the blocks' 2-D weight matrices, in fp32 on
// the CPU; AdamW keeps the rest (embeddings, output head, norms, biases). The definition both
// trainers and scripts/train_gpt2.py follow (docs/formats.md, "Optimizers"), per matrix W (R x Cc)
// with clipped gradient G:
//   buf = momentum * buf + G;  U = G + momentum * buf           (Nesterov)
//   X = U / (||U||_F + 1e-7), transposed when R > Cc so that X is wide
//   ns_steps times: A = X X^T;  B = b A + c A A;  X = a X + B X  (modded-nanogpt's quintic)
//   W *= 1 - lr * weight_decay;  W -= lr * max(1, R / Cc)^0.5 * X (transposed back)
// The momentum buffer lives in the AdamW m slot of the matrix (v stays 0), so a state file has the
// same layout whichever optimizer wrote it; its run record says which (llmc/checkpoint.h).
#ifndef LLMC_MUON_H
#define LLMC_MUON_H

#include <math.h>
#include <stddef.h>
#include <string.h>

#include "matmul.h"
#include "optimizer.h"
#include "utils.h"

// Scratch for the largest matrix of a model: X and the next X (rows*cols each), A and B (r*r,
// r = min(rows, cols)).
typedef struct {
    float *x, *x_next, *gram, *poly;
    size_t matrix_capacity, gram_capacity;
} MuonScratch;

static inline void muon_scratch_reserve(MuonScratch *s, int rows, int cols) {
    size_t elements = (size_t)rows * (size_t)cols;
    size_t short_side = (size_t)(rows < cols ? rows : cols);
    if (elements > s->matrix_capacity) {
        free(s->x);
        free(s->x_next);
        s->x = (float *)malloc_check(elements * sizeof(float), "Muon X");
        s->x_next = (float *)malloc_check(elements * sizeof(float), "Muon X next");
        s->matrix_capacity = elements;
    }
    if (short_side * short_side > s->gram_capacity) {
        free(s->gram);
        free(s->poly);
        s->gram = (float *)malloc_check(short_side * short_side * sizeof(float), "Muon A");
        s->poly = (float *)malloc_check(short_side * short_side * sizeof(float), "Muon B");
        s->gram_capacity = short_side * short_side;
    }
}

static inline void muon_scratch_free(MuonScratch *s) {
    free(s->x);
    free(s->x_next);
    free(s->gram);
    free(s->poly);
    memset(s, 0, sizeof(*s));
}

// ns_steps quintic Newton-Schulz iterations on X (r x c, r <= c, row-major) in s->x; the result is
// left in s->x. Every product goes through sgemm, so the result does not depend on the thread
// count.
static inline void muon_newton_schulz(MuonScratch *s, int r, int c, int ns_steps) {
    size_t rr = (size_t)r * r, rc = (size_t)r * c;
    for (int step = 0; step < ns_steps; step++) {
        float *x = s->x, *gram = s->gram, *poly = s->poly, *x_next = s->x_next;
        // A = X X^T (r x r): B(k, j) = X(j, k)
        sgemm(gram, (size_t)r, x, (size_t)c, 1, x, 1, (size_t)c, r, r, c, 0);
        // B = b A + c A A
        sgemm(poly, (size_t)r, gram, (size_t)r, 1, gram, (size_t)r, 1, r, r, r, 0);
#pragma omp parallel for
        for (size_t i = 0; i < rr; i++) poly[i] = MUON_NS_B * gram[i] + MUON_NS_C * poly[i];
            // X' = a X + B X
#pragma omp parallel for
        for (size_t i = 0; i < rc; i++) x_next[i] = MUON_NS_A * x[i];
        sgemm(x_next, (size_t)c, poly, (size_t)r, 1, x, (size_t)c, 1, r, c, r, 1);
        s->x = x_next;
        s->x_next = x;
    }
}

// One Muon step of the matrix param (rows x cols) with gradient grad * grad_scale (the clip), which
// it clears, and momentum buffer buf.
static inline void muon_update_matrix(float *param, float *grad, float *buf, int rows, int cols,
                                      float grad_scale, const MuonConfig *config, MuonScratch *s) {
    size_t n = (size_t)rows * cols;
    int transposed = rows > cols; // work on the wide orientation: A is the short side squared
    int r = transposed ? cols : rows, c = transposed ? rows : cols;
    muon_scratch_reserve(s, rows, cols);
    float momentum = config->momentum;
    float *u = s->x;
#pragma omp parallel for
    for (int i = 0; i < rows; i++) {
        for (int j = 0; j < cols; j++) {
            size_t at = (size_t)i * cols + j;
            float g = grad[at] * grad_scale;
            grad[at] = 0.0f; // consumed, as AdamW's loop does
            buf[at] = momentum * buf[at] + g;
            u[transposed ? (size_t)j * rows + i : at] = g + momentum * buf[at];
        }
    }
    double sum_squares = 0.0; // in order, in double: thread-count independent and exact enough
    for (size_t i = 0; i < n; i++) sum_squares += (double)u[i] * u[i];
    float inv_norm = 1.0f / ((float)sqrt(sum_squares) + MUON_NORM_EPS);
#pragma omp parallel for
    for (size_t i = 0; i < n; i++) u[i] *= inv_norm;
    muon_newton_schulz(s, r, c, config->ns_steps);
    const float *x = s->x;
    float decay = 1.0f - config->learning_rate * config->weight_decay;
    float aspect = (float)rows / (float)cols;
    float step_size = config->learning_rate * sqrtf(aspect > 1.0f ? aspect : 1.0f);
#pragma omp parallel for
    for (int i = 0; i < rows; i++) {
        for (int j = 0; j < cols; j++) {
            size_t at = (size_t)i * cols + j;
            param[at] *= decay;
            param[at] -= step_size * x[transposed ? (size_t)j * rows + i : at];
        }
    }
}

#endif // LLMC_MUON_H
