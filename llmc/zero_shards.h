// ZeRO-1's ranges (train_gpt2cu -z 1, docs/multi_gpu.md): rank r of P keeps the optimizer state
// and master weights of the contiguous range [offsets[r], offsets[r+1]) of the flat parameter
// vector (padded to a multiple of P). With AdamW the ranges are equal, S = padded / P, whatever
// they cut (AdamW is elementwise). Muon orthogonalises whole matrices, so with --optimizer muon
// every cut that would fall inside one of the blocks' matrices (gpt2_block_matrix_shape) moves to
// the nearer end of that matrix: each matrix then has exactly one owner, which reduces its
// gradient, keeps its momentum, runs Newton-Schulz and broadcasts it. The ranks' sizes then differ
// by at most one matrix from S. A function of the model's shape and P only, so a resumed run
// (the same P, refused otherwise) cuts the same ranges.
#ifndef LLMC_ZERO_SHARDS_H
#define LLMC_ZERO_SHARDS_H

#include <stddef.h>

#include "model_config.h"

// The Muon matrix that contains element `at` strictly inside it (not at its first element):
// returns 1 and its [*begin, *end); 0 if none does.
static inline int zero_shard_matrix_around(const GPT2Config *config, size_t at, size_t *begin,
                                           size_t *end) {
    size_t sizes[NUM_PARAMETER_TENSORS];
    gpt2_parameter_sizes(config, sizes);
    size_t offset = 0;
    for (int k = 0; k < NUM_PARAMETER_TENSORS; k++) {
        BlockMatrixShape shape;
        size_t tensor_begin = offset;
        offset += sizes[k];
        if (at <= tensor_begin || at >= offset) continue;
        if (!gpt2_block_matrix_shape(config, k, &shape)) return 0;
        size_t matrix = (size_t)shape.rows * (size_t)shape.cols;
        *begin = tensor_begin + (at - tensor_begin) / matrix * matrix;
        *end = *begin + matrix;
        return *begin != at;
    }
    return 0;
}

// offsets[0..processes]: rank r's range is [offsets[r], offsets[r+1]); padded is a multiple of
// processes. whole_matrices: --optimizer muon (cuts moved to matrix boundaries, ties to the
// start). Moving each cut to its nearer boundary keeps the cuts in order, so no range is
// negative; one may be empty when P is large against a matrix.
static inline void zero_shard_ranges(const GPT2Config *config, size_t padded, int processes,
                                     int whole_matrices, size_t *offsets) {
    size_t equal = padded / (size_t)processes;
    offsets[0] = 0;
    offsets[processes] = padded;
    for (int r = 1; r < processes; r++) {
        size_t cut = (size_t)r * equal, begin, end;
        if (whole_matrices && zero_shard_matrix_around(config, cut, &begin, &end)) {
            cut = cut - begin <= end - cut ? begin : end;
        }
        offsets[r] = cut;
    }
}

// How many of the blocks' Muon matrices lie in [begin, end), and their elements (for the memory
// plan). A matrix that straddles an end counts as not owned.
static inline void zero_shard_muon_matrices(const GPT2Config *config, size_t begin, size_t end,
                                            int *matrices, size_t *elements) {
    size_t sizes[NUM_PARAMETER_TENSORS];
    gpt2_parameter_sizes(config, sizes);
    *matrices = 0;
    *elements = 0;
    size_t offset = 0;
    for (int k = 0; k < NUM_PARAMETER_TENSORS; k++) {
        BlockMatrixShape shape;
        size_t tensor_begin = offset;
        offset += sizes[k];
        if (!gpt2_block_matrix_shape(config, k, &shape)) continue;
        size_t matrix = (size_t)shape.rows * (size_t)shape.cols;
        for (int l = 0; l < shape.layers; l++) {
            size_t at = tensor_begin + (size_t)l * matrix;
            if (at >= begin && at + matrix <= end) {
                (*matrices)++;
                *elements += matrix;
            }
        }
    }
}

#endif // LLMC_ZERO_SHARDS_H
