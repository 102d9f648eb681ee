// libFuzzer harness: tokenizer files (llm.c's version 1 and 2, and ours with merges and special
// tokens), on both sides that read them: the decoding table of the trainers and chat
// (llmc/tokenizer.h: tokenizer_init, then every token printed) and the encoder of tokenizer
// encode/prepare/show (llmc/bpe.h: bpe_read_file, then a text encoded and decoded again).
#include "fuzz.h"

#include "../../llmc/chat_template.h"
#include "../../llmc/tokenizer.h"
#include "fuzz_vocab.h"

static char input_path[4096];
static FILE *null_output; // decoded text goes nowhere

static void load_decoder(void *context) {
    (void)context;
    Tokenizer tokenizer;
    tokenizer_init(&tokenizer, input_path);
    Utf8Printer printer;
    utf8_printer_init(&printer, null_output);
    for (int id = -1; id <= tokenizer.vocab_size; id++) { // the ids around it too
        tokenizer_print_token(&tokenizer, &printer, id);
    }
    utf8_printer_flush(&printer);
    tokenizer_free(&tokenizer);
}

static void fuzz_init(void) {
    fuzz_path(input_path, sizeof(input_path), "tokenizer.bin");
    null_output = fopen("/dev/null", "w");
    if (null_output == NULL) abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fuzz_write_file(input_path, data, size);
    const char *paths[] = {input_path, NULL};
    fuzz_load(load_decoder, NULL, paths);
    fuzz_load(fuzz_load_vocabulary, input_path, paths); // bpe_read_file
    return 0;
}

// bpe's tokens as llm.c writes a tokenizer file (version 1, or 2 with the eot id), no merges.
static void write_llmc_file(const BPE *bpe, const char *path, int version) {
    int32_t header[HEADER_INTS];
    memset(header, 0, sizeof(header));
    header[0] = TOKENIZER_MAGIC;
    header[1] = version;
    header[2] = bpe->vocab_size;
    if (version == 2) header[3] = bpe->eot_token;
    FILE *file = fopen_check(path, "wb");
    fwrite_check(header, sizeof(int32_t), HEADER_INTS, file, path);
    for (int id = 0; id < bpe->vocab_size; id++) {
        uint8_t n = bpe->length[id];
        fwrite_check(&n, 1, 1, file, path);
        fwrite_check(bpe_token_bytes(bpe, id), 1, n, file, path);
    }
    fclose(file);
}

// Files by bpe_write_file (tokenizer train/prepare) of small trained vocabularies, GPT-2 and
// GPT-4 splitting, with the chat tokens of prepare --sft, and llm.c's decode-only files.
static void fuzz_write_seeds(const char *dir) {
    char path[4096];
    BPE bpe;
    fuzz_small_bpe(&bpe, 40, SPLIT_GPT2);
    bpe_write_file(&bpe, fuzz_seed_path(path, sizeof(path), dir, "gpt2_split.bin"));
    write_llmc_file(&bpe, fuzz_seed_path(path, sizeof(path), dir, "llmc_v1.bin"), 1);
    write_llmc_file(&bpe, fuzz_seed_path(path, sizeof(path), dir, "llmc_v2.bin"), 2);
    chat_add_specials(&bpe, "seed vocabulary");
    bpe_write_file(&bpe, fuzz_seed_path(path, sizeof(path), dir, "chat.bin"));
    bpe_free(&bpe);
    fuzz_write_trained_seed(dir, "gpt4_split.bin", 12, SPLIT_GPT4, bpe_write_file);
}
