// libFuzzer harness: GPT-2's vocabulary files, encoder.json + vocab.bpe (llmc/bpe_load.h:
// bpe_load of a directory, through json-c), then a text encoded and decoded again. One input
// holds both files: encoder.json, a NUL byte, vocab.bpe.
#include "fuzz.h"

#include "../../llmc/bpe_load.h"
#include "fuzz_vocab.h"

static char vocab_dir[4096], encoder_path[4096], merges_path[4096];

static void fuzz_init(void) {
    fuzz_path(vocab_dir, sizeof(vocab_dir), "gpt2");
    make_dir_check(vocab_dir);
    snprintf(encoder_path, sizeof(encoder_path), "%s/encoder.json", vocab_dir);
    snprintf(merges_path, sizeof(merges_path), "%s/vocab.bpe", vocab_dir);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const uint8_t *split = (const uint8_t *)memchr(data, '\0', size);
    size_t encoder_size = split != NULL ? (size_t)(split - data) : size;
    fuzz_write_file(encoder_path, data, encoder_size);
    fuzz_write_file(merges_path, split != NULL ? split + 1 : data + size,
                    split != NULL ? size - encoder_size - 1 : 0);
    const char *paths[] = {encoder_path, merges_path, NULL};
    fuzz_load(fuzz_load_vocabulary, vocab_dir, paths);
    return 0;
}

// bpe (bytes, then one token per merge, then <|endoftext|>, as GPT-2's) in GPT-2's two files,
// tokens spelled in its byte alphabet, as one seed: encoder.json, NUL, vocab.bpe.
static void write_gpt2_seed(const BPE *bpe, const char *path) {
    int alphabet[324], spelling[256];
    gpt2_alphabet(alphabet);
    for (int cp = 0; cp < 324; cp++) {
        if (alphabet[cp] >= 0) spelling[alphabet[cp]] = cp;
    }
    char(*names)[4 * 255 + 1] = malloc_check((size_t)bpe->vocab_size * sizeof(*names), "names");
    json_object *encoder = json_object_new_object();
    for (int id = 0; id < bpe->vocab_size; id++) {
        const uint8_t *bytes = bpe_token_bytes(bpe, id);
        size_t used = 0;
        for (size_t i = 0; i < bpe->length[id]; i++) {
            int cp = id == bpe->eot_token ? bytes[i] : spelling[bytes[i]];
            if (cp < 0x80) {
                names[id][used++] = (char)cp;
            } else { // U+0080..U+0143: two UTF-8 bytes
                names[id][used++] = (char)(0xC0 | (cp >> 6));
                names[id][used++] = (char)(0x80 | (cp & 0x3F));
            }
        }
        names[id][used] = '\0';
        json_object_object_add(encoder, names[id], json_object_new_int(id));
    }
    FILE *file = fopen_check(path, "wb");
    fputs(json_object_to_json_string_ext(encoder, JSON_C_TO_STRING_PLAIN), file);
    fputc('\0', file);
    fputs("#version: 0.2\n", file);
    for (int i = 0; i < bpe->num_merges; i++) {
        fprintf(file, "%s %s\n", names[bpe->merges[2 * i]], names[bpe->merges[2 * i + 1]]);
    }
    fclose(file);
    json_object_put(encoder);
    free(names);
}

// The vocabulary of the first merges of ../shared/data/gpt2 (GPT-2's own ids), and small trained
// ones (our trainer numbers tokens as GPT-2 does: bytes, merges, specials).
static void fuzz_write_seeds(const char *dir) {
    fuzz_write_trained_seed(dir, "trained_30", 30, SPLIT_GPT2, write_gpt2_seed);
    fuzz_write_trained_seed(dir, "trained_3", 3, SPLIT_GPT2, write_gpt2_seed);
    if (file_exists("../shared/data/gpt2/encoder.json")) {
        BPE full, first;
        bpe_load(&full, "../shared/data/gpt2");
        const int merges = 60;
        bpe_begin(&first, 256 + merges + 1, "GPT-2's first merges");
        for (int id = 0; id < 256 + merges; id++) {
            bpe_set_token(&first, id, bpe_token_bytes(&full, id), full.length[id]);
        }
        bpe_set_token(&first, 256 + merges, bpe_token_bytes(&full, full.eot_token),
                      full.length[full.eot_token]);
        bpe_index_tokens(&first);
        for (int i = 0; i < merges; i++) {
            bpe_add_merge(&first, full.merges[2 * i], full.merges[2 * i + 1]);
        }
        int32_t eot = 256 + merges;
        bpe_finish(&first, &eot, 1, 0, eot, SPLIT_GPT2);
        char path[4096];
        write_gpt2_seed(&first, fuzz_seed_path(path, sizeof(path), dir, "gpt2_first_60"));
        bpe_free(&first);
        bpe_free(&full);
    }
}
