// Small vocabularies for the tokenizer harnesses' seeds and for the SFT harness: trained by our
// BPE trainer (llmc/bpe_train.h) on a few kilobytes of text, so encoding stays fast per input.
#ifndef LLMC_FUZZ_VOCAB_H
#define LLMC_FUZZ_VOCAB_H

#include "../../llmc/bpe.h"
#include "../../llmc/bpe_load.h"
#include "../../llmc/bpe_train.h"
#include "fuzz.h"

// The first bytes of tinyshakespeare (../shared/data) when it is there, else words drawn at
// random; with some UTF-8 beyond ASCII and digits either way.
static inline uint8_t *fuzz_training_text(size_t *size) {
    const size_t want = 6000;
    uint8_t *text = (uint8_t *)malloc_check(want + 256, "training text");
    size_t n = 0;
    const char *shared = "../shared/data/tinyshakespeare.txt";
    if (file_exists(shared)) {
        FILE *file = fopen_check(shared, "rb");
        n = fread(text, 1, want, file);
        fclose(file);
    }
    const char *words[] = {"the ",  "model ", "token ",  "file ", "loss ",  "step ", "\n",
                           "café ", "naïve ", "日本語 ", "2026 ", "12345 ", "  ",    "'s "};
    while (n < want) {
        const char *word = words[fuzz_random() % (sizeof(words) / sizeof(words[0]))];
        size_t length = strlen(word);
        memcpy(text + n, word, length);
        n += length;
    }
    const char *extra = " Grüße, ÿ 3.14159 <|endoftext|> ...\t\r\n";
    memcpy(text + n, extra, strlen(extra));
    *size = n + strlen(extra);
    return text;
}

// A byte-level BPE of 256 bytes, num_merges merges and <|endoftext|>, trained on that text.
static inline void fuzz_small_bpe(BPE *bpe, int num_merges, SplitPattern pattern) {
    size_t size;
    uint8_t *text = fuzz_training_text(&size);
    const char *const specials[] = {"<|endoftext|>"};
    PieceCounts counts;
    piece_counts_init(&counts);
    count_pieces(&counts, text, size, pattern, specials, 1);
    BPETrainConfig config = {256 + num_merges + 1, pattern, specials, 1, 0};
    bpe_train(bpe, &counts, &config);
    piece_counts_free(&counts);
    free(text);
}

// A text to encode with a loaded vocabulary: ASCII, UTF-8, digits, spaces, a special token.
static const char fuzz_sample_text[] =
    "First Citizen: the model's loss is 3.25 at step 1000.\n\n  Grüße, 日本語!\t<|endoftext|>"
    "     12345678 ÿ \xF0\x9F\x98\x80 end";

// Encodes fuzz_sample_text with bpe (special tokens allowed) and decodes it again: byte-level BPE
// loses nothing, so anything else is a bug in a vocabulary the loader accepted (abort).
static inline void fuzz_check_round_trip(const BPE *bpe) {
    TokenList tokens = {0};
    BPEWork work = {0};
    size_t n = strlen(fuzz_sample_text);
    bpe_encode(bpe, (const uint8_t *)fuzz_sample_text, n, 1, &tokens, &work);
    uint8_t *back = (uint8_t *)malloc_check(n + 1, "decoded text");
    size_t length = 0;
    for (size_t i = 0; i < tokens.size; i++) {
        int32_t id = tokens.data[i];
        if (id < 0 || id >= bpe->vocab_size || length + bpe->length[id] > n) {
            fprintf(stderr, "fuzz: encoding gave token %d (V=%d) beyond the text\n", id,
                    bpe->vocab_size);
            abort();
        }
        memcpy(back + length, bpe_token_bytes(bpe, id), bpe->length[id]);
        length += bpe->length[id];
    }
    if (length != n || memcmp(back, fuzz_sample_text, n) != 0) {
        fprintf(stderr, "fuzz: encode + decode changed the text (%zu bytes back of %zu)\n", length,
                n);
        abort();
    }
    free(back);
    token_list_free(&tokens);
    bpe_work_free(&work);
}

// fuzz_load's loader for a vocabulary file or directory (context: its path): bpe_load picks the
// reader from the path (llmc/bpe_load.h), then the round trip.
static inline void fuzz_load_vocabulary(void *context) {
    BPE bpe;
    bpe_load(&bpe, (const char *)context);
    fuzz_check_round_trip(&bpe);
    bpe_free(&bpe);
}

// A seed dir/name: write(bpe, path) for fuzz_small_bpe(num_merges, pattern).
static inline void fuzz_write_trained_seed(const char *dir, const char *name, int num_merges,
                                           SplitPattern pattern,
                                           void (*write)(const BPE *bpe, const char *path)) {
    char path[4096];
    BPE bpe;
    fuzz_small_bpe(&bpe, num_merges, pattern);
    write(&bpe, fuzz_seed_path(path, sizeof(path), dir, name));
    bpe_free(&bpe);
}

#endif // LLMC_FUZZ_VOCAB_H
