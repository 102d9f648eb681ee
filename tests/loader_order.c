// The shuffled loader's batch order and state files, for tests/test_llmc_exact.sh, which compares
// them with tests/llmc_loader_reference.py (llm.c's loader re-implemented).
//
//   loader_order PATTERN B T SEED N                     N batches as "FILE_INDEX SAMPLE" lines
//   loader_order PATTERN B T SEED N --resume STATE P    the same after reading STATE (P parameters)
//   loader_order PATTERN B T SEED K --write STATE P     K batches, then writes STATE (P parameters)
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../llmc/checkpoint.h"

static int positive_arg(const char *text, const char *name) {
    char *end = NULL;
    long value = strtol(text, &end, 10);
    if (*end != '\0' || value < 0 || value > 1000000000L) fatal("bad %s '%s'", name, text);
    return (int)value;
}

int main(int argc, char **argv) {
    if (argc != 6 && argc != 9) {
        fprintf(stderr, "usage: loader_order PATTERN B T SEED N [--resume|--write STATE P]\n");
        return 2;
    }
    int B = positive_arg(argv[2], "B"), T = positive_arg(argv[3], "T");
    int seed = positive_arg(argv[4], "SEED"), n = positive_arg(argv[5], "N");
    DataLoader loader;
    dataloader_init(&loader, argv[1], B, T, 65536, 0, 1, 1, (uint32_t)seed);
    size_t params = argc == 9 ? (size_t)positive_arg(argv[8], "P") : 0;
    float *m = (float *)calloc_check(params + 1, sizeof(float), "m");
    float *v = (float *)calloc_check(params + 1, sizeof(float), "v");
    int write = argc == 9 && strcmp(argv[6], "--write") == 0;
    if (argc == 9 && !write) {
        if (strcmp(argv[6], "--resume") != 0) fatal("unknown option %s", argv[6]);
        TrainState state;
        state_read(argv[7], &state, params, m, v, NULL, &loader, NULL);
    }
    for (int k = 0; k < n; k++) {
        dataloader_next_batch(&loader);
        if (!write) {
            printf("%d %d\n", loader.shard_indices[loader.current_shard_idx],
                   loader.intra_shard_indices[loader.current_sample_idx - 1]);
        }
    }
    if (write) {
        for (size_t i = 0; i < params; i++) {
            m[i] = 0.25f * (float)(i + 1); // arbitrary, finite
            v[i] = 1.0f / (float)(i + 1);
        }
        TrainState state = {1, 0, 0, 0, n, 1234567, 7654321, params};
        checkpoint_set_run_record("d2", B, T, B * T);
        state_write(argv[7], &state, m, v, NULL, &loader);
    }
    free(m);
    free(v);
    dataloader_free(&loader);
    return 0;
}
