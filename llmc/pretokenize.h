// Pre-tokenization: cuts text into the pieces that BPE then encodes one by one, exactly as the
// regular expressions of GPT-2 and GPT-4 (tiktoken's r50k/gpt2 and cl100k_base patterns) do:
//
//   GPT-2: 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
//   GPT-4: '(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+
//          |\s++$|\s*[\r\n]|\s+(?!\S)|\s
//
// Each pattern is a hand-written scanner over the character classes of llmc/unicode_tables.h
// (generated for the Unicode version tiktoken's regex uses). Why not PCRE2: Debian 12's PCRE2 knows
// Unicode 14, tiktoken 0.14 uses 16, so 9,392 code points class differently; and these scanners
// run 2.4-2.8x as fast as PCRE2's JIT on the same patterns (bench/bench_pretokenize.c).
//
// Invalid UTF-8: the input is bytes. A byte that does not start a well-formed UTF-8 sequence
// (stray continuation bytes, overlongs, surrogates, code points above U+10FFFF, truncated
// sequences) becomes a piece of its own, one byte long, and ends the text around it: the valid runs
// between invalid bytes are pre-tokenized as separate strings (as `\s++$` and `(?!\S)` would see
// them at the end of a string). Every byte of the input is in exactly one piece, so decoding the
// tokens gives the input back, invalid bytes included.
#ifndef LLMC_PRETOKENIZE_H
#define LLMC_PRETOKENIZE_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "unicode_tables.h"

typedef enum { SPLIT_GPT2 = 0, SPLIT_GPT4 = 1 } SplitPattern;

#define SPLIT_NUM_PATTERNS 2
static const char *const split_pattern_names[SPLIT_NUM_PATTERNS] = {"gpt2", "gpt4"};

// Class of what starts at a position: the three Unicode classes, OTHER, or END (the end of the text
// or an invalid UTF-8 byte, which both end the current run of valid text).
enum {
    CHAR_OTHER = UCLASS_OTHER,
    CHAR_LETTER = UCLASS_LETTER,
    CHAR_NUMBER = UCLASS_NUMBER,
    CHAR_SPACE = UCLASS_SPACE,
    CHAR_END = 4
};

static inline int unicode_class(uint32_t cp) {
    return unicode_class_stage2[unicode_class_stage1[cp >> UCLASS_BLOCK_SHIFT]]
                               [cp & ((1u << UCLASS_BLOCK_SHIFT) - 1)];
}

// Decodes one well-formed UTF-8 sequence at text[pos] (pos < end). Returns its length (1..4) and
// the code point, or 0 when the byte at pos does not start a complete, well-formed sequence.
static inline int utf8_decode(const uint8_t *text, size_t end, size_t pos, uint32_t *cp) {
    uint8_t b0 = text[pos];
    if (b0 < 0x80) {
        *cp = b0;
        return 1;
    }
    size_t left = end - pos;
    if (b0 >= 0xC2 && b0 <= 0xDF) {
        if (left < 2 || (text[pos + 1] & 0xC0) != 0x80) return 0;
        *cp = ((uint32_t)(b0 & 0x1F) << 6) | (text[pos + 1] & 0x3F);
        return 2;
    }
    if (b0 >= 0xE0 && b0 <= 0xEF) {
        if (left < 3) return 0;
        uint8_t b1 = text[pos + 1], b2 = text[pos + 2];
        if ((b1 & 0xC0) != 0x80 || (b2 & 0xC0) != 0x80) return 0;
        if (b0 == 0xE0 && b1 < 0xA0) return 0; // overlong
        if (b0 == 0xED && b1 > 0x9F) return 0; // surrogate
        *cp = ((uint32_t)(b0 & 0x0F) << 12) | ((uint32_t)(b1 & 0x3F) << 6) | (b2 & 0x3F);
        return 3;
    }
    if (b0 >= 0xF0 && b0 <= 0xF4) {
        if (left < 4) return 0;
        uint8_t b1 = text[pos + 1], b2 = text[pos + 2], b3 = text[pos + 3];
        if ((b1 & 0xC0) != 0x80 || (b2 & 0xC0) != 0x80 || (b3 & 0xC0) != 0x80) return 0;
        if (b0 == 0xF0 && b1 < 0x90) return 0; // overlong
        if (b0 == 0xF4 && b1 > 0x8F) return 0; // above U+10FFFF
        *cp = ((uint32_t)(b0 & 0x07) << 18) | ((uint32_t)(b1 & 0x3F) << 12) |
              ((uint32_t)(b2 & 0x3F) << 6) | (b3 & 0x3F);
        return 4;
    }
    return 0;
}

// What the tokenizer's errors about invalid UTF-8 in its inputs add.
#define INVALID_UTF8_HINT "(pass --allow-invalid-utf8 1 to encode such bytes as single-byte tokens)"

// Byte offset of the first byte that is not well-formed UTF-8, or len if all of it is.
static inline size_t utf8_first_invalid(const uint8_t *text, size_t len) {
    size_t pos = 0;
    while (pos < len) {
        if (text[pos] < 0x80) {
            pos++;
            continue;
        }
        uint32_t cp;
        int n = utf8_decode(text, len, pos, &cp);
        if (n == 0) return pos;
        pos += (size_t)n;
    }
    return len;
}

// ASCII classes by byte, so the common case needs no decoding.
static const uint8_t ascii_class[128] = {
    0, 0, 0, 0, 0, 0, 0, 0, 0, 3, 3, 3, 3, 3, 0, 0, // \t \n \v \f \r are White_Space
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, //
    3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, // space
    2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 0, 0, 0, 0, 0, 0, // digits
    0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, // A..O
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, // P..Z
    0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, // a..o
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, // p..z
};

// Class of the character at pos and its length in *length (1 for END).
static inline int char_class_at(const uint8_t *text, size_t end, size_t pos, int *length) {
    *length = 1;
    if (pos >= end) return CHAR_END;
    uint8_t b = text[pos];
    if (b < 0x80) return ascii_class[b];
    uint32_t cp;
    int n = utf8_decode(text, end, pos, &cp);
    if (n == 0) return CHAR_END;
    *length = n;
    return unicode_class(cp);
}

// End of the run of characters of class cls that starts at pos.
static inline size_t run_end(const uint8_t *text, size_t end, size_t pos, int cls) {
    for (;;) {
        if (pos < end && text[pos] < 0x80) {
            if (ascii_class[text[pos]] != cls) return pos;
            pos++;
            continue;
        }
        int length;
        if (char_class_at(text, end, pos, &length) != cls) return pos;
        pos += (size_t)length;
    }
}

// A run of whitespace from pos: its end, the start of its last character, its character count,
// and the end of its last \r or \n (0 if it has none).
typedef struct {
    size_t end, last_start, count, after_last_newline;
} SpaceRun;

static inline SpaceRun space_run(const uint8_t *text, size_t end, size_t pos) {
    SpaceRun run = {pos, pos, 0, 0};
    for (;;) {
        int length;
        if (char_class_at(text, end, run.end, &length) != CHAR_SPACE) return run;
        if (text[run.end] == '\r' || text[run.end] == '\n') run.after_last_newline = run.end + 1;
        run.last_start = run.end;
        run.end += (size_t)length;
        run.count++;
    }
}

// The whitespace alternatives shared by both patterns, for a run starting at pos:
// at the end of the text the whole run (\s+(?!\S) or \s++$); else all but its last character when
// it has two or more (\s+(?!\S)), else the single character (\s+ or \s).
static inline size_t space_piece_end(const SpaceRun *run, const uint8_t *text, size_t end) {
    int length;
    if (char_class_at(text, end, run->end, &length) == CHAR_END) return run->end;
    return run->count >= 2 ? run->last_start : run->end;
}

// GPT-2: the end of the piece that starts at pos (pos < end, text[pos] starts a valid character).
static inline size_t gpt2_piece_end(const uint8_t *text, size_t end, size_t pos) {
    uint8_t c = text[pos];
    if (c == '\'' && pos + 1 < end) { // 's 't 're 've 'm 'll 'd
        uint8_t c1 = text[pos + 1];
        if (c1 == 's' || c1 == 't' || c1 == 'm' || c1 == 'd') return pos + 2;
        if (pos + 2 < end) {
            uint8_t c2 = text[pos + 2];
            if ((c1 == 'r' && c2 == 'e') || (c1 == 'v' && c2 == 'e') || (c1 == 'l' && c2 == 'l')) {
                return pos + 3;
            }
        }
    }
    int length;
    int cls = char_class_at(text, end, pos, &length);
    if (c == ' ') { // ' ?' before a letter, number or other run
        int next_length;
        int next = char_class_at(text, end, pos + 1, &next_length);
        if (next != CHAR_SPACE && next != CHAR_END) return run_end(text, end, pos + 1, next);
    }
    if (cls != CHAR_SPACE) return run_end(text, end, pos, cls);
    SpaceRun run = space_run(text, end, pos);
    return space_piece_end(&run, text, end);
}

static inline uint8_t ascii_lower(uint8_t b) {
    return b >= 'A' && b <= 'Z' ? b | 0x20 : b;
}

// GPT-4 (cl100k_base): the end of the piece that starts at pos.
static inline size_t gpt4_piece_end(const uint8_t *text, size_t end, size_t pos) {
    uint8_t c = text[pos];
    if (c == '\'' && pos + 1 < end) { // '(?i:[sdmt]|ll|ve|re); U+017F (long s) folds to s
        uint8_t c1 = ascii_lower(text[pos + 1]);
        if (c1 == 's' || c1 == 't' || c1 == 'm' || c1 == 'd') return pos + 2;
        if (text[pos + 1] == 0xC5 && pos + 2 < end && text[pos + 2] == 0xBF) return pos + 3;
        if (pos + 2 < end) {
            uint8_t c2 = ascii_lower(text[pos + 2]);
            if ((c1 == 'l' && c2 == 'l') || (c1 == 'v' && c2 == 'e') || (c1 == 'r' && c2 == 'e')) {
                return pos + 3;
            }
        }
    }
    int length;
    int cls = char_class_at(text, end, pos, &length);
    if (cls == CHAR_LETTER) return run_end(text, end, pos, CHAR_LETTER);
    if (cls != CHAR_NUMBER && c != '\r' && c != '\n') { // [^\r\n\p{L}\p{N}]?+\p{L}++
        int next_length;
        if (char_class_at(text, end, pos + (size_t)length, &next_length) == CHAR_LETTER) {
            return run_end(text, end, pos + (size_t)length, CHAR_LETTER);
        }
    }
    if (cls == CHAR_NUMBER) { // \p{N}{1,3}+
        size_t p = pos + (size_t)length;
        for (int k = 1; k < 3; k++) {
            int next_length;
            if (char_class_at(text, end, p, &next_length) != CHAR_NUMBER) break;
            p += (size_t)next_length;
        }
        return p;
    }
    size_t other_start = SIZE_MAX; // ' ?[^\s\p{L}\p{N}]++[\r\n]*+'
    if (cls == CHAR_OTHER) {
        other_start = pos;
    } else if (c == ' ') {
        int next_length;
        if (char_class_at(text, end, pos + 1, &next_length) == CHAR_OTHER) other_start = pos + 1;
    }
    if (other_start != SIZE_MAX) {
        size_t p = run_end(text, end, other_start, CHAR_OTHER);
        while (p < end && (text[p] == '\r' || text[p] == '\n')) p++;
        return p;
    }
    SpaceRun run = space_run(text, end, pos);
    int after_length;
    if (char_class_at(text, end, run.end, &after_length) == CHAR_END) return run.end; // \s++$
    if (run.after_last_newline != 0) return run.after_last_newline;                   // \s*[\r\n]
    return space_piece_end(&run, text, end);
}

// The end of the piece that starts at pos < end: one invalid byte, or one match of the pattern.
static inline size_t pretokenize_next(SplitPattern pattern, const uint8_t *text, size_t end,
                                      size_t pos) {
    if (text[pos] >= 0x80) {
        uint32_t cp;
        if (utf8_decode(text, end, pos, &cp) == 0) return pos + 1;
    }
    return pattern == SPLIT_GPT4 ? gpt4_piece_end(text, end, pos) : gpt2_piece_end(text, end, pos);
}

// A position at or after `from` (and before end) where a piece surely starts in both patterns, so
// text can be cut there and the parts pre-tokenized (and encoded) independently: a space that
// follows a printable ASCII character (no alternative carries a space after a non-space, and none
// looks behind). Returns end if there is none.
static inline size_t pretokenize_safe_cut(const uint8_t *text, size_t end, size_t from) {
    if (from == 0) from = 1;
    while (from < end) {
        const uint8_t *space = (const uint8_t *)memchr(text + from, ' ', end - from);
        if (space == NULL) return end;
        size_t p = (size_t)(space - text);
        if (text[p - 1] > 0x20 && text[p - 1] < 0x7F) return p;
        from = p + 1;
    }
    return end;
}

#endif // LLMC_PRETOKENIZE_H
