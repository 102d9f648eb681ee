// libFuzzer harness: mask shards (NAME.mask beside a token shard NAME.bin, SFT loss masks), as the
// trainers read them (llmc/mask_shard.h through llmc/dataloader.h: the vocabulary size the masks
// record, every mask checked at start against its token shard and -t, then masked batches read
// through more than one epoch), beside a token shard of rows of T+1 tokens the harness writes.
#include "fuzz.h"

#include "../../llmc/dataloader.h"

#define MASK_B 2
#define MASK_T 7
#define MASK_ROWS 6
#define MASK_V 300

static char shard_path[4096], input_path[4096];

static void load_mask(void *context) {
    int shuffle = *(const int *)context;
    int vocab_size = dataloader_mask_vocab_size(shard_path); // what a trainer grows V to
    if (vocab_size < MASK_V) vocab_size = MASK_V;
    DataLoader loader;
    dataloader_init_with_masks(&loader, shard_path, MASK_B, MASK_T, vocab_size, 0, 1, shuffle, 7,
                               DATALOADER_MASKS_REQUIRED);
    for (int i = 0; i < 2 * MASK_ROWS / MASK_B + 1; i++) { // into the second epoch
        dataloader_next_batch(&loader);
        if (loader.num_targets < 0 || loader.num_targets > MASK_B * MASK_T) abort();
    }
    dataloader_free(&loader);
}

// The token shard: MASK_ROWS rows of T+1 random tokens below MASK_V.
static void write_token_shard(const char *path) {
    size_t count = MASK_ROWS * (MASK_T + 1);
    int32_t header[HEADER_INTS];
    memset(header, 0, sizeof(header));
    header[0] = DATA_MAGIC_U16;
    header[1] = DATA_VERSION_U16;
    header[2] = (int32_t)count;
    uint8_t bytes[HEADER_BYTES + 2 * MASK_ROWS * (MASK_T + 1)];
    memcpy(bytes, header, HEADER_BYTES);
    for (size_t i = 0; i < count; i++) {
        uint16_t token = (uint16_t)(fuzz_random() % MASK_V);
        memcpy(bytes + HEADER_BYTES + 2 * i, &token, 2);
    }
    fuzz_write_file(path, bytes, sizeof(bytes));
}

static void fuzz_init(void) {
    fuzz_path(shard_path, sizeof(shard_path), "sft.bin");
    fuzz_path(input_path, sizeof(input_path), "sft.mask");
    write_token_shard(shard_path);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fuzz_write_file(input_path, data, size);
    const char *paths[] = {input_path, NULL};
    for (int shuffle = 0; shuffle <= 1; shuffle++) {
        if (!fuzz_load(load_mask, &shuffle, paths)) break;
    }
    return 0;
}

// Mask shards by mask_header_fill with random 0/1 bytes (as prepare --sft writes them), for
// this harness's token shard (rows of T+1), with the tokenizer's V at MASK_V and above it.
static void write_mask(const char *dir, const char *name, int vocab_size, int density) {
    size_t count = MASK_ROWS * (MASK_T + 1);
    uint8_t bytes[HEADER_BYTES + MASK_ROWS * (MASK_T + 1)];
    MaskShardInfo info = {count, MASK_T, vocab_size, 0};
    for (size_t i = 0; i < count; i++) {
        bytes[HEADER_BYTES + i] = (uint8_t)((int)(fuzz_random() % 100) < density);
        info.trained += bytes[HEADER_BYTES + i];
    }
    int32_t header[HEADER_INTS];
    mask_header_fill(header, &info);
    memcpy(bytes, header, HEADER_BYTES);
    char path[4096];
    fuzz_write_file(fuzz_seed_path(path, sizeof(path), dir, name), bytes, sizeof(bytes));
}

static void fuzz_write_seeds(const char *dir) {
    write_mask(dir, "half.mask", MASK_V, 50);
    write_mask(dir, "mostly_trained.mask", MASK_V + 6, 90);
    write_mask(dir, "sparse.mask", 50257, 10);
}
