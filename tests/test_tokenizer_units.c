// Unit checks of the tokenizer modules, run by tests/test_tokenizer.sh:
//   ./test_tokenizer_units VOCAB_DIR [CLASSES_FILE]
// - the Unicode classes against tiktoken's regex, every code point (CLASSES_FILE, written by
//   tests/tokenizer_reference.py classes);
// - pre-tokenization of hand-checked strings, both patterns, and the invalid UTF-8 policy;
// - the two merge paths (short pieces: linear scan; long: heap) give the same tokens;
// - our tokenizer file written and read back gives the same vocabulary.
// Prints "ok - ..." / "FAIL - ..." lines; exits 1 if anything failed.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../llmc/bpe.h"
#include "../llmc/bpe_load.h"
#include "../llmc/pretokenize.h"

static int failures = 0;

static void check(int ok, const char *what) {
    printf("%s - %s\n", ok ? "ok" : "FAIL", what);
    if (!ok) failures++;
}

// Pieces of text joined by '|' (text must not contain '|').
static void split_to_string(SplitPattern pattern, const char *text, size_t len, char *out) {
    size_t pos = 0, k = 0;
    while (pos < len) {
        size_t end = pretokenize_next(pattern, (const uint8_t *)text, len, pos);
        if (pos > 0) out[k++] = '|';
        memcpy(out + k, text + pos, end - pos);
        k += end - pos;
        pos = end;
    }
    out[k] = '\0';
}

static void check_classes(const char *path) {
    FILE *file = fopen_check(path, "r");
    uint8_t *expected = (uint8_t *)calloc_check(0x110000, 1, "classes"); // UCLASS_OTHER = 0
    char name[16];
    size_t count;
    int classes_read = 0;
    while (fscanf(file, "%15s %zu", name, &count) == 2) {
        int cls = strcmp(name, "letter") == 0   ? UCLASS_LETTER
                  : strcmp(name, "number") == 0 ? UCLASS_NUMBER
                                                : UCLASS_SPACE;
        for (size_t i = 0; i < count; i++) {
            unsigned cp;
            if (fscanf(file, "%x", &cp) != 1 || cp >= 0x110000) fatal("%s: bad code point", path);
            expected[cp] = (uint8_t)cls;
        }
        classes_read++;
    }
    fclose(file);
    size_t differ = 0;
    unsigned first = 0;
    for (unsigned cp = 0; cp < 0x110000; cp++) {
        if (cp >= 0xD800 && cp < 0xE000) continue;
        if (unicode_class(cp) != expected[cp]) {
            if (differ++ == 0) first = cp;
        }
    }
    char what[200];
    snprintf(what, sizeof(what),
             "Unicode %s classes (letter, number, White_Space) = tiktoken's regex on all 1,112,064 "
             "code points (%zu differ, first U+%04X)",
             UNICODE_TABLES_VERSION, differ, first);
    check(classes_read == 3 && differ == 0, what);
    free(expected);
}

static void check_splits(void) {
    // text, GPT-2 pieces, GPT-4 pieces ('|' between pieces)
    static const char *cases[][3] = {
        {"Hello world", "Hello| world", "Hello| world"},
        {"I'm here\n\n", "I|'m| here|\n\n", "I|'m| here|\n\n"},
        {"a  b", "a| | b", "a| | b"},
        {"  \tx", "  |\t|x", "  |\tx"},
        {"don't DON'T", "don|'t| DON|'|T", "don|'t| DON|'T"},
        {"'LL 'Ve 're", "'|LL| '|Ve| '|re", "'LL| '|Ve| '|re"}, // ' ?[^\s..]+' takes " '"
        {"x 'ſ", "x| '|ſ", "x| '|ſ"},
        {"'ſa", "'|ſa", "'ſ|a"},
        {"12345 67", "12345| 67", "123|45| |67"},
        {"!!! ok?!", "!!!| ok|?!", "!!!| ok|?!"},
        {"foo.\n\nbar", "foo|.|\n|\n|bar", "foo|.\n\n|bar"},
        {"a \n\n b", "a| \n\n| b", "a| \n\n| b"},
        {"end  ", "end|  ", "end|  "},
        {"x\r\ny", "x|\r|\n|y", "x|\r\n|y"},
        {"(hello", "(|hello", "(hello"},
        {"naïve café", "naïve| café", "naïve| café"},
        {"e\xcc\x81t\xc3\xa9", "e|\xcc\x81|t\xc3\xa9", "e|\xcc\x81t\xc3\xa9"},   // combining mark
        {"\xe3\x80\x80x", "\xe3\x80\x80|x", "\xe3\x80\x80x"},                    // U+3000 space
        {"x\xc2\x85\xc2\x85y", "x|\xc2\x85|\xc2\x85|y", "x|\xc2\x85|\xc2\x85y"}, // U+0085
        {"\xe1\xa0\x8ex", "\xe1\xa0\x8e|x", "\xe1\xa0\x8ex"}, // U+180E is not White_Space
        // invalid UTF-8: each bad byte a piece; the runs between are separate strings
        {"ab\xff"
         "cd",
         "ab|\xff|cd", "ab|\xff|cd"},
        {"a \xff", "a| |\xff", "a| |\xff"},
        {"a  \xff  b", "a|  |\xff| | b", "a|  |\xff| | b"},
        {"\xe2\x82", "\xe2|\x82", "\xe2|\x82"}, // truncated sequence
        {"\xc0\xaf"
         "a",
         "\xc0|\xaf|a", "\xc0|\xaf|a"},                                     // overlong
        {"\xed\xa0\x80", "\xed|\xa0|\x80", "\xed|\xa0|\x80"},               // surrogate
        {"\xf4\x90\x80\x80", "\xf4|\x90|\x80|\x80", "\xf4|\x90|\x80|\x80"}, // above U+10FFFF
        {"1\xff"
         "2",
         "1|\xff|2", "1|\xff|2"},
    };
    int n = (int)(sizeof(cases) / sizeof(cases[0]));
    int bad[2] = {0, 0};
    char got[256], what[600];
    for (int i = 0; i < n; i++) {
        for (int p = 0; p < 2; p++) {
            split_to_string((SplitPattern)p, cases[i][0], strlen(cases[i][0]), got);
            if (strcmp(got, cases[i][1 + p]) != 0) {
                snprintf(what, sizeof(what), "%s split of case %d: got \"%s\", want \"%s\"",
                         split_pattern_names[p], i, got, cases[i][1 + p]);
                check(0, what);
                bad[p]++;
            }
        }
    }
    snprintf(what, sizeof(what),
             "pre-tokenization of %d hand-checked strings, GPT-2 and GPT-4 patterns, invalid UTF-8 "
             "included",
             n);
    check(bad[0] + bad[1] == 0, what);
}

static uint64_t rng_state = 88172645463325252ull;
static uint64_t rng_next(void) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

static void check_merge_paths(const BPE *bpe) {
    // text-like pieces: runs of letters, digits, bytes; both merge paths must agree
    const char *alphabets[] = {"etaoinshrdlu", "abcdefghijklmnopqrstuvwxyz ", "0123456789",
                               "\xc3\xa9\xc3\xa8\xe6\x97\xa5\xe6\x9c\xac", " \n"};
    BPEWork work = {0};
    TokenList small = {0}, large = {0};
    int mismatches = 0, pieces = 0;
    uint8_t piece[BPE_SMALL_PIECE];
    for (int trial = 0; trial < 20000; trial++) {
        const char *alphabet = alphabets[trial % 5];
        size_t alphabet_size = strlen(alphabet);
        size_t n = 2 + rng_next() % (BPE_SMALL_PIECE - 1);
        for (size_t i = 0; i < n; i++) {
            piece[i] = trial % 7 == 6 ? (uint8_t)rng_next()
                                      : (uint8_t)alphabet[rng_next() % alphabet_size];
        }
        small.size = large.size = 0;
        bpe_merge_small(bpe, piece, n, &small);
        bpe_merge_large(bpe, piece, n, &large, &work);
        pieces++;
        if (small.size != large.size || memcmp(small.data, large.data, small.size * 4) != 0)
            mismatches++;
    }
    char what[200];
    snprintf(what, sizeof(what),
             "linear-scan and heap merges agree on %d random pieces (%d differ)", pieces,
             mismatches);
    check(mismatches == 0, what);
    token_list_free(&small);
    token_list_free(&large);
    bpe_work_free(&work);
}

static void check_file_round_trip(const BPE *bpe, const char *path) {
    bpe_write_file(bpe, path);
    BPE back;
    bpe_read_file(&back, path);
    int same = back.vocab_size == bpe->vocab_size && back.eot_token == bpe->eot_token &&
               back.num_merges == bpe->num_merges && back.num_special == bpe->num_special &&
               back.pattern == bpe->pattern &&
               memcmp(back.merges, bpe->merges, 8 * (size_t)bpe->num_merges) == 0 &&
               memcmp(back.rank, bpe->rank, 4 * (size_t)bpe->vocab_size) == 0;
    for (int id = 0; same && id < bpe->vocab_size; id++) {
        same = back.length[id] == bpe->length[id] &&
               memcmp(bpe_token_bytes(&back, id), bpe_token_bytes(bpe, id), bpe->length[id]) == 0;
    }
    char what[300];
    snprintf(what, sizeof(what),
             "tokenizer file round trip: V=%d, %d merges, %d special, eot %d read back identical",
             bpe->vocab_size, bpe->num_merges, bpe->num_special, bpe->eot_token);
    check(same, what);
    bpe_free(&back);
    unlink(path);
}

static void check_invalid_bytes(const BPE *bpe) {
    // "ab<ff> cd<e2 82>": the invalid bytes are single-byte tokens; the rest as if encoded alone
    const uint8_t text[] = "hello\xff world\xe2\x82";
    size_t len = sizeof(text) - 1;
    BPEWork work = {0};
    TokenList all = {0}, expected = {0};
    bpe_encode_ordinary(bpe, text, len, &all, &work);
    bpe_encode_ordinary(bpe, (const uint8_t *)"hello", 5, &expected, &work);
    token_list_push(&expected, bpe->byte_to_id[0xff]);
    bpe_encode_ordinary(bpe, (const uint8_t *)" world", 6, &expected, &work);
    token_list_push(&expected, bpe->byte_to_id[0xe2]);
    token_list_push(&expected, bpe->byte_to_id[0x82]);
    int same = all.size == expected.size && memcmp(all.data, expected.data, 4 * all.size) == 0;
    check(same, "invalid UTF-8 bytes become single-byte tokens; the valid runs encode as alone");
    token_list_free(&all);
    token_list_free(&expected);
    bpe_work_free(&work);
}

int main(int argc, char **argv) {
    if (argc < 2) fatal("usage: %s VOCAB_DIR [CLASSES_FILE] [TEMP_DIR]", argv[0]);
    if (argc > 2 && argv[2][0] != '\0') check_classes(argv[2]);
    check_splits();
    BPE bpe;
    bpe_load(&bpe, argv[1]);
    check_merge_paths(&bpe);
    check_invalid_bytes(&bpe);
    char path[4096];
    snprintf(path, sizeof(path), "%s/units_tokenizer.bin", argc > 3 ? argv[3] : "/tmp");
    check_file_round_trip(&bpe, path);
    bpe_free(&bpe);
    return failures > 0;
}
