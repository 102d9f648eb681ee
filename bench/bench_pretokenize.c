// Pre-tokenization, PCRE2 vs our scanners (llmc/pretokenize.h): speed on a text, agreement of the
// pieces, and agreement of the Unicode classes with the tables generated for tiktoken's Unicode
// version. This is the measurement behind choosing generated tables over PCRE2.
//
//   make bench_pretokenize && ./bench_pretokenize [TEXT_FILE] [REPEATS]
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../llmc/mmap_file.h"
#include "../llmc/pretokenize.h"

// \s spelled as the White_Space property: PCRE2's \s with UCP also takes U+180E, which Rust's
// regex (tiktoken) does not.
#define WS                                                                                         \
    "\\t\\n\\x{0B}\\f\\r "                                                                         \
    "\\x{85}\\x{A0}\\x{1680}\\x{2000}-\\x{200A}\\x{2028}\\x{2029}\\x{202F}\\x{205F}\\x{3000}"
static const char *pcre_patterns[2] = {
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^" WS "\\p{L}\\p{N}]+|[" WS "]+(?![^" WS
    "])|[" WS "]+",
    "'(?i:[sdmt]|ll|ve|re)|[^\\r\\n\\p{L}\\p{N}]?+\\p{L}++|\\p{N}{1,3}+| ?[^" WS
    "\\p{L}\\p{N}]++[\\r\\n]*+|[" WS "]++$|[" WS "]*[\\r\\n]|[" WS "]+(?![^" WS "])|[" WS "]",
};

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

static pcre2_code *compile(const char *pattern) {
    int error;
    PCRE2_SIZE offset;
    pcre2_code *code =
        pcre2_compile((PCRE2_SPTR)pattern, PCRE2_ZERO_TERMINATED,
                      PCRE2_UTF | PCRE2_UCP | PCRE2_DOLLAR_ENDONLY, &error, &offset, NULL);
    if (code == NULL) {
        PCRE2_UCHAR message[256];
        pcre2_get_error_message(error, message, sizeof(message));
        fatal("pcre2_compile at %zu: %s", (size_t)offset, message);
    }
    if (pcre2_jit_compile(code, PCRE2_JIT_COMPLETE) != 0) fatal("pcre2_jit_compile failed");
    return code;
}

// Piece ends with PCRE2 (JIT); returns the count and stores ends if ends != NULL.
static size_t split_pcre(pcre2_code *code, const uint8_t *text, size_t len, size_t *ends) {
    pcre2_match_data *match = pcre2_match_data_create_from_pattern(code, NULL);
    size_t pos = 0, count = 0;
    while (pos < len) {
        int rc = pcre2_jit_match(code, text, len, pos, PCRE2_NO_UTF_CHECK, match, NULL);
        if (rc < 0) fatal("pcre2 found no piece at byte %zu", pos);
        PCRE2_SIZE *ovector = pcre2_get_ovector_pointer(match);
        if (ovector[0] != pos) fatal("pcre2 skipped text at byte %zu", pos);
        pos = ovector[1];
        if (ends) ends[count] = pos;
        count++;
    }
    pcre2_match_data_free(match);
    return count;
}

static size_t split_ours(SplitPattern pattern, const uint8_t *text, size_t len, size_t *ends) {
    size_t pos = 0, count = 0;
    while (pos < len) {
        pos = pretokenize_next(pattern, text, len, pos);
        if (ends) ends[count] = pos;
        count++;
    }
    return count;
}

int main(int argc, char **argv) {
    const char *path = argc > 1 ? argv[1] : "../shared/data/tinyshakespeare.txt";
    int repeats = argc > 2 ? atoi(argv[2]) : 10;
    MappedFile file = mmap_file_check(path);
    if (utf8_first_invalid(file.data, file.size) != file.size) fatal("%s: not UTF-8", path);
    size_t *ends_pcre = (size_t *)malloc_check((file.size + 1) * sizeof(size_t), "ends");
    size_t *ends_ours = (size_t *)malloc_check((file.size + 1) * sizeof(size_t), "ends");
    printf("%s: %zu bytes x %d; PCRE2 %d.%d (Unicode tables of PCRE2's build), our tables: "
           "Unicode %s\n",
           path, file.size, repeats, PCRE2_MAJOR, PCRE2_MINOR, UNICODE_TABLES_VERSION);
    for (int p = 0; p < 2; p++) {
        pcre2_code *code = compile(pcre_patterns[p]);
        size_t n_pcre = split_pcre(code, file.data, file.size, ends_pcre);
        size_t n_ours = split_ours((SplitPattern)p, file.data, file.size, ends_ours);
        size_t same =
            n_pcre == n_ours && memcmp(ends_pcre, ends_ours, n_ours * sizeof(size_t)) == 0;
        double best_pcre = 1e9, best_ours = 1e9;
        for (int r = 0; r < repeats; r++) {
            double t0 = now();
            split_pcre(code, file.data, file.size, NULL);
            double t1 = now();
            split_ours((SplitPattern)p, file.data, file.size, NULL);
            double t2 = now();
            if (t1 - t0 < best_pcre) best_pcre = t1 - t0;
            if (t2 - t1 < best_ours) best_ours = t2 - t1;
        }
        printf("%s pattern: %zu pieces (pcre2 %zu, %s); pcre2-jit %.1f MB/s, ours %.1f MB/s "
               "(%.1fx)\n",
               split_pattern_names[p], n_ours, n_pcre, same ? "identical" : "DIFFERENT",
               file.size / 1e6 / best_pcre, file.size / 1e6 / best_ours, best_pcre / best_ours);
        pcre2_code_free(code);
    }
    // classes: PCRE2's \p{L}, \p{N} against our tables (tiktoken's Unicode version)
    const char *class_patterns[2] = {"\\p{L}", "\\p{N}"};
    int class_ids[2] = {UCLASS_LETTER, UCLASS_NUMBER};
    for (int c = 0; c < 2; c++) {
        pcre2_code *code = compile(class_patterns[c]);
        pcre2_match_data *match = pcre2_match_data_create_from_pattern(code, NULL);
        size_t differ = 0;
        uint32_t first = 0;
        for (uint32_t cp = 0; cp < 0x110000; cp++) {
            if (cp >= 0xD800 && cp < 0xE000) continue;
            uint8_t bytes[4];
            size_t n = cp < 0x80 ? 1 : cp < 0x800 ? 2 : cp < 0x10000 ? 3 : 4;
            if (n == 1) bytes[0] = (uint8_t)cp;
            if (n == 2) bytes[0] = 0xC0 | (cp >> 6);
            if (n == 3) bytes[0] = 0xE0 | (cp >> 12);
            if (n == 4) bytes[0] = 0xF0 | (cp >> 18);
            for (size_t k = 1; k < n; k++) bytes[k] = 0x80 | ((cp >> (6 * (n - 1 - k))) & 0x3F);
            int pcre_says = pcre2_jit_match(code, bytes, n, 0, 0, match, NULL) >= 0;
            int ours_says = unicode_class(cp) == class_ids[c];
            if (pcre_says != ours_says) {
                if (differ == 0) first = cp;
                differ++;
            }
        }
        printf(
            "%s: %zu code points classified differently by PCRE2 and our tables (first U+%04X)\n",
            class_patterns[c], differ, first);
        pcre2_match_data_free(match);
        pcre2_code_free(code);
    }
    free(ends_pcre);
    free(ends_ours);
    mmap_file_close(&file);
    return 0;
}
