// libFuzzer harness: token shards, uint16 (magic 20240520) and uint32 (20240801), as the
// trainers' data loader reads them (llmc/dataloader.h: every shard checked at start, then batches
// read through more than one epoch, in order and shuffled); tokenizer decode checks a shard the
// same way (dataloader_check_shard).
#include "fuzz.h"

#include "../../llmc/dataloader.h"

#define SHARD_B 2
#define SHARD_T 3
#define SHARD_V 1000

static char input_path[4096];

static void load_shard(void *context) {
    int shuffle = *(const int *)context;
    DataLoader loader;
    dataloader_init_with_masks(&loader, input_path, SHARD_B, SHARD_T, SHARD_V, 0, 1, shuffle, 42,
                               DATALOADER_MASKS_OFF);
    size_t batches = 2 * loader.shard_num_samples + 1; // into the second epoch
    for (size_t i = 0; i < batches && i < 64; i++) {
        dataloader_next_batch(&loader);
        for (int k = 0; k < SHARD_B * SHARD_T; k++) {
            if (loader.inputs[k] < 0 || loader.inputs[k] >= SHARD_V || loader.targets[k] < 0 ||
                loader.targets[k] >= SHARD_V) {
                fprintf(stderr, "fuzz: the loader gave token %d / %d (V=%d)\n", loader.inputs[k],
                        loader.targets[k], SHARD_V);
                abort();
            }
        }
    }
    dataloader_free(&loader);
}

static void fuzz_init(void) {
    fuzz_path(input_path, sizeof(input_path), "shard.bin");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fuzz_write_file(input_path, data, size);
    const char *paths[] = {input_path, NULL};
    for (int shuffle = 0; shuffle <= 1; shuffle++) {
        if (!fuzz_load(load_shard, &shuffle, paths)) break; // the same file: rejected again
    }
    return 0;
}

// A shard of count random tokens below SHARD_V, in 2 or 4 bytes a token.
static void write_shard(const char *dir, const char *name, int token_bytes, size_t count) {
    int32_t header[HEADER_INTS];
    memset(header, 0, sizeof(header));
    header[0] = token_bytes == 2 ? DATA_MAGIC_U16 : DATA_MAGIC_U32;
    header[1] = token_bytes == 2 ? DATA_VERSION_U16 : DATA_VERSION_U32;
    header[2] = (int32_t)count;
    size_t size = HEADER_BYTES + count * (size_t)token_bytes;
    uint8_t *bytes = (uint8_t *)malloc_check(size, "seed shard");
    memcpy(bytes, header, HEADER_BYTES);
    for (size_t i = 0; i < count; i++) {
        uint32_t token = fuzz_random() % SHARD_V;
        memcpy(bytes + HEADER_BYTES + i * (size_t)token_bytes, &token, (size_t)token_bytes);
    }
    char path[4096];
    fuzz_write_file(fuzz_seed_path(path, sizeof(path), dir, name), bytes, size);
    free(bytes);
}

static void fuzz_write_seeds(const char *dir) {
    write_shard(dir, "u16_one_batch.bin", 2, SHARD_B * SHARD_T + 1);
    write_shard(dir, "u16.bin", 2, 40);
    write_shard(dir, "u32.bin", 4, 29);
}
