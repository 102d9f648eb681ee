// Distributed data loader over llm.c token shards (docs/formats.md).
// Each micro-batch is B*T+1 consecutive tokens: inputs are the first B*T, targets the same shifted
// by one. With P processes, process r reads window sample*P*B*T + r*B*T, so ranks never overlap.
// Order is deterministic; optional shuffling permutes shards and the samples inside each shard
// with a seeded Mersenne Twister whose state is saved in checkpoints for exact resume. The
// shuffled order is llm.c's draw for draw (seed + rank, see dataloader_reset).
//
// Loss masks (SFT): when a shard NAME.bin has a mask shard NAME.mask beside it (llmc/mask_shard.h)
// the tokens are rows of T+1 and a micro-batch is B whole rows (rank r reads rows
// (sample*P + r)*B ..+B), inputs the first T of each row, targets the last T, and target_mask
// (B,T) says which targets count in the loss. Either every shard has a mask or none does.
#ifndef LLMC_DATALOADER_H
#define LLMC_DATALOADER_H

#include <glob.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "formats.h"
#include "mask_shard.h"
#include "rand.h"
#include "utils.h"

typedef struct {
    int process_rank;
    int num_processes;
    int B, T;
    int vocab_size; // token ids must be below this
    glob_t glob_result;
    size_t num_shards;
    // shuffling
    int should_shuffle;
    mt19937_state shuffle_rng;
    int *shard_indices;       // (num_shards) visiting order of the shards
    int *intra_shard_indices; // (max samples per shard) visiting order inside the current shard
    size_t intra_capacity;
    // position
    size_t current_shard_idx;  // index into shard_indices
    size_t current_sample_idx; // index into the current shard's samples
    // the open shard
    FILE *file;
    const char *shard_path;
    int token_bytes; // 2 or 4
    size_t shard_num_tokens;
    size_t shard_num_samples;
    // output buffers
    unsigned char *read_buffer; // B*T+1 raw tokens
    int *inputs;                // (B, T)
    int *targets;               // (B, T)
    // loss masks (see the top of this file)
    int has_masks;
    FILE *mask_file;
    char mask_path[4096 + 8];
    unsigned char *mask_buffer; // B*(T+1) mask bytes of the rows
    unsigned char *target_mask; // (B, T) 1: the target is trained; NULL without masks
    int num_targets;            // targets with mask 1 in the last batch (B*T without masks)
} DataLoader;

enum { DATALOADER_MASKS_OFF = 0, DATALOADER_MASKS_REQUIRED = 1, DATALOADER_MASKS_AUTO = -1 };

// Reads and checks a shard header; returns the token count and sets *token_bytes.
static inline size_t dataloader_check_shard(FILE *file, const char *path, int *token_bytes) {
    size_t file_size = file_size_check(file, path);
    if (file_size < HEADER_BYTES) {
        fatal("%s: not a token shard: %zu bytes, shorter than the 1024-byte header", path,
              file_size);
    }
    int32_t header[HEADER_INTS];
    fseek_check(file, 0, SEEK_SET, path);
    read_header(file, path, header);
    if (header[0] == DATA_MAGIC_U16) {
        if (header[1] != DATA_VERSION_U16) {
            fatal("%s: unsupported shard version %d in header[1], expected %d for uint16 tokens",
                  path, header[1], DATA_VERSION_U16);
        }
        *token_bytes = 2;
    } else if (header[0] == DATA_MAGIC_U32) {
        if (header[1] != DATA_VERSION_U32) {
            fatal("%s: unsupported shard version %d in header[1], expected %d for uint32 tokens",
                  path, header[1], DATA_VERSION_U32);
        }
        *token_bytes = 4;
    } else {
        fatal("%s: bad magic %d in header[0], expected %d or %d (token shard)", path, header[0],
              DATA_MAGIC_U16, DATA_MAGIC_U32);
    }
    if (header[2] <= 0) {
        fatal("%s: bad token count %d in header[2]", path, header[2]);
    }
    size_t num_tokens = (size_t)header[2];
    size_t expected =
        size_add_check(HEADER_BYTES, size_mul_check(num_tokens, (size_t)*token_bytes, path), path);
    if (file_size != expected) {
        fatal(
            "%s: file is %zu bytes, expected %zu for %zu tokens (header[2]): truncated or corrupt",
            path, file_size, expected, num_tokens);
    }
    return num_tokens;
}

static inline void dataloader_load_shard(DataLoader *loader, size_t shard_position) {
    if (loader->file != NULL) {
        fclose(loader->file);
    }
    int shard =
        loader->should_shuffle ? loader->shard_indices[shard_position] : (int)shard_position;
    loader->shard_path = loader->glob_result.gl_pathv[shard];
    loader->file = fopen_check(loader->shard_path, "rb");
    loader->shard_num_tokens =
        dataloader_check_shard(loader->file, loader->shard_path, &loader->token_bytes);
    size_t window = size_mul_check(
        size_mul_check((size_t)loader->num_processes, (size_t)loader->B, "loader window"),
        (size_t)loader->T, "loader window");
    loader->shard_num_samples = (loader->shard_num_tokens - 1) / window;
    if (loader->has_masks) {
        if (loader->mask_file != NULL) fclose(loader->mask_file);
        mask_path_of(loader->shard_path, loader->mask_path, sizeof(loader->mask_path));
        loader->mask_file = fopen_check(loader->mask_path, "rb");
        mask_read_header(loader->mask_file, loader->mask_path);
        size_t rows = loader->shard_num_tokens / ((size_t)loader->T + 1);
        loader->shard_num_samples = rows / ((size_t)loader->num_processes * loader->B);
    }
}

static inline void dataloader_shuffle_current_shard(DataLoader *loader) {
    if (loader->shard_num_samples > loader->intra_capacity) {
        free(loader->intra_shard_indices);
        loader->intra_capacity = loader->shard_num_samples;
        loader->intra_shard_indices =
            (int *)malloc_check(loader->intra_capacity * sizeof(int), "shuffle indices");
    }
    identity_permutation(loader->intra_shard_indices, (int)loader->shard_num_samples);
    mt19937_shuffle(&loader->shuffle_rng, loader->intra_shard_indices,
                    (int)loader->shard_num_samples);
}

// Back to the first sample of the first shard (a new epoch: reshuffled when shuffling). As in
// llm.c, each epoch shuffles the previous epoch's shard order (not 0..n-1 again), and each shard's
// samples are a fresh shuffle of 0..n-1 when the shard is opened.
static inline void dataloader_reset(DataLoader *loader) {
    loader->current_shard_idx = 0;
    loader->current_sample_idx = 0;
    if (loader->should_shuffle) {
        mt19937_shuffle(&loader->shuffle_rng, loader->shard_indices, (int)loader->num_shards);
    }
    dataloader_load_shard(loader, 0);
    if (loader->should_shuffle) {
        dataloader_shuffle_current_shard(loader);
    }
}

// Checks the mask shard beside the token shard path (num_tokens long) against loader's T and V.
static inline void dataloader_check_mask(const DataLoader *loader, const char *path,
                                         size_t num_tokens) {
    char mask_path[4096 + 8];
    mask_path_of(path, mask_path, sizeof(mask_path));
    FILE *file = fopen_check(mask_path, "rb");
    MaskShardInfo info = mask_read_header(file, mask_path);
    fclose(file);
    if (info.num_tokens != num_tokens) {
        fatal("%s: %zu tokens in header[2], but its token shard %s has %zu", mask_path,
              info.num_tokens, path, num_tokens);
    }
    if (info.seq_len != loader->T) {
        fatal("%s: made for rows of T=%d (header[3]), but the sequence length is T=%d: train with "
              "-t %d or prepare again with --seq-len %d",
              mask_path, info.seq_len, loader->T, info.seq_len, loader->T);
    }
    if (info.vocab_size > loader->vocab_size) {
        fatal("%s: its tokenizer has V=%d (header[4]), more than the model's V=%d", mask_path,
              info.vocab_size, loader->vocab_size);
    }
    size_t rows = num_tokens / ((size_t)loader->T + 1);
    size_t needed = (size_t)loader->num_processes * loader->B;
    if (rows < needed) {
        fatal("%s: %zu rows, too few for one batch of %d processes x B=%d rows", mask_path, rows,
              loader->num_processes, loader->B);
    }
}

// Largest tokenizer V recorded by the mask shards beside the shards of pattern (0: no masks), so
// a trainer can grow its model's V to cover the chat tokens before it opens the loader.
static inline int dataloader_mask_vocab_size(const char *pattern) {
    glob_t found;
    int vocab_size = 0;
    if (glob(pattern, 0, NULL, &found) != 0) return 0;
    for (size_t i = 0; i < found.gl_pathc; i++) {
        char mask_path[4096 + 8];
        if (!mask_path_of(found.gl_pathv[i], mask_path, sizeof(mask_path))) continue;
        if (!file_exists(mask_path)) continue;
        FILE *file = fopen_check(mask_path, "rb");
        MaskShardInfo info = mask_read_header(file, mask_path);
        fclose(file);
        if (info.vocab_size > vocab_size) vocab_size = info.vocab_size;
    }
    globfree(&found);
    return vocab_size;
}

// pattern: a glob of shard files. Every shard is checked up front so a bad one fails at start.
// mask_mode: DATALOADER_MASKS_AUTO (use mask shards when the first shard has one), _OFF, or
// _REQUIRED.
static inline void dataloader_init_with_masks(DataLoader *loader, const char *pattern, int B, int T,
                                              int vocab_size, int process_rank, int num_processes,
                                              int should_shuffle, uint32_t shuffle_seed,
                                              int mask_mode) {
    memset(loader, 0, sizeof(*loader));
    if (B <= 0 || T <= 0 || num_processes <= 0 || process_rank < 0 ||
        process_rank >= num_processes) {
        fatal("data loader: bad B=%d T=%d rank=%d processes=%d", B, T, process_rank, num_processes);
    }
    loader->process_rank = process_rank;
    loader->num_processes = num_processes;
    loader->B = B;
    loader->T = T;
    loader->vocab_size = vocab_size;
    loader->should_shuffle = should_shuffle;
    int status = glob(pattern, 0, NULL, &loader->glob_result);
    if (status == GLOB_NOMATCH) {
        fatal("no data files match %s", pattern);
    }
    if (status != 0) {
        fatal("glob failed for %s (status %d)", pattern, status);
    }
    loader->num_shards = loader->glob_result.gl_pathc;
    if (loader->num_shards > 2147483647u) { // shard orders are int
        fatal("%s matches %zu files, more than 2147483647", pattern, loader->num_shards);
    }
    const char *what = "data loader: processes * B * T";
    size_t needed = size_add_check(
        size_mul_check(size_mul_check((size_t)num_processes, (size_t)B, what), (size_t)T, what), 1,
        what);
    size_t row_tokens = size_mul_check((size_t)B, (size_t)T + 1, what); // masked: B rows of T+1
    char mask_path[4096 + 8];
    const char *first = loader->glob_result.gl_pathv[0];
    int first_has_mask =
        mask_path_of(first, mask_path, sizeof(mask_path)) && file_exists(mask_path);
    if (mask_mode == DATALOADER_MASKS_REQUIRED && !first_has_mask) {
        fatal("%s: no mask shard beside it (expected %s from tokenizer prepare --sft)", first,
              mask_path_of(first, mask_path, sizeof(mask_path)) ? mask_path : "NAME.mask");
    }
    loader->has_masks = mask_mode != DATALOADER_MASKS_OFF && first_has_mask;
    for (size_t i = 0; i < loader->num_shards; i++) {
        const char *path = loader->glob_result.gl_pathv[i];
        FILE *file = fopen_check(path, "rb");
        int token_bytes;
        size_t num_tokens = dataloader_check_shard(file, path, &token_bytes);
        fclose(file);
        if (loader->has_masks) {
            int has_mask =
                mask_path_of(path, mask_path, sizeof(mask_path)) && file_exists(mask_path);
            if (!has_mask) {
                fatal("%s: no mask shard beside it, but %s has one (mix of SFT and plain shards)",
                      path, first);
            }
            dataloader_check_mask(loader, path, num_tokens);
            continue;
        }
        if (num_tokens < needed) {
            fatal("%s: %zu tokens, too few for one batch of %d processes x B=%d x T=%d (+1) = %zu",
                  path, num_tokens, num_processes, B, T, needed);
        }
    }
    size_t buffer_tokens = needed > row_tokens ? needed : row_tokens;
    loader->read_buffer =
        (unsigned char *)malloc_check(size_mul_check(buffer_tokens, 4, what), "loader buffer");
    loader->inputs = (int *)malloc_check((size_t)B * T * sizeof(int), "loader inputs");
    loader->targets = (int *)malloc_check((size_t)B * T * sizeof(int), "loader targets");
    loader->num_targets = B * T;
    if (loader->has_masks) {
        loader->mask_buffer = (unsigned char *)malloc_check(row_tokens, "mask buffer");
        loader->target_mask = (unsigned char *)malloc_check((size_t)B * T, "target mask");
    }
    loader->shard_indices = (int *)malloc_check(loader->num_shards * sizeof(int), "shard order");
    for (size_t i = 0; i < loader->num_shards; i++) {
        loader->shard_indices[i] = (int)i;
    }
    if (should_shuffle) { // llm.c seeds each rank's loader with 42 + rank
        TorchGenerator gen;
        torch_manual_seed(&gen, shuffle_seed + (uint32_t)process_rank);
        loader->shuffle_rng = gen.mt;
    }
    dataloader_reset(loader);
}

static inline void dataloader_init(DataLoader *loader, const char *pattern, int B, int T,
                                   int vocab_size, int process_rank, int num_processes,
                                   int should_shuffle, uint32_t shuffle_seed) {
    dataloader_init_with_masks(loader, pattern, B, T, vocab_size, process_rank, num_processes,
                               should_shuffle, shuffle_seed, DATALOADER_MASKS_AUTO);
}

static inline unsigned int dataloader_token_at(const DataLoader *loader, size_t i) {
    if (loader->token_bytes == 2) {
        uint16_t value;
        memcpy(&value, loader->read_buffer + 2 * i, 2);
        return value;
    }
    uint32_t value;
    memcpy(&value, loader->read_buffer + 4 * i, 4);
    return value;
}

// Masked batch: B whole rows of T+1 tokens and their mask bytes.
static inline void dataloader_read_rows(DataLoader *loader, size_t sample) {
    int B = loader->B, T = loader->T;
    size_t row_length = (size_t)T + 1;
    size_t first_row = (sample * loader->num_processes + (size_t)loader->process_rank) * B;
    size_t token_offset = first_row * row_length;
    size_t count = (size_t)B * row_length;
    fseek_check(loader->file, (long)(HEADER_BYTES + token_offset * (size_t)loader->token_bytes),
                SEEK_SET, loader->shard_path);
    fread_check(loader->read_buffer, (size_t)loader->token_bytes, count, loader->file,
                loader->shard_path, "tokens");
    fseek_check(loader->mask_file, (long)(HEADER_BYTES + token_offset), SEEK_SET,
                loader->mask_path);
    fread_check(loader->mask_buffer, 1, count, loader->mask_file, loader->mask_path, "mask");
    int num_targets = 0;
    for (int b = 0; b < B; b++) {
        for (size_t t = 0; t < row_length; t++) {
            size_t i = (size_t)b * row_length + t;
            unsigned int token = dataloader_token_at(loader, i);
            if (token >= (unsigned int)loader->vocab_size) {
                fatal("%s: token id %u at position %zu is >= the model's vocabulary size V=%d",
                      loader->shard_path, token, token_offset + i, loader->vocab_size);
            }
            unsigned char mask = loader->mask_buffer[i];
            if (mask > 1) {
                fatal("%s: mask byte %u at position %zu: expected 0 or 1", loader->mask_path, mask,
                      token_offset + i);
            }
            if (t < (size_t)T) loader->inputs[(size_t)b * T + t] = (int)token;
            if (t > 0) {
                loader->targets[(size_t)b * T + t - 1] = (int)token;
                loader->target_mask[(size_t)b * T + t - 1] = mask;
                num_targets += mask;
            }
        }
    }
    loader->num_targets = num_targets;
}

// Loads the next micro-batch into loader->inputs / loader->targets.
static inline void dataloader_next_batch(DataLoader *loader) {
    if (loader->current_sample_idx >= loader->shard_num_samples) {
        loader->current_shard_idx++;
        if (loader->current_shard_idx >= loader->num_shards) {
            dataloader_reset(loader);
        } else {
            dataloader_load_shard(loader, loader->current_shard_idx);
            loader->current_sample_idx = 0;
            if (loader->should_shuffle) {
                dataloader_shuffle_current_shard(loader);
            }
        }
    }
    size_t sample = loader->should_shuffle
                        ? (size_t)loader->intra_shard_indices[loader->current_sample_idx]
                        : loader->current_sample_idx;
    if (loader->has_masks) {
        dataloader_read_rows(loader, sample);
        loader->current_sample_idx++;
        return;
    }
    size_t BT = (size_t)loader->B * loader->T;
    size_t token_offset = sample * loader->num_processes * BT + (size_t)loader->process_rank * BT;
    size_t byte_offset = HEADER_BYTES + token_offset * (size_t)loader->token_bytes;
    fseek_check(loader->file, (long)byte_offset, SEEK_SET, loader->shard_path);
    fread_check(loader->read_buffer, (size_t)loader->token_bytes, BT + 1, loader->file,
                loader->shard_path, "tokens");
    for (size_t i = 0; i <= BT; i++) {
        unsigned int token;
        if (loader->token_bytes == 2) {
            uint16_t value;
            memcpy(&value, loader->read_buffer + 2 * i, 2);
            token = value;
        } else {
            uint32_t value;
            memcpy(&value, loader->read_buffer + 4 * i, 4);
            token = value;
        }
        if (token >= (unsigned int)loader->vocab_size) {
            fatal("%s: token id %u at position %zu is >= the model's vocabulary size V=%d",
                  loader->shard_path, token, token_offset + i, loader->vocab_size);
        }
        if (i < BT) loader->inputs[i] = (int)token;
        if (i > 0) loader->targets[i - 1] = (int)token;
    }
    loader->current_sample_idx++;
}

// Positions the loader as a saved state says (after dataloader_init). With shuffling, the
// permutations and generator are restored by the caller before this (see the state file).
static inline void dataloader_resume(DataLoader *loader, size_t shard_idx, size_t sample_idx) {
    if (shard_idx >= loader->num_shards) {
        fatal("resume: loader shard index %zu out of range (%zu shards match the -i pattern)",
              shard_idx, loader->num_shards);
    }
    loader->current_shard_idx = shard_idx;
    dataloader_load_shard(loader, shard_idx);
    if (sample_idx > loader->shard_num_samples) {
        fatal("resume: loader sample index %zu beyond the %zu samples of %s", sample_idx,
              loader->shard_num_samples, loader->shard_path);
    }
    loader->current_sample_idx = sample_idx;
}

static inline void dataloader_free(DataLoader *loader) {
    if (loader->file != NULL) {
        fclose(loader->file);
    }
    if (loader->mask_file != NULL) fclose(loader->mask_file);
    free(loader->mask_buffer);
    free(loader->target_mask);
    globfree(&loader->glob_result);
    free(loader->read_buffer);
    free(loader->inputs);
    free(loader->targets);
    free(loader->shard_indices);
    free(loader->intra_shard_indices);
}

// The micro-batches of one optimizer step, all loaded before the first is run: the masked loss
// is the mean over the trained targets of the whole step, so every micro-batch's backward needs
// their total count (SFT; docs/formats.md). Micro-batch k is inputs + k*B*T etc.
typedef struct {
    int num_micro, B, T;
    int *inputs, *targets;      // (num_micro, B, T)
    unsigned char *target_mask; // (num_micro, B, T), NULL without masks
    int *num_targets;           // (num_micro) trained targets of each micro-batch
    long long total_targets;    // their sum: the normaliser of the step's loss
} StepBatches;

static inline void step_batches_init(StepBatches *step, const DataLoader *loader, int num_micro) {
    memset(step, 0, sizeof(*step));
    step->num_micro = num_micro;
    step->B = loader->B;
    step->T = loader->T;
    size_t n = (size_t)num_micro * loader->B * loader->T;
    step->inputs = (int *)malloc_check(n * sizeof(int), "step inputs");
    step->targets = (int *)malloc_check(n * sizeof(int), "step targets");
    if (loader->has_masks) step->target_mask = (unsigned char *)malloc_check(n, "step masks");
    step->num_targets = (int *)malloc_check((size_t)num_micro * sizeof(int), "step counts");
}

static inline void step_batches_load(StepBatches *step, DataLoader *loader) {
    size_t BT = (size_t)step->B * step->T;
    step->total_targets = 0;
    for (int k = 0; k < step->num_micro; k++) {
        dataloader_next_batch(loader);
        memcpy(step->inputs + k * BT, loader->inputs, BT * sizeof(int));
        memcpy(step->targets + k * BT, loader->targets, BT * sizeof(int));
        if (step->target_mask != NULL) memcpy(step->target_mask + k * BT, loader->target_mask, BT);
        step->num_targets[k] = loader->num_targets;
        step->total_targets += loader->num_targets;
    }
}

static inline void step_batches_free(StepBatches *step) {
    free(step->inputs);
    free(step->targets);
    free(step->target_mask);
    free(step->num_targets);
}

#endif // LLMC_DATALOADER_H
