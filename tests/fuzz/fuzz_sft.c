// libFuzzer harness: SFT instruction data, JSON Lines or a JSON array, in the four formats of
// tokenizer prepare --sft (alpaca, messages, sharegpt, gsm8k; llmc/sft_data.h: sft_read_file),
// rendered with the chat template and packed into rows (sft_pack). The first byte of an input picks
// the format (its low 2 bits) and --allow-invalid-utf8 (bit 2); the rest is the file.
#include "fuzz.h"

#include "../../llmc/sft_data.h"
#include "fuzz_vocab.h"

static char input_path[4096];
static BPE bpe;
static ChatTokens chat;

typedef struct {
    SFTFormat format;
    int allow_invalid;
} SFTRun;

static void load_sft(void *context) {
    const SFTRun *run = (const SFTRun *)context;
    SFTConversations all = {0};
    BPEWork work = {0};
    sft_read_file(input_path, run->format, run->allow_invalid, &bpe, &chat, &all, &work);
    SFTPacked packed;
    sft_pack(&all, 16, bpe.eot_token, &packed);
    if (packed.tokens.size != packed.rows * 17 || packed.mask.size != packed.tokens.size) abort();
    sft_packed_free(&packed);
    sft_conversations_free(&all);
    bpe_work_free(&work);
}

static void fuzz_init(void) {
    fuzz_path(input_path, sizeof(input_path), "data.jsonl");
    fuzz_small_bpe(&bpe, 40, SPLIT_GPT2); // as prepare --sft builds its vocabulary
    chat_add_specials(&bpe, "the harness's vocabulary");
    chat_tokens_init(&chat, &bpe, "the harness's vocabulary");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size == 0) return 0;
    SFTRun run = {(SFTFormat)(data[0] & 3), (data[0] >> 2) & 1};
    fuzz_write_file(input_path, data + 1, size - 1);
    const char *paths[] = {input_path, NULL};
    fuzz_load(load_sft, &run, paths);
    return 0;
}

// One seed: the format byte, then the file (text, or the first bytes of a file, cut at a line).
static void write_seed(const char *dir, const char *name, SFTFormat format, const char *text,
                       const char *file, size_t max_bytes) {
    size_t size = 0;
    uint8_t *data = NULL;
    if (file != NULL) {
        if (!file_exists(file)) return;
        data = fuzz_read_file(file, &size);
        if (size > max_bytes) {
            size = max_bytes;
            while (size > 0 && data[size - 1] != '\n') size--;
        }
    }
    size_t length = text != NULL ? strlen(text) : size;
    uint8_t *seed = (uint8_t *)malloc_check(length + 1, "seed");
    seed[0] = (uint8_t)format;
    memcpy(seed + 1, text != NULL ? (const uint8_t *)text : data, length);
    char path[4096];
    fuzz_write_file(fuzz_seed_path(path, sizeof(path), dir, name), seed, length + 1);
    free(seed);
    free(data);
}

// The test fixtures of each format (tests/fixtures/sft), the first records of GSM8K and Code
// Alpaca (../shared/data), and small records of each format written here.
static void fuzz_write_seeds(const char *dir) {
    write_seed(dir, "alpaca_fixture", SFT_ALPACA, NULL, "tests/fixtures/sft/alpaca.json", 4096);
    write_seed(dir, "messages_fixture", SFT_MESSAGES, NULL, "tests/fixtures/sft/messages.jsonl",
               4096);
    write_seed(dir, "sharegpt_fixture", SFT_SHAREGPT, NULL, "tests/fixtures/sft/sharegpt.json",
               4096);
    write_seed(dir, "gsm8k_fixture", SFT_GSM8K, NULL, "tests/fixtures/sft/gsm8k.jsonl", 4096);
    write_seed(dir, "gsm8k_shared", SFT_GSM8K, NULL, "../shared/data/gsm8k/test.jsonl", 2000);
    write_seed(dir, "alpaca_shared_cut", SFT_ALPACA, NULL, "../shared/data/sft/code_alpaca_2k.json",
               1500);
    write_seed(dir, "alpaca_lines", SFT_ALPACA,
               "{\"instruction\": \"Add.\", \"input\": \"2 3\", \"output\": \"5\"}\n"
               "{\"instruction\": \"Say hi\", \"output\": \"hi \\u00e9\"}\n",
               NULL, 0);
    write_seed(dir, "messages_array", SFT_MESSAGES,
               "[{\"messages\": [{\"role\": \"user\", \"content\": \"x\"}, {\"role\": "
               "\"assistant\", \"content\": \"y\"}]},\n {\"messages\": [{\"role\": \"system\", "
               "\"content\": \"s\"}, {\"role\": \"user\", \"content\": \"q\"}, {\"role\": "
               "\"assistant\", \"content\": \"a\"}]}]",
               NULL, 0);
    write_seed(dir, "sharegpt_lines", SFT_SHAREGPT + 4,
               "{\"conversations\": [{\"from\": \"human\", \"value\": \"\\u00ff\"}, {\"from\": "
               "\"gpt\", \"value\": \"ok\"}]}\n",
               NULL, 0);
    write_seed(dir, "gsm8k_array", SFT_GSM8K,
               "[{\"question\": \"1+1?\", \"answer\": \"2\\n#### 2\"}]", NULL, 0);
}
