// llm.c-compatible binary files: model checkpoints (v3 fp32, v5 bf16) and debug states.
// Each reader validates magic, version and sizes against the file length and names the file and
// field in its error. docs/formats.md describes every layout.
#ifndef LLMC_FORMATS_H
#define LLMC_FORMATS_H

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "model_config.h"
#include "utils.h"

#define HEADER_INTS 256
#define HEADER_BYTES (HEADER_INTS * sizeof(int32_t))

#define MODEL_MAGIC 20240326
#define MODEL_VERSION_FP32 3
#define MODEL_VERSION_BF16 5
#define MODEL_VERSION_LLAMA_FP32                                                                   \
    6 // the llama family (docs/formats.md): header[8..12] say its shape
#define MODEL_VERSION_LLAMA_BF16 7
#define MODEL_SLOT_ARCH 8
#define MODEL_SLOT_KV 9
#define MODEL_SLOT_FFN 10
#define MODEL_SLOT_QKNORM 11
#define MODEL_SLOT_ROPE_THETA 12 // float bits

static inline int model_version_is_fp32(int version) {
    return version == MODEL_VERSION_FP32 || version == MODEL_VERSION_LLAMA_FP32;
}
#define DEBUG_STATE_MAGIC 20240327
#define DEBUG_STATE_VERSION 2
#define TOKENIZER_MAGIC 20240328
#define DATA_MAGIC_U16 20240520
#define DATA_VERSION_U16 1
#define DATA_MAGIC_U32 20240801
#define DATA_VERSION_U32 7
#define EVAL_MAGIC 20240522
#define STATE_MAGIC 20240527
#define STATE_VERSION 1

static inline void read_header(FILE *file, const char *path, int32_t header[HEADER_INTS]) {
    fread_check(header, sizeof(int32_t), HEADER_INTS, file, path, "header (256 int32)");
}

// Checksum of our model and state files (docs/formats.md): header[254] = CHECKSUM_CRC32C ("C32C")
// says header[255] holds the CRC-32C of the bytes after the header followed by the header itself
// with header[255] read as 0. llm.c leaves both slots at 0 and never reads them; 0 means no
// checksum (llm.c's files, our reference script's), so such files still load. The kind is not a
// 0/1 flag, so one flipped bit cannot turn the check off.
#define CHECKSUM_KIND_SLOT 254
#define CHECKSUM_VALUE_SLOT 255
#define CHECKSUM_CRC32C 0x43323343

// Whether the file of header carries a checksum (exits on an unknown kind).
static inline int header_has_checksum(const int32_t header[HEADER_INTS], const char *path) {
    int32_t kind = header[CHECKSUM_KIND_SLOT];
    if (kind == 0) return 0;
    if (kind != CHECKSUM_CRC32C) {
        fatal("%s: header[254] (checksum kind): expected 0 (none) or %d (CRC-32C), found %d", path,
              CHECKSUM_CRC32C, kind);
    }
    return 1;
}

// The checksum of a file whose bytes after the header give payload_crc.
static inline uint32_t header_checksum(const int32_t header[HEADER_INTS], uint32_t payload_crc) {
    int32_t copy[HEADER_INTS];
    memcpy(copy, header, HEADER_BYTES);
    copy[CHECKSUM_VALUE_SLOT] = 0;
    return crc32c_update(payload_crc, copy, HEADER_BYTES);
}

static inline void header_checksum_verify(const int32_t header[HEADER_INTS], uint32_t payload_crc,
                                          const char *path) {
    uint32_t want = (uint32_t)header[CHECKSUM_VALUE_SLOT],
             got = header_checksum(header, payload_crc);
    if (got != want) {
        fatal("%s: header[255] (CRC-32C checksum): expected 0x%08x for the file's contents, found "
              "0x%08x: the file is corrupt",
              path, got, want);
    }
}

// A writer's last step before atomic_commit: header (as written at the start of file, with
// header[254] = CHECKSUM_CRC32C) gets its checksum in header[255], in memory and in the file.
static inline void header_checksum_write(FILE *file, const char *path, int32_t header[HEADER_INTS],
                                         uint32_t payload_crc) {
    header[CHECKSUM_VALUE_SLOT] = (int32_t)header_checksum(header, payload_crc);
    fseek_check(file, (long)(CHECKSUM_VALUE_SLOT * sizeof(int32_t)), SEEK_SET, path);
    fwrite_check(&header[CHECKSUM_VALUE_SLOT], sizeof(int32_t), 1, file, path);
}

// Reads a model header and checks it; fills config and returns the version (3 or 5).
// Opens a tokenizer file and reads its header, checking the size and magic; the version and the
// rest are the caller's (decoding takes v1 or v2, encoding needs v2 with merges).
static inline FILE *tokenizer_file_open(const char *path, int32_t header[HEADER_INTS],
                                        size_t *file_size) {
    FILE *file = fopen_check(path, "rb");
    *file_size = file_size_check(file, path);
    if (*file_size < HEADER_BYTES) {
        fatal("%s: not a tokenizer file: %zu bytes, shorter than the 1024-byte header", path,
              *file_size);
    }
    read_header(file, path, header);
    if (header[0] != TOKENIZER_MAGIC) {
        fatal("%s: bad magic %d in header[0], expected %d (tokenizer file)", path, header[0],
              TOKENIZER_MAGIC);
    }
    return file;
}

static inline int model_read_header(FILE *file, const char *path, GPT2Config *config) {
    size_t file_size = file_size_check(file, path);
    if (file_size < HEADER_BYTES) {
        fatal("%s: not a model file: %zu bytes, shorter than the 1024-byte header", path,
              file_size);
    }
    int32_t header[HEADER_INTS];
    read_header(file, path, header);
    if (header[0] != MODEL_MAGIC) {
        fatal("%s: bad magic %d in header[0], expected %d (model file)", path, header[0],
              MODEL_MAGIC);
    }
    int version = header[1];
    memset(config, 0, sizeof(*config));
    if (version == MODEL_VERSION_LLAMA_FP32 || version == MODEL_VERSION_LLAMA_BF16) {
        if (header[MODEL_SLOT_ARCH] != MODEL_ARCH_LLAMA) {
            fatal("%s: header[8] (arch): expected 1 (llama) in a version-%d model, found %d", path,
                  version, header[MODEL_SLOT_ARCH]);
        }
        config->arch = MODEL_ARCH_LLAMA;
        config->num_kv_heads = header[MODEL_SLOT_KV];
        config->ffn = header[MODEL_SLOT_FFN];
        config->qknorm = header[MODEL_SLOT_QKNORM];
        config->rope_theta = int_bits_to_float(header[MODEL_SLOT_ROPE_THETA]);
    } else if (version != MODEL_VERSION_FP32 && version != MODEL_VERSION_BF16) {
        fatal("%s: unsupported model version %d in header[1], expected 3 (fp32), 5 (bf16), 6 "
              "(llama fp32) or 7 (llama bf16)",
              path, version);
    }
    config->max_seq_len = header[2];
    config->vocab_size = header[3];
    config->num_layers = header[4];
    config->num_heads = header[5];
    config->channels = header[6];
    config->padded_vocab_size = header[7];
    const char *problem = gpt2_config_problem(config);
    if (problem != NULL && config->arch == MODEL_ARCH_LLAMA) {
        fatal("%s: bad model header (header[2..12]: maxT=%d V=%d L=%d NH=%d C=%d Vp=%d KV=%d "
              "ffn=%d qknorm=%d rope_theta=%g): %s",
              path, config->max_seq_len, config->vocab_size, config->num_layers, config->num_heads,
              config->channels, config->padded_vocab_size, config->num_kv_heads, config->ffn,
              config->qknorm, (double)config->rope_theta, problem);
    }
    if (problem != NULL) {
        fatal("%s: bad model header (header[2..7]: maxT=%d V=%d L=%d NH=%d C=%d Vp=%d): %s", path,
              config->max_seq_len, config->vocab_size, config->num_layers, config->num_heads,
              config->channels, config->padded_vocab_size, problem);
    }
    header_has_checksum(header, path); // an unknown kind fails here, before any allocation
    // within the caps above these cannot overflow; checked all the same
    size_t bytes_per_param = model_version_is_fp32(version) ? 4 : 2;
    size_t expected = size_add_check(
        HEADER_BYTES, size_mul_check(gpt2_num_parameters(config), bytes_per_param, path), path);
    if (file_size != expected) {
        fatal("%s: file is %zu bytes, expected %zu for a version-%d model with this header "
              "(truncated or corrupt)",
              path, file_size, expected, version);
    }
    return version;
}

// Loads parameters into params (fp32, num_parameters long), converting bf16 if needed, after
// model_read_header; verifies the file's checksum when it has one.
static inline void model_read_params(FILE *file, const char *path, int version, float *params,
                                     size_t num_parameters) {
    int32_t header[HEADER_INTS]; // read again: the checksum covers it too
    fseek_check(file, 0, SEEK_SET, path);
    read_header(file, path, header);
    int checksum = header_has_checksum(header, path);
    uint32_t crc = 0;
    if (model_version_is_fp32(version)) {
        fread_check(params, sizeof(float), num_parameters, file, path, "parameters");
        if (checksum) crc = crc32c_update(0, params, num_parameters * sizeof(float));
    } else {
        const size_t chunk = 1 << 20;
        uint16_t *buffer = (uint16_t *)malloc_check(chunk * sizeof(uint16_t), "bf16 read buffer");
        for (size_t done = 0; done < num_parameters; done += chunk) {
            size_t count = num_parameters - done < chunk ? num_parameters - done : chunk;
            fread_check(buffer, sizeof(uint16_t), count, file, path, "bf16 parameters");
            if (checksum) crc = crc32c_update(crc, buffer, count * sizeof(uint16_t));
            for (size_t i = 0; i < count; i++) {
                params[done + i] = bf16_to_float(buffer[i]);
            }
        }
        free(buffer);
    }
    if (checksum) header_checksum_verify(header, crc, path);
}

// Writes a model checkpoint atomically; version 3 (fp32) or 5 (bf16), which a llama-family model
// writes as 6 or 7 with its shape in header[8..12].
static inline void model_write(const char *path, const GPT2Config *config, const float *params,
                               int version) {
    int32_t header[HEADER_INTS];
    memset(header, 0, sizeof(header));
    int fp32 = model_version_is_fp32(version);
    if (config->arch == MODEL_ARCH_LLAMA) {
        version = fp32 ? MODEL_VERSION_LLAMA_FP32 : MODEL_VERSION_LLAMA_BF16;
        header[MODEL_SLOT_ARCH] = MODEL_ARCH_LLAMA;
        header[MODEL_SLOT_KV] = config->num_kv_heads;
        header[MODEL_SLOT_FFN] = config->ffn;
        header[MODEL_SLOT_QKNORM] = config->qknorm;
        header[MODEL_SLOT_ROPE_THETA] = float_to_int_bits(config->rope_theta);
    }
    header[0] = MODEL_MAGIC;
    header[1] = version;
    header[2] = config->max_seq_len;
    header[3] = config->vocab_size;
    header[4] = config->num_layers;
    header[5] = config->num_heads;
    header[6] = config->channels;
    header[7] = config->padded_vocab_size;
    header[CHECKSUM_KIND_SLOT] = CHECKSUM_CRC32C;
    size_t num_parameters = gpt2_num_parameters(config);
    uint32_t crc = 0;
    AtomicFile out;
    atomic_open(&out, path);
    fwrite_check(header, sizeof(int32_t), HEADER_INTS, out.file, path);
    if (fp32) {
        fwrite_crc(params, sizeof(float), num_parameters, out.file, path, &crc);
    } else {
        const size_t chunk = 1 << 20;
        uint16_t *buffer = (uint16_t *)malloc_check(chunk * sizeof(uint16_t), "bf16 write buffer");
        for (size_t done = 0; done < num_parameters; done += chunk) {
            size_t count = num_parameters - done < chunk ? num_parameters - done : chunk;
            for (size_t i = 0; i < count; i++) {
                buffer[i] = float_to_bf16(params[done + i]);
            }
            fwrite_crc(buffer, sizeof(uint16_t), count, out.file, path, &crc);
        }
        free(buffer);
    }
    header_checksum_write(out.file, path, header, crc);
    atomic_commit(&out);
}

// A reference dump written by scripts/train_gpt2.py (or llm.c's), for test_gpt2.
typedef struct {
    int B, T, V;
    int *inputs;   // (B, T)
    int *targets;  // (B, T)
    float *logits; // (B, T, V)
    float loss;
    float *grads;       // num_parameters, checkpoint layout
    int n_steps;        // reference AdamW step losses (0 in llm.c's files)
    float *step_losses; // (n_steps)
    float lr, beta1, beta2, eps, weight_decay, grad_clip;
    // our extension: header[11] = 1 when the loss is masked (SFT); NULL otherwise
    unsigned char *target_mask; // (B, T) 1: the target counts in the loss
    // our extension: header[12] = 1 when the steps used Muon (llmc/muon.h) with these settings
    int muon;
    float muon_lr, muon_momentum;
    int muon_ns_steps;
} DebugState;

static inline void debug_state_read(const char *path, const GPT2Config *config, DebugState *state) {
    FILE *file = fopen_check(path, "rb");
    size_t file_size = file_size_check(file, path);
    if (file_size < HEADER_BYTES) {
        fatal("%s: not a debug state: %zu bytes, shorter than the 1024-byte header", path,
              file_size);
    }
    int32_t header[HEADER_INTS];
    read_header(file, path, header);
    if (header[0] != DEBUG_STATE_MAGIC) {
        fatal("%s: bad magic %d in header[0], expected %d (debug state)", path, header[0],
              DEBUG_STATE_MAGIC);
    }
    if (header[1] != DEBUG_STATE_VERSION) {
        fatal("%s: unsupported debug state version %d in header[1], expected %d", path, header[1],
              DEBUG_STATE_VERSION);
    }
    state->B = header[2];
    state->T = header[3];
    state->V = config->vocab_size;
    state->n_steps = header[4];
    if (state->B <= 0 || state->T <= 0 || state->T > config->max_seq_len) {
        fatal("%s: bad B=%d or T=%d in header[2..3] (need B >= 1, 1 <= T <= maxT=%d)", path,
              state->B, state->T, config->max_seq_len);
    }
    if (state->n_steps < 0 || state->n_steps > 100000) {
        fatal("%s: bad n_steps %d in header[4]", path, state->n_steps);
    }
    state->lr = int_bits_to_float(header[5]);
    state->beta1 = int_bits_to_float(header[6]);
    state->beta2 = int_bits_to_float(header[7]);
    state->eps = int_bits_to_float(header[8]);
    state->weight_decay = int_bits_to_float(header[9]);
    state->grad_clip = int_bits_to_float(header[10]);
    // B*T positions are indexed with int: at most INT_MAX of them
    size_t BT = (size_t)state->B * state->T;
    if (BT > 2147483647u) {
        fatal("%s: header[2..3]: expected B*T <= 2147483647, found B=%d T=%d", path, state->B,
              state->T);
    }
    size_t num_parameters = gpt2_num_parameters(config);
    if (header[11] != 0 && header[11] != 1) {
        fatal("%s: bad loss-mask flag %d in header[11], expected 0 or 1", path, header[11]);
    }
    int masked = header[11] == 1;
    if (header[12] != 0 && header[12] != 1) {
        fatal("%s: bad optimizer %d in header[12], expected 0 (adamw) or 1 (muon)", path,
              header[12]);
    }
    state->muon = header[12];
    state->muon_lr = int_bits_to_float(header[13]);
    state->muon_momentum = int_bits_to_float(header[14]);
    state->muon_ns_steps = header[15];
    if (state->muon && (!(state->muon_lr >= 0.0f && state->muon_lr < 1e3f) ||
                        !(state->muon_momentum >= 0.0f && state->muon_momentum < 1.0f) ||
                        state->muon_ns_steps < 1 || state->muon_ns_steps > 100)) {
        fatal("%s: bad Muon settings in header[13..15]: lr %g (expected 0..1e3), momentum %g "
              "(expected [0, 1)), Newton-Schulz steps %d (expected 1..100)",
              path, state->muon_lr, state->muon_momentum, state->muon_ns_steps);
    }
    // int32 counts: BT * (2 inputs/targets + V logits + mask), floats: loss, gradients, steps
    size_t values_per_position = 2 + (size_t)state->V + (masked ? 1 : 0);
    size_t values = size_mul_check(BT, values_per_position, path);
    values = size_add_check(values, 1 + num_parameters + (size_t)state->n_steps, path);
    size_t expected = size_add_check(HEADER_BYTES, size_mul_check(values, 4, path), path);
    if (file_size != expected) {
        fatal("%s: file is %zu bytes, expected %zu for B=%d T=%d V=%d, %zu parameters and %d step "
              "losses (truncated, or made for another model)",
              path, file_size, expected, state->B, state->T, state->V, num_parameters,
              state->n_steps);
    }
    state->inputs = (int *)malloc_check(BT * sizeof(int), "debug inputs");
    state->targets = (int *)malloc_check(BT * sizeof(int), "debug targets");
    state->logits = (float *)malloc_check(BT * state->V * sizeof(float), "debug logits");
    state->grads = (float *)malloc_check(num_parameters * sizeof(float), "debug grads");
    state->step_losses = (float *)malloc_check((size_t)state->n_steps * sizeof(float), "losses");
    fread_check(state->inputs, sizeof(int), BT, file, path, "inputs");
    fread_check(state->targets, sizeof(int), BT, file, path, "targets");
    for (size_t i = 0; i < BT; i++) {
        if (state->inputs[i] < 0 || state->inputs[i] >= state->V || state->targets[i] < 0 ||
            state->targets[i] >= state->V) {
            fatal("%s: token id out of range at position %zu (input %d, target %d, V=%d)", path, i,
                  state->inputs[i], state->targets[i], state->V);
        }
    }
    fread_check(state->logits, sizeof(float), BT * state->V, file, path, "logits");
    fread_check(&state->loss, sizeof(float), 1, file, path, "loss");
    fread_check(state->grads, sizeof(float), num_parameters, file, path, "gradients");
    fread_check(state->step_losses, sizeof(float), (size_t)state->n_steps, file, path,
                "step losses");
    state->target_mask = NULL;
    if (masked) {
        int32_t *mask = (int32_t *)malloc_check(BT * sizeof(int32_t), "debug mask");
        fread_check(mask, sizeof(int32_t), BT, file, path, "loss mask");
        state->target_mask = (unsigned char *)malloc_check(BT, "debug mask");
        for (size_t i = 0; i < BT; i++) {
            if (mask[i] != 0 && mask[i] != 1) {
                fatal("%s: loss mask value %d at position %zu, expected 0 or 1", path, mask[i], i);
            }
            state->target_mask[i] = (unsigned char)mask[i];
        }
        free(mask);
    }
    fclose(file);
}

static inline void debug_state_free(DebugState *state) {
    free(state->inputs);
    free(state->targets);
    free(state->logits);
    free(state->grads);
    free(state->step_losses);
    free(state->target_mask);
}

// The tests' check of a loss against the reference's (relative tolerance): prints its line and
// returns 1 when it is within.
static inline int debug_state_check_loss(float got, float want, double rel_tol) {
    double error = fabs((double)got - (double)want);
    int ok = error <= rel_tol * fabs((double)want);
    printf("  %-10s got %.7f want %.7f |diff| %.3e  %s\n", "loss", got, want, error,
           ok ? "ok" : "FAIL");
    return ok;
}

// The same for the loss before AdamW step `step` (0-based) of the reference's steps.
static inline int debug_state_check_step_loss(int step, float got, float want, double rel_tol) {
    double error = fabs((double)got - (double)want);
    int ok = error <= rel_tol * fabs((double)want);
    printf("  step %2d: loss %.6f reference %.6f |diff| %.2e %s\n", step, got, want, error,
           ok ? "ok" : "FAIL");
    return ok;
}

#endif // LLMC_FORMATS_H
