// libFuzzer harness: tiktoken's rank files (NAME.tiktoken: "base64-token rank" a line), as the
// tokenizer's -v reads them (llmc/bpe_load.h: bpe_load), then a text encoded and decoded again.
#include "fuzz.h"

#include "../../llmc/bpe_load.h"
#include "fuzz_vocab.h"

static char input_path[4096];

static void fuzz_init(void) {
    fuzz_path(input_path, sizeof(input_path), "vocab.tiktoken");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fuzz_write_file(input_path, data, size);
    const char *paths[] = {input_path, NULL};
    fuzz_load(fuzz_load_vocabulary, input_path, paths);
    return 0;
}

// A trained vocabulary's tokens by rank (= id, the specials left out), as tiktoken writes them.
static void write_ranks(const BPE *bpe, const char *path) {
    static const char digits[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    FILE *file = fopen_check(path, "wb");
    for (int id = 0; id < bpe->vocab_size; id++) {
        if (bpe->kind[id] == BPE_KIND_SPECIAL) continue;
        const uint8_t *bytes = bpe_token_bytes(bpe, id);
        size_t n = bpe->length[id];
        for (size_t i = 0; i < n; i += 3) {
            uint32_t word = (uint32_t)bytes[i] << 16;
            if (i + 1 < n) word |= (uint32_t)bytes[i + 1] << 8;
            if (i + 2 < n) word |= bytes[i + 2];
            char quad[5] = {digits[word >> 18], digits[(word >> 12) & 63],
                            i + 1 < n ? digits[(word >> 6) & 63] : '=',
                            i + 2 < n ? digits[word & 63] : '=', '\0'};
            fputs(quad, file);
        }
        fprintf(file, " %d\n", id);
    }
    fclose(file);
}

static void fuzz_write_seeds(const char *dir) {
    fuzz_write_trained_seed(dir, "trained_25.tiktoken", 25, SPLIT_GPT2, write_ranks);
    fuzz_write_trained_seed(dir, "trained_2.tiktoken", 2, SPLIT_GPT2, write_ranks);
}
