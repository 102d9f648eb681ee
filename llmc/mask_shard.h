// Loss-mask shards for supervised fine-tuning (docs/formats.md, "Mask shard").
//
// An SFT data set is an ordinary llm.c token shard NAME.bin (any llm.c loader reads it) plus a
// mask shard NAME.mask beside it: one byte per token, 1 where that token is a trained *target*.
// The tokens are packed in rows of T+1 (a row is one sequence: inputs are its first T tokens,
// targets its last T), so the mask shard records T and the loader checks it against -t.
#ifndef LLMC_MASK_SHARD_H
#define LLMC_MASK_SHARD_H

#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "formats.h"
#include "utils.h"

#define MASK_MAGIC 20240610
#define MASK_VERSION 1

typedef struct {
    size_t num_tokens; // header[2]: equals the token shard's count
    int seq_len;       // header[3]: T; rows are T+1 tokens, num_tokens is a multiple of T+1
    int vocab_size;    // header[4]: V of the tokenizer that made it (the model must cover it)
    size_t trained;    // header[5..6]: tokens with mask 1 (uint64)
} MaskShardInfo;

// NAME.bin -> NAME.mask; 0 (and no path) if path does not end in ".bin".
static inline int mask_path_of(const char *token_path, char *out, size_t size) {
    size_t n = strlen(token_path);
    if (n < 4 || strcmp(token_path + n - 4, ".bin") != 0 || n + 2 > size) return 0;
    snprintf(out, size, "%.*s.mask", (int)(n - 4), token_path);
    return 1;
}

static inline void mask_header_fill(int32_t header[HEADER_INTS], const MaskShardInfo *info) {
    if (info->num_tokens > 2147483647u) { // header[2] is an int32
        fatal("internal: mask shard of %zu tokens, more than header[2] holds", info->num_tokens);
    }
    memset(header, 0, HEADER_BYTES);
    header[0] = MASK_MAGIC;
    header[1] = MASK_VERSION;
    header[2] = (int32_t)info->num_tokens;
    header[3] = info->seq_len;
    header[4] = info->vocab_size;
    header[5] = (int32_t)(uint32_t)(info->trained & 0xffffffffu);
    header[6] = (int32_t)(uint32_t)(info->trained >> 32);
}

// Reads and checks a mask shard's header against its length (the file stays open at the data).
static inline MaskShardInfo mask_read_header(FILE *file, const char *path) {
    size_t file_size = file_size_check(file, path);
    if (file_size < HEADER_BYTES) {
        fatal("%s: not a mask shard: %zu bytes, shorter than the 1024-byte header", path,
              file_size);
    }
    int32_t header[HEADER_INTS];
    fseek_check(file, 0, SEEK_SET, path);
    read_header(file, path, header);
    if (header[0] != MASK_MAGIC) {
        fatal("%s: bad magic %d in header[0], expected %d (mask shard)", path, header[0],
              MASK_MAGIC);
    }
    if (header[1] != MASK_VERSION) {
        fatal("%s: unsupported mask shard version %d in header[1], expected %d", path, header[1],
              MASK_VERSION);
    }
    MaskShardInfo info;
    if (header[2] <= 0) fatal("%s: bad token count %d in header[2]", path, header[2]);
    if (header[3] <= 0) fatal("%s: bad sequence length %d in header[3]", path, header[3]);
    info.num_tokens = (size_t)header[2];
    info.seq_len = header[3];
    info.vocab_size = header[4];
    info.trained = (size_t)(uint32_t)header[5] | ((size_t)(uint32_t)header[6] << 32);
    if (info.vocab_size <= 0) {
        fatal("%s: header[4] (tokenizer V): expected >= 1, found %d", path, info.vocab_size);
    }
    if (info.trained > info.num_tokens) {
        fatal("%s: header[5..6] (trained tokens): expected <= %zu (header[2]), found %zu", path,
              info.num_tokens, info.trained);
    }
    if (info.num_tokens % ((size_t)info.seq_len + 1) != 0) {
        fatal("%s: %zu tokens (header[2]) is not a whole number of rows of T+1 = %d (header[3])",
              path, info.num_tokens, info.seq_len + 1);
    }
    if (file_size != HEADER_BYTES + info.num_tokens) {
        fatal(
            "%s: file is %zu bytes, expected %zu for %zu tokens (header[2]): truncated or corrupt",
            path, file_size, (size_t)HEADER_BYTES + info.num_tokens, info.num_tokens);
    }
    return info;
}

#endif // LLMC_MASK_SHARD_H
