// Training a byte-level BPE vocabulary: count the pieces of the text (pre-tokenized with the GPT-2
// or GPT-4 pattern, on all threads), then merge the most frequent adjacent pair, again and again.
//
// The rules, which tests/bpe_train_reference.py implements the plain way:
// - ids 0..255 are the bytes 0..255; merge i makes id 256 + i; the special tokens follow, in the
//   order given (<|endoftext|> first). The text of a special token in the input is a boundary, not
//   text: it is neither counted nor merged.
// - a piece's pairs are all its adjacent pairs, overlapping ones included ("aaa" has (a,a) twice);
//   a pair's count is summed over all pieces, each weighted by how often the piece occurs.
// - each step merges the pair with the highest count; ties go to the smallest (left id, right id).
//   Pairs whose token would be longer than 255 bytes (the file format's limit) are never merged.
//   In each piece, the pair's occurrences are replaced left to right.
// - training stops early when no pair is left (every piece is one token).
#ifndef LLMC_BPE_TRAIN_H
#define LLMC_BPE_TRAIN_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "bpe.h"
#include "pretokenize.h"
#include "utils.h"

// ----------------------------------------------------------------------------------------------
// piece counts: bytes -> count, open addressing over an arena of the pieces' bytes

typedef struct {
    uint64_t hash;
    uint64_t count;
    size_t offset; // into arena
    uint32_t length;
    uint32_t used;
} PieceSlot;

typedef struct {
    PieceSlot *slots;
    size_t mask, num_used;
    uint8_t *arena;
    size_t arena_size, arena_capacity;
} PieceCounts;

static inline void piece_counts_init(PieceCounts *counts) {
    memset(counts, 0, sizeof(*counts));
    counts->mask = 4095;
    counts->slots = (PieceSlot *)calloc_check(counts->mask + 1, sizeof(PieceSlot), "piece counts");
}

static inline void piece_counts_free(PieceCounts *counts) {
    free(counts->slots);
    free(counts->arena);
    memset(counts, 0, sizeof(*counts));
}

static inline void piece_counts_grow(PieceCounts *counts) {
    size_t size = 2 * (counts->mask + 1);
    PieceSlot *slots = (PieceSlot *)calloc_check(size, sizeof(PieceSlot), "piece counts");
    for (size_t i = 0; i <= counts->mask; i++) {
        if (!counts->slots[i].used) continue;
        size_t slot = counts->slots[i].hash & (size - 1);
        while (slots[slot].used) slot = (slot + 1) & (size - 1);
        slots[slot] = counts->slots[i];
    }
    free(counts->slots);
    counts->slots = slots;
    counts->mask = size - 1;
}

static inline void piece_counts_add(PieceCounts *counts, const uint8_t *bytes, size_t n,
                                    uint64_t count) {
    uint64_t h = bpe_hash_bytes(bytes, n);
    size_t slot = h & counts->mask;
    for (;; slot = (slot + 1) & counts->mask) {
        PieceSlot *s = &counts->slots[slot];
        if (!s->used) break;
        if (s->hash == h && s->length == n && memcmp(counts->arena + s->offset, bytes, n) == 0) {
            s->count += count;
            return;
        }
    }
    if (counts->arena_size + n > counts->arena_capacity) {
        size_t capacity = counts->arena_capacity ? counts->arena_capacity : 1 << 16;
        while (capacity < counts->arena_size + n) capacity *= 2;
        counts->arena = (uint8_t *)realloc(counts->arena, capacity);
        if (counts->arena == NULL) fatal("out of memory counting pieces");
        counts->arena_capacity = capacity;
    }
    memcpy(counts->arena + counts->arena_size, bytes, n);
    PieceSlot *s = &counts->slots[slot];
    s->hash = h;
    s->count = count;
    s->offset = counts->arena_size;
    s->length = (uint32_t)n;
    s->used = 1;
    counts->arena_size += n;
    if (++counts->num_used * 2 > counts->mask + 1) piece_counts_grow(counts);
}

// Counts the pieces of text, with the text of the special tokens taken out as boundaries.
static inline void count_pieces(PieceCounts *counts, const uint8_t *text, size_t len,
                                SplitPattern pattern, const char *const *specials,
                                int num_specials) {
    size_t pos = 0;
    while (pos < len) {
        size_t next = len, skip = 0;
        for (int k = 0; k < num_specials; k++) {
            size_t n = strlen(specials[k]);
            const uint8_t *hit = find_bytes(text + pos, len - pos, specials[k], n);
            if (hit != NULL &&
                ((size_t)(hit - text) < next || ((size_t)(hit - text) == next && n > skip))) {
                next = (size_t)(hit - text);
                skip = n;
            }
        }
        while (pos < next) {
            size_t end = pretokenize_next(pattern, text, next, pos);
            piece_counts_add(counts, text + pos, end - pos, 1);
            pos = end;
        }
        pos = next + skip;
    }
}

// ----------------------------------------------------------------------------------------------
// the merge loop

typedef struct {
    int32_t left, right;
    int64_t count;
    int32_t *words; // words that may contain the pair (stale entries are skipped)
    int32_t num_words, words_capacity;
    int32_t banned; // merged token would exceed BPE_MAX_TOKEN_BYTES
} TrainPair;

typedef struct {
    int64_t count;
    int32_t left, right;
    int32_t pair; // index into pairs
} TrainHeapEntry;

typedef struct {
    // pieces: ids of word w are ids[start[w] .. start[w] + length[w])
    int32_t *ids;
    size_t *start;
    int32_t *length;
    uint64_t *frequency;
    int32_t *stamp; // last merge that processed the word
    size_t num_words;
    // pairs: map (left, right) -> index
    TrainPair *pairs;
    size_t num_pairs, pairs_capacity;
    uint64_t *map_keys;
    int32_t *map_values;
    size_t map_mask;
    TrainHeapEntry *heap;
    size_t heap_size, heap_capacity;
    // token lengths so far
    int32_t *token_length;
} BPETrainer;

static inline int32_t trainer_pair_index(BPETrainer *t, int32_t left, int32_t right, int create) {
    uint64_t key = bpe_pair_key(left, right);
    size_t slot = bpe_pair_slot(key) & t->map_mask;
    for (;; slot = (slot + 1) & t->map_mask) {
        if (t->map_keys[slot] == key) return t->map_values[slot];
        if (t->map_keys[slot] == UINT64_MAX) break;
    }
    if (!create) return -1;
    if (t->num_pairs == t->pairs_capacity) {
        t->pairs_capacity = t->pairs_capacity ? 2 * t->pairs_capacity : 1 << 16;
        t->pairs = (TrainPair *)realloc(t->pairs, t->pairs_capacity * sizeof(TrainPair));
        if (t->pairs == NULL) fatal("out of memory training BPE");
    }
    int32_t index = (int32_t)t->num_pairs++;
    TrainPair *p = &t->pairs[index];
    memset(p, 0, sizeof(*p));
    p->left = left;
    p->right = right;
    p->banned = t->token_length[left] + t->token_length[right] > BPE_MAX_TOKEN_BYTES;
    t->map_keys[slot] = key;
    t->map_values[slot] = index;
    if (t->num_pairs * 2 > t->map_mask + 1) { // grow the map
        size_t size = 2 * (t->map_mask + 1);
        uint64_t *keys = (uint64_t *)malloc_check(size * sizeof(uint64_t), "pair map");
        int32_t *values = (int32_t *)malloc_check(size * sizeof(int32_t), "pair map");
        for (size_t i = 0; i < size; i++) keys[i] = UINT64_MAX;
        for (size_t i = 0; i <= t->map_mask; i++) {
            if (t->map_keys[i] == UINT64_MAX) continue;
            size_t s = bpe_pair_slot(t->map_keys[i]) & (size - 1);
            while (keys[s] != UINT64_MAX) s = (s + 1) & (size - 1);
            keys[s] = t->map_keys[i];
            values[s] = t->map_values[i];
        }
        free(t->map_keys);
        free(t->map_values);
        t->map_keys = keys;
        t->map_values = values;
        t->map_mask = size - 1;
    }
    return index;
}

static inline void trainer_pair_add_word(TrainPair *p, int32_t word) {
    if (p->num_words > 0 && p->words[p->num_words - 1] == word) return;
    if (p->num_words == p->words_capacity) {
        p->words_capacity = p->words_capacity ? 2 * p->words_capacity : 4;
        p->words = (int32_t *)realloc(p->words, (size_t)p->words_capacity * sizeof(int32_t));
        if (p->words == NULL) fatal("out of memory training BPE");
    }
    p->words[p->num_words++] = word;
}

// max-heap on count; ties: smallest (left, right) first
static inline int trainer_heap_before(const TrainHeapEntry *a, const TrainHeapEntry *b) {
    if (a->count != b->count) return a->count > b->count;
    if (a->left != b->left) return a->left < b->left;
    return a->right < b->right;
}

static inline void trainer_heap_push(BPETrainer *t, int32_t pair) {
    const TrainPair *p = &t->pairs[pair];
    if (p->count <= 0 || p->banned) return;
    if (t->heap_size == t->heap_capacity) {
        t->heap_capacity = t->heap_capacity ? 2 * t->heap_capacity : 1 << 16;
        t->heap = (TrainHeapEntry *)realloc(t->heap, t->heap_capacity * sizeof(TrainHeapEntry));
        if (t->heap == NULL) fatal("out of memory training BPE");
    }
    TrainHeapEntry entry = {p->count, p->left, p->right, pair};
    size_t i = t->heap_size++;
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!trainer_heap_before(&entry, &t->heap[parent])) break;
        t->heap[i] = t->heap[parent];
        i = parent;
    }
    t->heap[i] = entry;
}

static inline TrainHeapEntry trainer_heap_pop(BPETrainer *t) {
    TrainHeapEntry top = t->heap[0];
    TrainHeapEntry last = t->heap[--t->heap_size];
    size_t n = t->heap_size, i = 0;
    for (;;) {
        size_t child = 2 * i + 1;
        if (child >= n) break;
        if (child + 1 < n && trainer_heap_before(&t->heap[child + 1], &t->heap[child])) child++;
        if (!trainer_heap_before(&t->heap[child], &last)) break;
        t->heap[i] = t->heap[child];
        i = child;
    }
    if (n > 0) t->heap[i] = last;
    return top;
}

// Adds (sign +1) or removes (-1) the pairs of word w to/from the counts; with sign +1, registers
// the word with each pair that contains token `fresh` (a token just made) in *touched.
static inline void trainer_count_word(BPETrainer *t, int32_t w, int sign, int32_t fresh,
                                      int32_t **touched, size_t *num_touched, size_t *capacity) {
    const int32_t *ids = t->ids + t->start[w];
    int64_t f = (int64_t)t->frequency[w] * sign;
    for (int32_t i = 0; i + 1 < t->length[w]; i++) {
        int32_t index = trainer_pair_index(t, ids[i], ids[i + 1], 1);
        TrainPair *p = &t->pairs[index];
        p->count += f;
        if (sign > 0 && (ids[i] == fresh || ids[i + 1] == fresh)) {
            trainer_pair_add_word(p, w);
            if (*num_touched == *capacity) {
                *capacity = *capacity ? 2 * *capacity : 256;
                *touched = (int32_t *)realloc(*touched, *capacity * sizeof(int32_t));
                if (*touched == NULL) fatal("out of memory training BPE");
            }
            (*touched)[(*num_touched)++] = index;
        }
    }
}

typedef struct {
    int vocab_size; // total, special tokens included
    SplitPattern pattern;
    const char *const *specials; // special tokens' text; <|endoftext|> among them
    int num_specials;
    int verbose; // print a progress line
} BPETrainConfig;

// Trains on the counted pieces and builds the vocabulary into bpe. Returns the number of merges
// made (fewer than asked when the pieces run out of pairs).
static inline int bpe_train(BPE *bpe, const PieceCounts *counts, const BPETrainConfig *config) {
    int num_merges = config->vocab_size - 256 - config->num_specials;
    if (num_merges < 0) {
        fatal("--vocab-size %d is too small: 256 bytes + %d special tokens need at least %d",
              config->vocab_size, config->num_specials, 256 + config->num_specials);
    }
    BPETrainer t;
    memset(&t, 0, sizeof(t));
    // words: every piece as its bytes
    t.num_words = counts->num_used;
    t.ids = (int32_t *)malloc_check(counts->arena_size * sizeof(int32_t) + 4, "training words");
    t.start = (size_t *)malloc_check(t.num_words * sizeof(size_t) + 8, "training words");
    t.length = (int32_t *)malloc_check(t.num_words * sizeof(int32_t) + 4, "training words");
    t.frequency = (uint64_t *)malloc_check(t.num_words * sizeof(uint64_t) + 8, "training words");
    t.stamp = (int32_t *)malloc_check(t.num_words * sizeof(int32_t) + 4, "training words");
    size_t w = 0, at = 0;
    for (size_t i = 0; i <= counts->mask; i++) {
        const PieceSlot *s = &counts->slots[i];
        if (!s->used) continue;
        t.start[w] = at;
        t.length[w] = (int32_t)s->length;
        t.frequency[w] = s->count;
        t.stamp[w] = -1;
        for (uint32_t k = 0; k < s->length; k++) t.ids[at++] = counts->arena[s->offset + k];
        w++;
    }
    t.token_length =
        (int32_t *)malloc_check((size_t)(256 + num_merges + 1) * sizeof(int32_t), "lengths");
    for (int b = 0; b < 256; b++) t.token_length[b] = 1;
    t.map_mask = (1 << 16) - 1;
    t.map_keys = (uint64_t *)malloc_check((t.map_mask + 1) * sizeof(uint64_t), "pair map");
    t.map_values = (int32_t *)malloc_check((t.map_mask + 1) * sizeof(int32_t), "pair map");
    for (size_t i = 0; i <= t.map_mask; i++) t.map_keys[i] = UINT64_MAX;
    // initial pair counts, each word registered with each of its pairs
    for (size_t word = 0; word < t.num_words; word++) {
        const int32_t *ids = t.ids + t.start[word];
        for (int32_t i = 0; i + 1 < t.length[word]; i++) {
            int32_t index = trainer_pair_index(&t, ids[i], ids[i + 1], 1);
            t.pairs[index].count += (int64_t)t.frequency[word];
            trainer_pair_add_word(&t.pairs[index], (int32_t)word);
        }
    }
    for (size_t i = 0; i < t.num_pairs; i++) trainer_heap_push(&t, (int32_t)i);

    int32_t *merges =
        (int32_t *)malloc_check(2 * (size_t)num_merges * sizeof(int32_t) + 8, "merges");
    int32_t *touched = NULL;
    size_t num_touched = 0, touched_capacity = 0;
    int done = 0;
    while (done < num_merges && t.heap_size > 0) {
        TrainHeapEntry top = trainer_heap_pop(&t);
        TrainPair *best = &t.pairs[top.pair];
        if (best->count != top.count) { // stale: requeue with its current count
            trainer_heap_push(&t, top.pair);
            continue;
        }
        int32_t a = best->left, b = best->right, fresh = 256 + done;
        merges[2 * done] = a;
        merges[2 * done + 1] = b;
        t.token_length[fresh] = t.token_length[a] + t.token_length[b];
        num_touched = 0;
        // the list may grow while we walk it (a word can hold (a,b) next to the new token)
        int32_t *words = best->words;
        int32_t num_words = best->num_words;
        best->words = NULL;
        best->num_words = 0;
        best->words_capacity = 0;
        for (int32_t k = 0; k < num_words; k++) {
            int32_t word = words[k];
            if (t.stamp[word] == done) continue;
            t.stamp[word] = done;
            int32_t *ids = t.ids + t.start[word];
            int32_t n = t.length[word], found = 0;
            for (int32_t i = 0; i + 1 < n; i++) found |= ids[i] == a && ids[i + 1] == b;
            if (!found) continue;
            trainer_count_word(&t, word, -1, fresh, &touched, &num_touched, &touched_capacity);
            int32_t out = 0;
            for (int32_t i = 0; i < n; i++) {
                if (i + 1 < n && ids[i] == a && ids[i + 1] == b) {
                    ids[out++] = fresh;
                    i++;
                } else {
                    ids[out++] = ids[i];
                }
            }
            t.length[word] = out;
            trainer_count_word(&t, word, +1, fresh, &touched, &num_touched, &touched_capacity);
        }
        free(words);
        for (size_t k = 0; k < num_touched; k++) {
            TrainPair *p = &t.pairs[touched[k]];
            if (p->count > 0 && !p->banned) trainer_heap_push(&t, touched[k]);
        }
        done++;
        if (config->verbose && (done % 1000 == 0 || done == num_merges)) {
            fprintf(stderr, "\rtrain: %d/%d merges", done, num_merges);
            if (done == num_merges) fprintf(stderr, "\n");
        }
    }
    if (config->verbose && done < num_merges && done % 1000 != 0) fprintf(stderr, "\n");

    // the vocabulary: bytes, merges, special tokens
    int V = 256 + done + config->num_specials;
    bpe_begin(bpe, V, "trained vocabulary");
    uint8_t byte;
    for (int b = 0; b < 256; b++) {
        byte = (uint8_t)b;
        bpe_set_token(bpe, b, &byte, 1);
    }
    uint8_t joined[2 * BPE_MAX_TOKEN_BYTES];
    for (int i = 0; i < done; i++) {
        int32_t a = merges[2 * i], b = merges[2 * i + 1];
        size_t na = bpe->length[a], nb = bpe->length[b];
        memcpy(joined, bpe_token_bytes(bpe, a), na);
        memcpy(joined + na, bpe_token_bytes(bpe, b), nb);
        bpe_set_token(bpe, 256 + i, joined, na + nb);
    }
    int32_t *special_ids =
        (int32_t *)malloc_check((size_t)config->num_specials * sizeof(int32_t) + 4, "specials");
    for (int k = 0; k < config->num_specials; k++) {
        special_ids[k] = 256 + done + k;
        bpe_set_token(bpe, special_ids[k], (const uint8_t *)config->specials[k],
                      strlen(config->specials[k]));
    }
    bpe_index_tokens(bpe);
    for (int i = 0; i < done; i++) bpe_add_merge(bpe, merges[2 * i], merges[2 * i + 1]);
    bpe_finish(bpe, special_ids, config->num_specials, 0, -1, config->pattern);

    for (size_t i = 0; i < t.num_pairs; i++) free(t.pairs[i].words);
    free(t.pairs);
    free(t.map_keys);
    free(t.map_values);
    free(t.heap);
    free(t.ids);
    free(t.start);
    free(t.length);
    free(t.frequency);
    free(t.stamp);
    free(t.token_length);
    free(touched);
    free(merges);
    free(special_ids);
    return done;
}

#endif // LLMC_BPE_TRAIN_H
