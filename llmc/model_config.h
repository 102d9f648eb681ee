// Model shapes (GPT-2, and the llama family: RMSNorm, RoPE, SwiGLU, GQA, optional QK-norm, untied
// head), the tables of their parameter tensors, model descriptors (d12, L=..,C=.., arch=llama,..)
// and the random initialisation that equals our PyTorch reference's for the same seed.
// Shared by the CPU and CUDA trainers: the parameter layout is the checkpoint layout.
#ifndef LLMC_MODEL_CONFIG_H
#define LLMC_MODEL_CONFIG_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rand.h"
#include "utils.h"

typedef struct {
    int max_seq_len;       // maxT: rows of wpe
    int vocab_size;        // V: real tokens
    int padded_vocab_size; // Vp: rows of wte, V rounded up (to 128) so matmuls see aligned shapes
    int num_layers;        // L
    int num_heads;         // NH
    int channels;          // C
    // the llama family (arch MODEL_ARCH_LLAMA); all 0 for GPT-2
    int arch;         // MODEL_ARCH_GPT2 or MODEL_ARCH_LLAMA
    int num_kv_heads; // KV: key/value heads (grouped-query attention), NH % KV == 0
    int ffn;          // SwiGLU hidden width
    int qknorm;       // 1: RMSNorm over each head of q and k before RoPE
    float rope_theta; // RoPE base
} GPT2Config;

#define MODEL_ARCH_GPT2 0
#define MODEL_ARCH_LLAMA 1

// The most tensors of any architecture: the arrays of per-tensor sizes have this length; the
// tensors an architecture does not have are 0 elements at the end (llama: 11, then 5 empty).
#define NUM_PARAMETER_TENSORS 16
#define NUM_LLAMA_TENSORS 11

// The largest shape a model file or descriptor may have (docs/formats.md): far beyond any GPT-2-
// class model (GPT-3 175B: L 96, C 12288, NH 96), small enough that every size derived from them
// (parameters, bytes, activations for B*T <= 2^31 tokens) fits in 64 bits. A crafted header is
// refused before anything is allocated from it.
#define GPT2_MAX_SEQ_LEN 1048576 // maxT (2^20)
#define GPT2_MAX_VOCAB 16777216  // V and Vp (2^24, the tokenizer's limit too)
#define GPT2_MAX_LAYERS 1024     // L
#define GPT2_MAX_HEADS 1024      // NH
#define GPT2_MAX_CHANNELS 65536  // C
#define LLAMA_MAX_FFN 262144     // ffn (4 x the largest C)
#define LLAMA_MAX_ROPE_THETA 1e9 // rope_theta (Llama 3: 500000)
#define GPT2_STRINGIFY_(x) #x
#define GPT2_STRINGIFY(x) GPT2_STRINGIFY_(x)

static const char *const parameter_tensor_names[NUM_PARAMETER_TENSORS] = {
    "wte",  "wpe",  "ln1w", "ln1b", "qkvw",    "qkvb",    "attprojw", "attprojb",
    "ln2w", "ln2b", "fcw",  "fcb",  "fcprojw", "fcprojb", "lnfw",     "lnfb"};

static const char *const llama_tensor_names[NUM_LLAMA_TENSORS] = {
    "wte",   "rms1w", "qkvw",    "qnormw", "knormw", "attprojw",
    "rms2w", "fcw",   "fcprojw", "rmsfw",  "lm_head"};

static inline int model_num_tensors(const GPT2Config *config) {
    return config->arch == MODEL_ARCH_LLAMA ? NUM_LLAMA_TENSORS : NUM_PARAMETER_TENSORS;
}

static inline const char *model_tensor_name(const GPT2Config *config, int tensor_index) {
    return config->arch == MODEL_ARCH_LLAMA ? llama_tensor_names[tensor_index]
                                            : parameter_tensor_names[tensor_index];
}

// The llama family's head size and width of one token's q, k, v row: [NH*HS | KV*HS | KV*HS].
static inline int llama_head_size(const GPT2Config *config) {
    return config->channels / config->num_heads;
}
static inline int llama_qkv_width(const GPT2Config *config) {
    return (config->num_heads + 2 * config->num_kv_heads) * llama_head_size(config);
}

// Element counts of the 16 tensors, in checkpoint order. The products are checked: a shape that
// passed gpt2_config_problem cannot overflow them, but a wrapped count would pass a file's length
// check with a tiny file.
static inline void llama_parameter_sizes(const GPT2Config *config,
                                         size_t sizes[NUM_PARAMETER_TENSORS]) {
    const char *what = "model shape: parameter count";
    size_t Vp = (size_t)config->padded_vocab_size;
    size_t C = (size_t)config->channels;
    size_t L = (size_t)config->num_layers;
    size_t HS = (size_t)llama_head_size(config);
    size_t QKV = (size_t)llama_qkv_width(config);
    size_t F = (size_t)config->ffn;
    size_t LC = size_mul_check(L, C, what);
    memset(sizes, 0, NUM_PARAMETER_TENSORS * sizeof(size_t));
    sizes[0] = size_mul_check(Vp, C, what);                           // wte
    sizes[1] = LC;                                                    // rms1w
    sizes[2] = size_mul_check(size_mul_check(L, QKV, what), C, what); // qkvw
    sizes[3] = config->qknorm ? size_mul_check(L, HS, what) : 0;      // qnormw
    sizes[4] = sizes[3];                                              // knormw
    sizes[5] = size_mul_check(LC, C, what);                           // attprojw
    sizes[6] = LC;                                                    // rms2w
    sizes[7] = size_mul_check(size_mul_check(LC, 2, what), F, what);  // fcw
    sizes[8] = size_mul_check(LC, F, what);                           // fcprojw
    sizes[9] = C;                                                     // rmsfw
    sizes[10] = sizes[0];                                             // lm_head
}

static inline void gpt2_parameter_sizes(const GPT2Config *config,
                                        size_t sizes[NUM_PARAMETER_TENSORS]) {
    if (config->arch == MODEL_ARCH_LLAMA) {
        llama_parameter_sizes(config, sizes);
        return;
    }
    const char *what = "model shape: parameter count";
    size_t Vp = (size_t)config->padded_vocab_size;
    size_t C = (size_t)config->channels;
    size_t maxT = (size_t)config->max_seq_len;
    size_t L = (size_t)config->num_layers;
    size_t LC = size_mul_check(L, C, what);
    size_t LCC = size_mul_check(LC, C, what);
    sizes[0] = size_mul_check(Vp, C, what);   // wte
    sizes[1] = size_mul_check(maxT, C, what); // wpe
    sizes[2] = LC;                            // ln1w
    sizes[3] = LC;                            // ln1b
    sizes[4] = size_mul_check(3, LCC, what);  // qkvw
    sizes[5] = size_mul_check(3, LC, what);   // qkvb
    sizes[6] = LCC;                           // attprojw
    sizes[7] = LC;                            // attprojb
    sizes[8] = LC;                            // ln2w
    sizes[9] = LC;                            // ln2b
    sizes[10] = size_mul_check(4, LCC, what); // fcw
    sizes[11] = size_mul_check(4, LC, what);  // fcb
    sizes[12] = size_mul_check(4, LCC, what); // fcprojw
    sizes[13] = LC;                           // fcprojb
    sizes[14] = C;                            // lnfw
    sizes[15] = C;                            // lnfb
}

static inline size_t gpt2_num_parameters(const GPT2Config *config) {
    size_t sizes[NUM_PARAMETER_TENSORS];
    gpt2_parameter_sizes(config, sizes);
    size_t total = 0;
    for (int i = 0; i < NUM_PARAMETER_TENSORS; i++) {
        total = size_add_check(total, sizes[i], "model shape: parameter count");
    }
    return total;
}

// Weight decay applies to the matrices only (wte, wpe, qkvw, attprojw, fcw, fcprojw).
static inline int gpt2_tensor_is_decayed(int tensor_index) {
    return tensor_index == 0 || tensor_index == 1 || tensor_index == 4 || tensor_index == 6 ||
           tensor_index == 10 || tensor_index == 12;
}

// The same for either architecture: llama decays wte, qkvw, attprojw, fcw, fcprojw and lm_head
// (its 2-D tensors; PyTorch's reference decays the parameters with dim 2).
static inline int model_tensor_is_decayed(const GPT2Config *config, int tensor_index) {
    if (config->arch != MODEL_ARCH_LLAMA) return gpt2_tensor_is_decayed(tensor_index);
    return tensor_index == 0 || tensor_index == 2 || tensor_index == 5 || tensor_index == 7 ||
           tensor_index == 8 || tensor_index == 10;
}

// SwiGLU's default hidden width: the multiple of 64 nearest 8C/3, ties up (8C/3/64 = C/24), at
// least 64.
static inline int llama_default_ffn(int channels) {
    long ffn = ((long)channels + 12) / 24 * 64;
    return ffn < 64 ? 64 : (int)ffn;
}

// The blocks' 2-D weight matrices, which Muon updates (llmc/muon.h): tensor k holds `layers`
// matrices of rows x cols each (nn.Linear's (out, in) layout). Returns 0 for every other tensor
// (embeddings, norms, biases: AdamW's).
typedef struct {
    int layers, rows, cols;
} BlockMatrixShape;

static inline int gpt2_block_matrix_shape(const GPT2Config *config, int tensor_index,
                                          BlockMatrixShape *shape) {
    int C = config->channels;
    shape->layers = config->num_layers;
    if (config->arch == MODEL_ARCH_LLAMA) {
        int HS = C / config->num_heads;
        switch (tensor_index) {
        case 2: // qkvw: NH query heads, KV key and KV value heads
            shape->rows = (config->num_heads + 2 * config->num_kv_heads) * HS;
            shape->cols = C;
            return 1;
        case 5: // attprojw
            shape->rows = C;
            shape->cols = C;
            return 1;
        case 7: // fcw: gate rows then up rows
            shape->rows = 2 * config->ffn;
            shape->cols = C;
            return 1;
        case 8: // fcprojw
            shape->rows = C;
            shape->cols = config->ffn;
            return 1;
        default: return 0;
        }
    }
    switch (tensor_index) {
    case 4: // qkvw
        shape->rows = 3 * C;
        shape->cols = C;
        return 1;
    case 6: // attprojw
        shape->rows = C;
        shape->cols = C;
        return 1;
    case 10: // fcw
        shape->rows = 4 * C;
        shape->cols = C;
        return 1;
    case 12: // fcprojw
        shape->rows = C;
        shape->cols = 4 * C;
        return 1;
    default: return 0;
    }
}

static inline int round_up_int(int value, int multiple) {
    return ((value + multiple - 1) / multiple) * multiple;
}

// Checks a shape for consistency; returns NULL if fine, else a description of the bad field.
// Each dimension is within its cap (GPT2_MAX_*).
static inline const char *gpt2_config_problem(const GPT2Config *c) {
#define GPT2_RANGE(field, name, max)                                                               \
    if (c->field <= 0 || c->field > max) return name " must be in 1.." GPT2_STRINGIFY(max)
    GPT2_RANGE(max_seq_len, "maxT", GPT2_MAX_SEQ_LEN);
    GPT2_RANGE(vocab_size, "V", GPT2_MAX_VOCAB);
    GPT2_RANGE(padded_vocab_size, "Vp", GPT2_MAX_VOCAB);
    GPT2_RANGE(num_layers, "L", GPT2_MAX_LAYERS);
    GPT2_RANGE(num_heads, "NH", GPT2_MAX_HEADS);
    GPT2_RANGE(channels, "C", GPT2_MAX_CHANNELS);
#undef GPT2_RANGE
    if (c->padded_vocab_size < c->vocab_size) return "Vp must be >= V";
    if (c->channels % c->num_heads != 0) return "C must be divisible by NH";
    if (c->arch == MODEL_ARCH_GPT2) {
        if (c->num_kv_heads != 0 || c->ffn != 0 || c->qknorm != 0 || c->rope_theta != 0.0f) {
            return "KV, ffn, qknorm and rope_theta are llama fields (arch=llama)";
        }
        return NULL;
    }
    if (c->arch != MODEL_ARCH_LLAMA) return "arch must be 0 (gpt2) or 1 (llama)";
    if (c->num_kv_heads <= 0 || c->num_kv_heads > c->num_heads) return "KV must be in 1..NH";
    if (c->num_heads % c->num_kv_heads != 0) return "NH must be divisible by KV";
    if ((c->channels / c->num_heads) % 2 != 0) return "the head size C/NH must be even (RoPE)";
    if (c->ffn <= 0 || c->ffn > LLAMA_MAX_FFN)
        return "ffn must be in 1.." GPT2_STRINGIFY(LLAMA_MAX_FFN);
    if (c->qknorm != 0 && c->qknorm != 1) return "qknorm must be 0 or 1";
    if (!(c->rope_theta >= 1.0f && c->rope_theta <= LLAMA_MAX_ROPE_THETA)) {
        return "rope_theta must be a number in 1..1e9";
    }
    return NULL;
}

// llm.c's named shapes (its train_gpt2.cu): GPT-2 by depth, "dN" / "gpt2:dN", maxT 1024 (d2 and
// d4 are ours, d60..d84 llm.c's unofficial large ones); GPT-3 by channels, "gpt3:cN", maxT 2048,
// heads = channels / head size. Both have V = 50257.
typedef struct {
    int key; // depth (GPT-2) or channels (GPT-3)
    int layers, channels, head_size_or_heads;
} NamedShape;

static const NamedShape gpt2_depth_shapes[] = {
    {2, 2, 128, 2},     {4, 4, 256, 4},     {6, 6, 384, 6},     {12, 12, 768, 12},
    {24, 24, 1024, 16}, {36, 36, 1280, 20}, {48, 48, 1600, 25}, {60, 60, 1920, 30},
    {72, 72, 2880, 30}, {84, 84, 3456, 36},
};

// Here the last field is the head size.
static const NamedShape gpt3_channel_shapes[] = {
    {384, 6, 384, 64},     {768, 12, 768, 64},    {1024, 24, 1024, 64},
    {1536, 24, 1536, 96},  {2048, 24, 2048, 128}, {2560, 32, 2560, 80},
    {4096, 32, 4096, 128}, {5140, 40, 5140, 128}, {12288, 96, 12288, 128},
};

// The number after prefix in d ("12" of "d12"), or -1 unless d is prefix and a plain decimal.
static inline long descriptor_number(const char *d, const char *prefix) {
    size_t n = strlen(prefix);
    if (strncmp(d, prefix, n) != 0 || d[n] < '0' || d[n] > '9') return -1;
    char *end = NULL;
    long value = strtol(d + n, &end, 10);
    return *end == '\0' ? value : -1;
}

// Parses a descriptor: "dN" / "gpt2:dN" (N in 2,4,6,12,24,36,48,60,72,84), "gpt3:cN" (N in 384,
// 768, 1024, 1536, 2048, 2560, 4096, 12288) or "L=2,C=64,NH=4,V=1000,maxT=128" (V defaults to
// 50257, maxT to 1024). Returns 1 on success, 0 if the string is not a descriptor (then it is a
// file path).
static inline int gpt2_config_from_descriptor(const char *descriptor, GPT2Config *config) {
    const char *d = descriptor;
    memset(config, 0, sizeof(*config));
    config->vocab_size = 50257;
    config->max_seq_len = 1024;
    long gpt3_channels = descriptor_number(d, "gpt3:c");
    if (strncmp(d, "gpt2:", 5) == 0) {
        d += 5;
    }
    long depth = descriptor_number(d, "d");
    if (depth >= 0) {
        const NamedShape *shape = NULL;
        for (size_t i = 0; i < sizeof(gpt2_depth_shapes) / sizeof(gpt2_depth_shapes[0]); i++) {
            if (gpt2_depth_shapes[i].key == depth) shape = &gpt2_depth_shapes[i];
        }
        if (shape == NULL) {
            fatal("model descriptor %s: unsupported depth %ld (use d2, d4, d6, d12, d24, d36, d48, "
                  "d60, d72, d84, gpt3:cN or L=..,C=..,NH=..,V=..,maxT=..)",
                  descriptor, depth);
        }
        config->num_layers = shape->layers;
        config->channels = shape->channels;
        config->num_heads = shape->head_size_or_heads;
    } else if (gpt3_channels >= 0) {
        const NamedShape *shape = NULL;
        for (size_t i = 0; i < sizeof(gpt3_channel_shapes) / sizeof(gpt3_channel_shapes[0]); i++) {
            if (gpt3_channel_shapes[i].key == gpt3_channels) shape = &gpt3_channel_shapes[i];
        }
        if (shape == NULL) {
            fatal("model descriptor %s: unsupported GPT-3 channels %ld (use gpt3:c384, c768, "
                  "c1024, c1536, c2048, c2560, c4096 or c12288)",
                  descriptor, gpt3_channels);
        }
        // llm.c lists 5140 channels with heads of 128 for its 13B, which do not divide; its
        // assert stops there too
        if (shape->channels % shape->head_size_or_heads != 0) {
            fatal("model descriptor %s: %d channels are not a multiple of the head size %d (as "
                  "in llm.c, whose table has this entry but refuses it)",
                  descriptor, shape->channels, shape->head_size_or_heads);
        }
        config->num_layers = shape->layers;
        config->channels = shape->channels;
        config->num_heads = shape->channels / shape->head_size_or_heads;
        config->max_seq_len = 2048;
    } else if (strchr(d, '=') != NULL) {
        char buffer[256];
        if (strlen(d) >= sizeof(buffer)) {
            fatal("model descriptor too long: %s", descriptor);
        }
        strcpy(buffer, d);
        int llama = 0, ffn_given = 0;
        for (char *item = strtok(buffer, ","); item != NULL; item = strtok(NULL, ",")) {
            char *eq = strchr(item, '=');
            if (eq == NULL) {
                fatal("model descriptor %s: bad item '%s' (expected KEY=value)", descriptor, item);
            }
            *eq = '\0';
            const char *value_text = eq + 1;
            if (strcmp(item, "arch") == 0) {
                if (strcmp(value_text, "llama") == 0) {
                    llama = 1;
                } else if (strcmp(value_text, "gpt2") != 0) {
                    fatal("model descriptor %s: arch: expected gpt2 or llama, found '%s'",
                          descriptor, value_text);
                }
                continue;
            }
            if (strcmp(item, "rope_theta") == 0) {
                char *end = NULL;
                double theta = strtod(value_text, &end);
                if (end == value_text || *end != '\0' || !(theta >= 1.0) ||
                    theta > LLAMA_MAX_ROPE_THETA) {
                    fatal(
                        "model descriptor %s: rope_theta: expected a number in 1..1e9, found '%s'",
                        descriptor, value_text);
                }
                config->rope_theta = (float)theta;
                continue;
            }
            char *end = NULL;
            long value = strtol(value_text, &end, 10);
            int is_qknorm = strcmp(item, "qknorm") == 0;
            if (end == value_text || *end != '\0' || value < (is_qknorm ? 0 : 1) ||
                value > (is_qknorm ? 1 : (1L << 30))) {
                fatal("model descriptor %s: bad value '%s' for %s (expected %s)", descriptor,
                      value_text, item, is_qknorm ? "0 or 1" : "a positive integer");
            }
            if (strcmp(item, "L") == 0)
                config->num_layers = (int)value;
            else if (strcmp(item, "C") == 0)
                config->channels = (int)value;
            else if (strcmp(item, "NH") == 0)
                config->num_heads = (int)value;
            else if (strcmp(item, "V") == 0)
                config->vocab_size = (int)value;
            else if (strcmp(item, "maxT") == 0)
                config->max_seq_len = (int)value;
            else if (strcmp(item, "KV") == 0)
                config->num_kv_heads = (int)value;
            else if (strcmp(item, "ffn") == 0)
                config->ffn = (int)value, ffn_given = 1;
            else if (is_qknorm)
                config->qknorm = (int)value;
            else
                fatal("model descriptor %s: unknown key '%s' (keys: L, C, NH, V, maxT; with "
                      "arch=llama also KV, ffn, rope_theta, qknorm)",
                      descriptor, item);
        }
        if (llama) {
            config->arch = MODEL_ARCH_LLAMA;
            if (config->num_kv_heads == 0) config->num_kv_heads = config->num_heads;
            if (!ffn_given && config->channels > 0) {
                config->ffn = llama_default_ffn(config->channels);
            }
            if (config->rope_theta == 0.0f) config->rope_theta = 10000.0f;
        }
    } else {
        return 0;
    }
    config->padded_vocab_size = round_up_int(config->vocab_size, 128);
    const char *problem = gpt2_config_problem(config);
    if (problem != NULL) {
        fatal("model descriptor %s: %s", descriptor, problem);
    }
    return 1;
}

// Fills params (laid out as in the checkpoint) with the initialisation our PyTorch reference uses:
// torch.manual_seed(seed), then normal_ on wte[:V], wpe, and per layer qkvw, attprojw, fcw,
// fcprojw (the two residual projections scaled by 1/sqrt(2L)); ones and zeros elsewhere.
// llama: normal_ on wte[:V], per layer qkvw, attprojw, fcw, fcprojw (the residual projections
// attprojw and fcprojw scaled by 1/sqrt(2L)), then lm_head[:V]; the norm weights are ones.
static inline void llama_init_params(const GPT2Config *config, float *params, uint32_t seed) {
    size_t sizes[NUM_PARAMETER_TENSORS];
    gpt2_parameter_sizes(config, sizes);
    float *tensors[NUM_PARAMETER_TENSORS];
    float *ptr = params;
    for (int i = 0; i < NUM_PARAMETER_TENSORS; i++) {
        tensors[i] = ptr;
        ptr += sizes[i];
    }
    size_t C = (size_t)config->channels, L = (size_t)config->num_layers;
    size_t QKV = (size_t)llama_qkv_width(config), F = (size_t)config->ffn;
    memset(params, 0, gpt2_num_parameters(config) * sizeof(float));
    const int ones[] = {1, 3, 4, 6, 9}; // rms1w, qnormw, knormw, rms2w, rmsfw
    for (int k = 0; k < 5; k++) {
        for (size_t i = 0; i < sizes[ones[k]]; i++) tensors[ones[k]][i] = 1.0f;
    }
    TorchGenerator gen;
    torch_manual_seed(&gen, seed);
    const double std = 0.02;
    const double residual_std = 0.02 / sqrt(2.0 * (double)L);
    torch_normal_(&gen, tensors[0], (size_t)config->vocab_size * C, 0.0, std);
    for (size_t l = 0; l < L; l++) {
        torch_normal_(&gen, tensors[2] + l * QKV * C, QKV * C, 0.0, std);
        torch_normal_(&gen, tensors[5] + l * C * C, C * C, 0.0, residual_std);
        torch_normal_(&gen, tensors[7] + l * 2 * F * C, 2 * F * C, 0.0, std);
        torch_normal_(&gen, tensors[8] + l * C * F, C * F, 0.0, residual_std);
    }
    torch_normal_(&gen, tensors[10], (size_t)config->vocab_size * C, 0.0, std);
}

static inline void gpt2_init_params(const GPT2Config *config, float *params, uint32_t seed) {
    if (config->arch == MODEL_ARCH_LLAMA) {
        llama_init_params(config, params, seed);
        return;
    }
    size_t sizes[NUM_PARAMETER_TENSORS];
    gpt2_parameter_sizes(config, sizes);
    float *tensors[NUM_PARAMETER_TENSORS];
    float *ptr = params;
    for (int i = 0; i < NUM_PARAMETER_TENSORS; i++) {
        tensors[i] = ptr;
        ptr += sizes[i];
    }
    size_t C = (size_t)config->channels;
    size_t L = (size_t)config->num_layers;
    memset(params, 0, gpt2_num_parameters(config) * sizeof(float));
    const int ones[] = {2, 8, 14}; // ln1w, ln2w, lnfw
    for (int k = 0; k < 3; k++) {
        for (size_t i = 0; i < sizes[ones[k]]; i++) {
            tensors[ones[k]][i] = 1.0f;
        }
    }
    TorchGenerator gen;
    torch_manual_seed(&gen, seed);
    const double std = 0.02;
    const double residual_std = 0.02 / sqrt(2.0 * (double)L);
    torch_normal_(&gen, tensors[0], (size_t)config->vocab_size * C, 0.0, std);
    torch_normal_(&gen, tensors[1], sizes[1], 0.0, std);
    for (size_t l = 0; l < L; l++) {
        torch_normal_(&gen, tensors[4] + l * 3 * C * C, 3 * C * C, 0.0, std);
        torch_normal_(&gen, tensors[6] + l * C * C, C * C, 0.0, residual_std);
        torch_normal_(&gen, tensors[10] + l * 4 * C * C, 4 * C * C, 0.0, std);
        torch_normal_(&gen, tensors[12] + l * 4 * C * C, 4 * C * C, 0.0, residual_std);
    }
}

// Grows a model's vocabulary to vocab_size (at most Vp) for the chat tokens of SFT data, which
// sit in the padded rows of wte. Rows that the model never used are still zero there; they start
// as the mean of the real token rows, so the new tokens' logits begin at an average token's level
// and their input embeddings at the centre of the others, not at the origin. Rows that are not all
// zero (a model fine-tuned before) are kept.
// llama grows its untied output head (lm_head, the last tensor) the same way.
static inline int grow_vocab_rows(float *wte, int old_V, int vocab_size, int C) {
    double *mean = (double *)calloc_check((size_t)C, sizeof(double), "mean embedding");
    for (int v = 0; v < old_V; v++) {
        for (int i = 0; i < C; i++) mean[i] += wte[(size_t)v * C + i];
    }
    int initialised = 0;
    for (int v = old_V; v < vocab_size; v++) {
        float *row = wte + (size_t)v * C;
        int unused = 1;
        for (int i = 0; i < C && unused; i++) unused = fabsf(row[i]) < 1e-12f;
        if (!unused) continue;
        for (int i = 0; i < C; i++) row[i] = (float)(mean[i] / old_V);
        initialised++;
    }
    free(mean);
    return initialised;
}

static inline void gpt2_grow_vocab_params(GPT2Config *cfg, float *params, int vocab_size) {
    int old_V = cfg->vocab_size, C = cfg->channels;
    if (vocab_size <= old_V) return;
    if (vocab_size > cfg->padded_vocab_size) {
        fatal("the data needs V=%d tokens but the model has only Vp=%d embedding rows", vocab_size,
              cfg->padded_vocab_size);
    }
    int initialised = grow_vocab_rows(params, old_V, vocab_size, C); // wte is the first tensor
    if (cfg->arch == MODEL_ARCH_LLAMA) {
        size_t sizes[NUM_PARAMETER_TENSORS], offset = 0;
        gpt2_parameter_sizes(cfg, sizes);
        for (int k = 0; k < NUM_LLAMA_TENSORS - 1; k++) offset += sizes[k];
        grow_vocab_rows(params + offset, old_V, vocab_size, C);
    }
    cfg->vocab_size = vocab_size;
    printf("vocab: V %d -> %d for the chat tokens; %d unused row(s) set to the mean embedding\n",
           old_V, vocab_size, initialised);
}

static inline void gpt2_config_print(const GPT2Config *config, size_t num_parameters) {
    if (config->arch == MODEL_ARCH_LLAMA) {
        printf("model: arch=llama L=%d C=%d NH=%d KV=%d ffn=%d qknorm=%d rope_theta=%g V=%d Vp=%d "
               "maxT=%d, %.2fM parameters\n",
               config->num_layers, config->channels, config->num_heads, config->num_kv_heads,
               config->ffn, config->qknorm, (double)config->rope_theta, config->vocab_size,
               config->padded_vocab_size, config->max_seq_len, (double)num_parameters / 1e6);
        return;
    }
    printf("model: L=%d C=%d NH=%d V=%d Vp=%d maxT=%d, %.2fM parameters\n", config->num_layers,
           config->channels, config->num_heads, config->vocab_size, config->padded_vocab_size,
           config->max_seq_len, (double)num_parameters / 1e6);
}

// For a program that runs GPT-2 only: one line naming the
// model and the field, exit 1.
static inline void model_config_require_gpt2(const GPT2Config *config, const char *path,
                                             const char *program) {
    if (config->arch != MODEL_ARCH_GPT2) {
        fatal("%s: arch llama (model-file version 6/7, header[8] = %d) is not supported by %s yet",
              path, config->arch, program);
    }
}

#endif // LLMC_MODEL_CONFIG_H
