// The cos/sin table of rotary position embeddings (RoPE, /work/notes/llama_spec.md), shared by the
// CPU and CUDA code so that both rotate by the same fp32 values: computed on the host in double and
// rounded once to float (a GPU's sinf/cosf of large arguments differ from the C library's; the
// table built here is uploaded as it is).
// Layout: maxT rows of HS floats, row pos = [cos(pos f_0) .. cos(pos f_{HS/2-1}) | sin(pos f_0) ..
// sin(pos f_{HS/2-1})], f_i = theta^(-2i / HS) (the half-split pairs (i, i + HS/2) of HuggingFace
// Llama's rotate_half).
#ifndef LLMC_ROPE_TABLE_H
#define LLMC_ROPE_TABLE_H

#include <math.h>
#include <stddef.h>

// table: maxT * HS floats; HS even.
static inline void rope_table_init(float *table, int maxT, int HS, double theta) {
    int half = HS / 2;
    for (int i = 0; i < half; i++) {
        double inv_freq = pow(theta, -2.0 * i / HS);
        for (int pos = 0; pos < maxT; pos++) {
            double angle = pos * inv_freq;
            table[(size_t)pos * HS + i] = (float)cos(angle);
            table[(size_t)pos * HS + half + i] = (float)sin(angle);
        }
    }
}

#endif // LLMC_ROPE_TABLE_H
