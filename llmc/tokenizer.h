// GPT-2 tokenizer file (llm.c format, docs/formats.md): token id -> raw bytes, for decoding.
// Byte-level BPE tokens can end in the middle of a UTF-8 character, so printing goes through a
// small streaming printer that holds back incomplete sequences until the next token completes them.
#ifndef LLMC_TOKENIZER_H
#define LLMC_TOKENIZER_H

#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "formats.h"
#include "utils.h"

typedef struct {
    int vocab_size;
    int eot_token;
    unsigned char **token_bytes; // token_bytes[id], token_lengths[id] bytes, not NUL-terminated
    int *token_lengths;
} Tokenizer;

static inline void tokenizer_init(Tokenizer *tokenizer, const char *path) {
    int32_t header[HEADER_INTS];
    size_t file_size;
    FILE *file = tokenizer_file_open(path, header, &file_size);
    if (header[1] != 1 && header[1] != 2) {
        fatal("%s: unsupported tokenizer version %d in header[1], expected 1 or 2", path,
              header[1]);
    }
    tokenizer->vocab_size = header[2];
    tokenizer->eot_token = header[1] == 1 ? 50256 : header[3];
    if (tokenizer->vocab_size <= 0 || tokenizer->vocab_size > (1 << 24)) {
        fatal("%s: bad vocabulary size %d in header[2]", path, tokenizer->vocab_size);
    }
    if (tokenizer->eot_token < 0 || tokenizer->eot_token >= tokenizer->vocab_size) {
        fatal("%s: eot token %d in header[3] is outside the vocabulary (V=%d)", path,
              tokenizer->eot_token, tokenizer->vocab_size);
    }
    int V = tokenizer->vocab_size;
    // each record is at least 2 bytes: a V the file cannot hold is refused before allocating
    if ((file_size - HEADER_BYTES) / 2 < (size_t)V) {
        fatal("%s: header[2] (V): %d tokens need at least %zu bytes after the header, the file "
              "has %zu",
              path, V, 2 * (size_t)V, file_size - HEADER_BYTES);
    }
    tokenizer->token_bytes =
        (unsigned char **)calloc_check((size_t)V, sizeof(unsigned char *), "tokenizer table");
    tokenizer->token_lengths = (int *)calloc_check((size_t)V, sizeof(int), "tokenizer lengths");
    for (int i = 0; i < V; i++) {
        unsigned char length;
        fread_check(&length, 1, 1, file, path, "token length");
        if (length == 0) {
            fatal("%s: token %d has length 0 (every token has at least one byte)", path, i);
        }
        tokenizer->token_bytes[i] = (unsigned char *)malloc_check(length, "token bytes");
        fread_check(tokenizer->token_bytes[i], 1, length, file, path, "token bytes");
        tokenizer->token_lengths[i] = length;
    }
    long position = ftell(file);
    // our extension (llmc/bpe.h, docs/formats.md): header[4] = 1, header[5] merges of two int32
    // and header[6] special token ids (int32) follow the tokens; decoding does not need them
    size_t extension = 0;
    if (header[1] == 2 && header[4] != 0) {
        if (header[4] != 1 || header[5] < 0 || header[6] < 0) {
            fatal("%s: bad extension header[4..6] = %d, %d, %d (expected version 1 and counts)",
                  path, header[4], header[5], header[6]);
        }
        extension = 8 * (size_t)header[5] + 4 * (size_t)header[6];
    }
    if (position < 0 || (size_t)position + extension != file_size) {
        fatal("%s: %zu bytes after %d tokens, expected %zu (corrupt or wrong V in header[2])", path,
              file_size - (size_t)position, V, extension);
    }
    fclose(file);
}

static inline void tokenizer_free(Tokenizer *tokenizer) {
    for (int i = 0; i < tokenizer->vocab_size; i++) {
        free(tokenizer->token_bytes[i]);
    }
    free(tokenizer->token_bytes);
    free(tokenizer->token_lengths);
}

// Streaming UTF-8 printer: complete characters are printed, an incomplete tail is held back
// for the next token, invalid bytes become U+FFFD, and control characters other than newline
// and tab are shown as U+FFFD too, so model output cannot garble the terminal.
typedef struct {
    unsigned char pending[4];
    int pending_length;
    FILE *out;
} Utf8Printer;

static inline void utf8_printer_init(Utf8Printer *printer, FILE *out) {
    printer->pending_length = 0;
    printer->out = out;
}

static inline int utf8_sequence_length(unsigned char lead) {
    if (lead < 0x80) return 1;
    if (lead >= 0xC2 && lead <= 0xDF) return 2;
    if (lead >= 0xE0 && lead <= 0xEF) return 3;
    if (lead >= 0xF0 && lead <= 0xF4) return 4;
    return 0; // continuation byte or invalid lead
}

static inline void utf8_print_replacement(Utf8Printer *printer) {
    fputs("\xEF\xBF\xBD", printer->out);
}

// Checks the second byte's narrower ranges for E0, ED, F0, F4 leads (no overlongs/surrogates).
static inline int utf8_second_byte_ok(unsigned char lead, unsigned char second) {
    if ((second & 0xC0) != 0x80) return 0;
    if (lead == 0xE0) return second >= 0xA0;
    if (lead == 0xED) return second <= 0x9F;
    if (lead == 0xF0) return second >= 0x90;
    if (lead == 0xF4) return second <= 0x8F;
    return 1;
}

static inline void utf8_printer_put(Utf8Printer *printer, unsigned char byte) {
    if (printer->pending_length > 0) {
        unsigned char lead = printer->pending[0];
        int ok =
            printer->pending_length == 1 ? utf8_second_byte_ok(lead, byte) : (byte & 0xC0) == 0x80;
        if (!ok) {
            utf8_print_replacement(printer);
            printer->pending_length = 0;
            utf8_printer_put(printer, byte); // the byte starts something new
            return;
        }
        printer->pending[printer->pending_length++] = byte;
        if (printer->pending_length == utf8_sequence_length(lead)) {
            fwrite(printer->pending, 1, (size_t)printer->pending_length, printer->out);
            printer->pending_length = 0;
        }
        return;
    }
    int length = utf8_sequence_length(byte);
    if (length == 1) {
        if (byte < 0x20 && byte != '\n' && byte != '\t') {
            utf8_print_replacement(printer);
        } else if (byte == 0x7F) {
            utf8_print_replacement(printer);
        } else {
            fputc(byte, printer->out);
        }
    } else if (length == 0) {
        utf8_print_replacement(printer);
    } else {
        printer->pending[0] = byte;
        printer->pending_length = 1;
    }
}

// Ends the stream: an incomplete character left over is shown as U+FFFD.
static inline void utf8_printer_flush(Utf8Printer *printer) {
    if (printer->pending_length > 0) {
        utf8_print_replacement(printer);
        printer->pending_length = 0;
    }
    fflush(printer->out);
}

static inline void tokenizer_print_token(const Tokenizer *tokenizer, Utf8Printer *printer,
                                         int token) {
    if (token < 0 || token >= tokenizer->vocab_size) {
        utf8_print_replacement(printer);
        return;
    }
    for (int i = 0; i < tokenizer->token_lengths[token]; i++) {
        utf8_printer_put(printer, tokenizer->token_bytes[token][i]);
    }
}

#endif // LLMC_TOKENIZER_H
