// Byte-level BPE: the vocabulary with its merge ranks and special tokens, the encoder (identical
// ids to tiktoken) and the decoder, and our extended tokenizer file (docs/formats.md), which llm.c
// still reads as a plain tokenizer file. Loading GPT-2's encoder.json + vocab.bpe and tiktoken
// rank files is in llmc/bpe_load.h; training in llmc/bpe_train.h.
//
// Encoding (tiktoken's rule): pre-tokenize (llmc/pretokenize.h); a piece that is itself a token is
// that token; otherwise start from its single bytes and repeatedly merge the adjacent pair whose
// concatenation is a token with the lowest merge rank, the leftmost pair on ties. A pair's priority
// is the rank of the token it makes, so a token forms from any split of it into two tokens, not
// only from the split the merge list records. Special tokens are never made by merges; their text
// is recognised only by bpe_encode with allow_special set (earliest match, then the longest).
//
// The vocabulary is read-only once built, so any number of threads can encode with it at once,
// each with its own BPEWork.
#ifndef LLMC_BPE_H
#define LLMC_BPE_H

#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "formats.h"
#include "pretokenize.h"
#include "utils.h"

#define BPE_EXTENSION_VERSION 1
#define BPE_MAX_TOKEN_BYTES 255
#define BPE_MAX_VOCAB (1 << 24)
#define BPE_NO_RANK INT32_MAX

enum { BPE_KIND_UNSET = 0, BPE_KIND_BYTE = 1, BPE_KIND_MERGED = 2, BPE_KIND_SPECIAL = 3 };

typedef struct {
    uint64_t key; // (left << 32) | right; UINT64_MAX = empty
    int32_t rank; // BPE_NO_RANK: no merge
    int32_t result;
} BPEPairSlot;

typedef struct {
    int vocab_size; // V: ids 0..V-1
    int eot_token;  // id of <|endoftext|>
    int num_merges;
    int num_special;
    SplitPattern pattern;
    const char *source; // file named in errors while building
    // token table: token i is length[i] bytes at arena + offset[i]
    uint8_t *arena;
    size_t arena_size, arena_capacity;
    uint32_t *offset;
    uint8_t *length;
    uint8_t *kind;   // BPE_KIND_*
    int32_t *rank;   // merge index that makes the token, BPE_NO_RANK for bytes and specials
    int32_t *merges; // (num_merges, 2): left and right id of merge i; merge i makes merge_result[i]
    int32_t *merge_result;
    int32_t *special_ids; // (num_special)
    int32_t byte_to_id[256];
    // bytes -> id over all tokens: open addressing, -1 = empty
    size_t token_mask;
    int32_t *token_slots;
    uint32_t *token_slot_hash;
    // (left, right) -> (rank, result) for every split of every merged token into two tokens; one
    // 16-byte slot per pair so a probe touches one cache line
    size_t pair_mask;
    BPEPairSlot *pairs;
    // the same for pairs of two single bytes, indexed by (first byte << 8) | second byte: the first
    // round of every merge needs no hashing
    BPEPairSlot *byte_pairs;
} BPE;

// ----------------------------------------------------------------------------------------------
// hashing

static inline uint64_t bpe_mix64(uint64_t h) {
    h ^= h >> 32;
    h *= 0xd6e8feb86659fd93ull;
    h ^= h >> 32;
    return h;
}

static inline uint64_t bpe_hash_bytes(const uint8_t *bytes, size_t n) {
    uint64_t h = 0x9e3779b97f4a7c15ull ^ ((uint64_t)n * 0xff51afd7ed558ccdull);
    while (n >= 8) {
        uint64_t word;
        memcpy(&word, bytes, 8);
        h = (h ^ word) * 0xbf58476d1ce4e5b9ull;
        h ^= h >> 29;
        bytes += 8;
        n -= 8;
    }
    if (n > 0) {
        uint64_t word = 0;
        for (size_t i = 0; i < n; i++) word |= (uint64_t)bytes[i] << (8 * i);
        h = (h ^ word) * 0x94d049bb133111ebull;
    }
    return bpe_mix64(h);
}

static inline uint64_t bpe_pair_key(int32_t left, int32_t right) {
    return ((uint64_t)(uint32_t)left << 32) | (uint32_t)right;
}

static inline size_t bpe_pair_slot(uint64_t key) {
    return (size_t)bpe_mix64(key * 0x9e3779b97f4a7c15ull);
}

static inline size_t bpe_table_size(size_t count) {
    size_t size = 1024;
    while (size < 2 * count) size *= 2;
    return size;
}

// Token id whose bytes are exactly bytes[0..n), or -1.
static inline int32_t bpe_lookup(const BPE *bpe, const uint8_t *bytes, size_t n) {
    if (n == 0 || n > BPE_MAX_TOKEN_BYTES) return -1;
    uint64_t h = bpe_hash_bytes(bytes, n);
    uint32_t tag = (uint32_t)(h >> 32);
    for (size_t slot = (size_t)h & bpe->token_mask;; slot = (slot + 1) & bpe->token_mask) {
        int32_t id = bpe->token_slots[slot];
        if (id < 0) return -1;
        if (bpe->token_slot_hash[slot] == tag && bpe->length[id] == n &&
            memcmp(bpe->arena + bpe->offset[id], bytes, n) == 0) {
            return id;
        }
    }
}

static inline void bpe_insert_token(BPE *bpe, int32_t id) {
    const uint8_t *bytes = bpe->arena + bpe->offset[id];
    size_t n = bpe->length[id];
    uint64_t h = bpe_hash_bytes(bytes, n);
    for (size_t slot = (size_t)h & bpe->token_mask;; slot = (slot + 1) & bpe->token_mask) {
        int32_t other = bpe->token_slots[slot];
        if (other < 0) {
            bpe->token_slots[slot] = id;
            bpe->token_slot_hash[slot] = (uint32_t)(h >> 32);
            return;
        }
        if (bpe->length[other] == n && memcmp(bpe->arena + bpe->offset[other], bytes, n) == 0) {
            fatal("%s: tokens %d and %d have the same bytes (every token must be distinct)",
                  bpe->source, other, id);
        }
    }
}

// Rank and result of merging adjacent tokens (left, right); rank BPE_NO_RANK if they do not merge.
static inline int32_t bpe_pair_lookup(const BPE *bpe, int32_t left, int32_t right,
                                      int32_t *result) {
    uint64_t key = bpe_pair_key(left, right);
    for (size_t slot = bpe_pair_slot(key) & bpe->pair_mask;; slot = (slot + 1) & bpe->pair_mask) {
        const BPEPairSlot *p = &bpe->pairs[slot];
        if (p->key == key) {
            *result = p->result;
            return p->rank;
        }
        if (p->key == UINT64_MAX) {
            *result = -1;
            return BPE_NO_RANK;
        }
    }
}

// ----------------------------------------------------------------------------------------------
// building a vocabulary: bpe_begin, bpe_set_token for every id, bpe_index_tokens, bpe_add_merge in
// rank order, bpe_finish. Each step checks what it is given and names bpe->source in its errors.

static inline void bpe_begin(BPE *bpe, int vocab_size, const char *source) {
    memset(bpe, 0, sizeof(*bpe));
    bpe->source = source;
    if (vocab_size < 257 || vocab_size > BPE_MAX_VOCAB) {
        fatal("%s: vocabulary size %d out of range (257..%d: 256 bytes and at least one more)",
              source, vocab_size, BPE_MAX_VOCAB);
    }
    bpe->vocab_size = vocab_size;
    bpe->eot_token = -1;
    size_t V = (size_t)vocab_size;
    bpe->arena_capacity = V * 8;
    bpe->arena = (uint8_t *)malloc_check(bpe->arena_capacity, "token bytes");
    bpe->arena_size = 0;
    bpe->offset = (uint32_t *)calloc_check(V, sizeof(uint32_t), "token offsets");
    bpe->length = (uint8_t *)calloc_check(V, 1, "token lengths");
    bpe->kind = (uint8_t *)calloc_check(V, 1, "token kinds");
    bpe->rank = (int32_t *)malloc_check(V * sizeof(int32_t), "token ranks");
    for (size_t i = 0; i < V; i++) bpe->rank[i] = BPE_NO_RANK;
    bpe->merges = (int32_t *)malloc_check(V * 2 * sizeof(int32_t), "merges");
    bpe->merge_result = (int32_t *)malloc_check(V * sizeof(int32_t), "merge results");
    bpe->special_ids = (int32_t *)malloc_check(V * sizeof(int32_t), "special tokens");
    for (int b = 0; b < 256; b++) bpe->byte_to_id[b] = -1;
}

static inline void bpe_set_token(BPE *bpe, int32_t id, const uint8_t *bytes, size_t n) {
    if (id < 0 || id >= bpe->vocab_size) {
        fatal("%s: token id %d outside the vocabulary (V=%d)", bpe->source, id, bpe->vocab_size);
    }
    if (bpe->length[id] != 0) fatal("%s: token id %d is given twice", bpe->source, id);
    if (n == 0 || n > BPE_MAX_TOKEN_BYTES) {
        fatal("%s: token %d is %zu bytes long (1..%d allowed)", bpe->source, id, n,
              BPE_MAX_TOKEN_BYTES);
    }
    if (bpe->arena_size + n > bpe->arena_capacity) {
        bpe->arena_capacity *= 2;
        bpe->arena = (uint8_t *)realloc(bpe->arena, bpe->arena_capacity);
        if (bpe->arena == NULL) fatal("out of memory growing the token bytes");
    }
    memcpy(bpe->arena + bpe->arena_size, bytes, n);
    bpe->offset[id] = (uint32_t)bpe->arena_size;
    bpe->length[id] = (uint8_t)n;
    bpe->arena_size += n;
}

// Every id has bytes; builds the bytes -> id table; single-byte tokens are the 256 byte tokens.
static inline void bpe_index_tokens(BPE *bpe) {
    size_t V = (size_t)bpe->vocab_size;
    for (size_t i = 0; i < V; i++) {
        if (bpe->length[i] == 0) fatal("%s: token id %zu has no bytes", bpe->source, i);
    }
    size_t size = bpe_table_size(V);
    bpe->token_mask = size - 1;
    bpe->token_slots = (int32_t *)malloc_check(size * sizeof(int32_t), "token table");
    bpe->token_slot_hash = (uint32_t *)calloc_check(size, sizeof(uint32_t), "token table");
    for (size_t i = 0; i < size; i++) bpe->token_slots[i] = -1;
    for (size_t i = 0; i < V; i++) {
        bpe_insert_token(bpe, (int32_t)i);
        if (bpe->length[i] == 1) {
            bpe->kind[i] = BPE_KIND_BYTE;
            bpe->byte_to_id[bpe->arena[bpe->offset[i]]] = (int32_t)i;
        }
    }
    for (int b = 0; b < 256; b++) {
        if (bpe->byte_to_id[b] < 0) {
            fatal("%s: no token for byte 0x%02x (byte-level BPE needs all 256)", bpe->source, b);
        }
    }
}

// Adds the next merge (rank = number of merges so far): left and right must be bytes or made by
// earlier merges, and their concatenation must be a token not made yet. Returns its id.
static inline int32_t bpe_add_merge(BPE *bpe, int32_t left, int32_t right) {
    int32_t index = bpe->num_merges;
    int32_t parts[2] = {left, right};
    for (int k = 0; k < 2; k++) {
        int32_t id = parts[k];
        if (id < 0 || id >= bpe->vocab_size) {
            fatal("%s: merge %d: token id %d outside the vocabulary (V=%d)", bpe->source, index, id,
                  bpe->vocab_size);
        }
        if (bpe->kind[id] != BPE_KIND_BYTE && bpe->kind[id] != BPE_KIND_MERGED) {
            fatal("%s: merge %d uses token %d before any merge makes it", bpe->source, index, id);
        }
    }
    uint8_t joined[2 * BPE_MAX_TOKEN_BYTES];
    size_t n_left = bpe->length[left], n_right = bpe->length[right];
    memcpy(joined, bpe->arena + bpe->offset[left], n_left);
    memcpy(joined + n_left, bpe->arena + bpe->offset[right], n_right);
    int32_t result = bpe_lookup(bpe, joined, n_left + n_right);
    if (result < 0) {
        fatal("%s: merge %d (tokens %d + %d) makes bytes that are not a token", bpe->source, index,
              left, right);
    }
    if (bpe->kind[result] != BPE_KIND_UNSET) {
        fatal("%s: merge %d (tokens %d + %d) makes token %d, which %s", bpe->source, index, left,
              right, result,
              bpe->kind[result] == BPE_KIND_MERGED ? "an earlier merge already makes"
                                                   : "is a single byte");
    }
    bpe->kind[result] = BPE_KIND_MERGED;
    bpe->rank[result] = index;
    bpe->merges[2 * index] = left;
    bpe->merges[2 * index + 1] = right;
    bpe->merge_result[index] = result;
    bpe->num_merges++;
    return result;
}

static inline void bpe_pair_insert(BPE *bpe, int32_t left, int32_t right, int32_t rank,
                                   int32_t result) {
    uint64_t key = bpe_pair_key(left, right);
    for (size_t slot = bpe_pair_slot(key) & bpe->pair_mask;; slot = (slot + 1) & bpe->pair_mask) {
        BPEPairSlot *p = &bpe->pairs[slot];
        if (p->key == UINT64_MAX) {
            p->key = key;
            p->rank = rank;
            p->result = result;
            return;
        }
        if (p->key == key) return; // a byte string has one id: same result
    }
}

// Marks the special tokens (ids, or with derive_specials every token no merge makes), sets the
// eot token (eot_token, or -1: the special token "<|endoftext|>"), and builds the pair table.
static inline void bpe_finish(BPE *bpe, const int32_t *special_ids, int num_special,
                              int derive_specials, int eot_token, SplitPattern pattern) {
    int V = bpe->vocab_size;
    for (int k = 0; k < num_special; k++) {
        int32_t id = special_ids[k];
        if (id < 0 || id >= V) {
            fatal("%s: special token %d: id %d outside the vocabulary (V=%d)", bpe->source, k, id,
                  V);
        }
        if (bpe->kind[id] != BPE_KIND_UNSET) {
            fatal("%s: special token %d (id %d) is also a %s token", bpe->source, k, id,
                  bpe->kind[id] == BPE_KIND_SPECIAL ? "special" : "byte or merged");
        }
        bpe->kind[id] = BPE_KIND_SPECIAL;
        bpe->special_ids[bpe->num_special++] = id;
    }
    for (int id = 0; id < V; id++) {
        if (bpe->kind[id] != BPE_KIND_UNSET) continue;
        if (!derive_specials) {
            fatal("%s: token %d is neither a byte, nor made by a merge, nor special", bpe->source,
                  id);
        }
        bpe->kind[id] = BPE_KIND_SPECIAL;
        bpe->special_ids[bpe->num_special++] = id;
    }
    if (eot_token < 0) {
        for (int k = 0; k < bpe->num_special; k++) {
            int32_t id = bpe->special_ids[k];
            if (bpe->length[id] == 13 &&
                memcmp(bpe->arena + bpe->offset[id], "<|endoftext|>", 13) == 0) {
                eot_token = id;
            }
        }
        if (eot_token < 0) {
            fatal("%s: no special token <|endoftext|> (needed to separate documents)", bpe->source);
        }
    }
    if (eot_token >= V || bpe->kind[eot_token] != BPE_KIND_SPECIAL) {
        fatal("%s: eot token %d is not a special token", bpe->source, eot_token);
    }
    bpe->eot_token = eot_token;
    bpe->pattern = pattern;
    // every split of a merged token into two tokens merges with that token's rank
    size_t num_pairs = 0;
    for (int id = 0; id < V; id++) {
        if (bpe->kind[id] == BPE_KIND_MERGED) num_pairs += bpe->length[id] - 1u;
    }
    size_t size = bpe_table_size(num_pairs);
    bpe->pair_mask = size - 1;
    bpe->pairs = (BPEPairSlot *)malloc_check(size * sizeof(BPEPairSlot), "pair table");
    for (size_t i = 0; i < size; i++) bpe->pairs[i].key = UINT64_MAX;
    for (int id = 0; id < V; id++) {
        if (bpe->kind[id] != BPE_KIND_MERGED) continue;
        const uint8_t *bytes = bpe->arena + bpe->offset[id];
        size_t n = bpe->length[id];
        for (size_t split = 1; split < n; split++) {
            int32_t left = bpe_lookup(bpe, bytes, split);
            int32_t right = bpe_lookup(bpe, bytes + split, n - split);
            if (left < 0 || right < 0) continue;
            if (bpe->kind[left] == BPE_KIND_SPECIAL || bpe->kind[right] == BPE_KIND_SPECIAL) {
                continue;
            }
            bpe_pair_insert(bpe, left, right, bpe->rank[id], id);
        }
    }
    bpe->byte_pairs = (BPEPairSlot *)malloc_check(65536 * sizeof(BPEPairSlot), "byte pairs");
    for (int pair = 0; pair < 65536; pair++) {
        BPEPairSlot *p = &bpe->byte_pairs[pair];
        p->key = bpe_pair_key(bpe->byte_to_id[pair >> 8], bpe->byte_to_id[pair & 255]);
        p->rank = bpe_pair_lookup(bpe, bpe->byte_to_id[pair >> 8], bpe->byte_to_id[pair & 255],
                                  &p->result);
    }
    bpe->source = NULL;
}

static inline void bpe_free(BPE *bpe) {
    free(bpe->arena);
    free(bpe->offset);
    free(bpe->length);
    free(bpe->kind);
    free(bpe->rank);
    free(bpe->merges);
    free(bpe->merge_result);
    free(bpe->special_ids);
    free(bpe->token_slots);
    free(bpe->token_slot_hash);
    free(bpe->pairs);
    free(bpe->byte_pairs);
    memset(bpe, 0, sizeof(*bpe));
}

// First occurrence of needle[0..k) in haystack[0..n), or NULL (memmem is a GNU extension).
static inline const uint8_t *find_bytes(const uint8_t *haystack, size_t n, const void *needle,
                                        size_t k) {
    const uint8_t *pattern = (const uint8_t *)needle;
    if (k == 0 || k > n) return NULL;
    const uint8_t *end = haystack + n - k + 1;
    for (const uint8_t *p = haystack; p < end; p++) {
        p = (const uint8_t *)memchr(p, pattern[0], (size_t)(end - p));
        if (p == NULL) return NULL;
        if (memcmp(p, pattern, k) == 0) return p;
    }
    return NULL;
}

static inline const uint8_t *bpe_token_bytes(const BPE *bpe, int32_t id) {
    return bpe->arena + bpe->offset[id];
}

// ----------------------------------------------------------------------------------------------
// encoding

typedef struct {
    int32_t *data;
    size_t size, capacity;
} TokenList;

static inline void token_list_reserve(TokenList *list, size_t extra) {
    if (list->size + extra <= list->capacity) return;
    size_t capacity = list->capacity < 1024 ? 1024 : list->capacity;
    while (capacity < list->size + extra) capacity *= 2;
    int32_t *data = (int32_t *)realloc(list->data, capacity * sizeof(int32_t));
    if (data == NULL) fatal("out of memory growing a token list to %zu tokens", capacity);
    list->data = data;
    list->capacity = capacity;
}

static inline void token_list_push(TokenList *list, int32_t id) {
    if (list->size == list->capacity) token_list_reserve(list, 1);
    list->data[list->size++] = id;
}

static inline void token_list_free(TokenList *list) {
    free(list->data);
    memset(list, 0, sizeof(*list));
}

// Scratch for merging long pieces (a heap over a linked list); one per thread.
typedef struct {
    int32_t rank;
    int32_t result; // the token the pair makes
    uint32_t left;  // the left part, named by its first byte (stable while it lives)
    uint32_t right;
    uint32_t left_version, right_version;
} BPEHeapEntry;

typedef struct {
    size_t capacity; // bytes of the longest piece the arrays hold
    int32_t *ids;
    uint32_t *next, *prev, *version;
    BPEHeapEntry *heap;
    size_t heap_size, heap_capacity;
} BPEWork;

static inline void bpe_work_free(BPEWork *work) {
    free(work->ids);
    free(work->next);
    free(work->prev);
    free(work->version);
    free(work->heap);
    memset(work, 0, sizeof(*work));
}

static inline int bpe_heap_less(const BPEHeapEntry *a, const BPEHeapEntry *b) {
    return a->rank < b->rank || (a->rank == b->rank && a->left < b->left);
}

static inline void bpe_heap_push(BPEWork *work, BPEHeapEntry entry) {
    if (work->heap_size == work->heap_capacity) {
        size_t capacity = work->heap_capacity ? 2 * work->heap_capacity : 256;
        BPEHeapEntry *heap = (BPEHeapEntry *)realloc(work->heap, capacity * sizeof(BPEHeapEntry));
        if (heap == NULL) fatal("out of memory growing the BPE heap");
        work->heap = heap;
        work->heap_capacity = capacity;
    }
    size_t i = work->heap_size++;
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!bpe_heap_less(&entry, &work->heap[parent])) break;
        work->heap[i] = work->heap[parent];
        i = parent;
    }
    work->heap[i] = entry;
}

static inline BPEHeapEntry bpe_heap_pop(BPEWork *work) {
    BPEHeapEntry top = work->heap[0];
    BPEHeapEntry last = work->heap[--work->heap_size];
    size_t n = work->heap_size, i = 0;
    for (;;) {
        size_t child = 2 * i + 1;
        if (child >= n) break;
        if (child + 1 < n && bpe_heap_less(&work->heap[child + 1], &work->heap[child])) child++;
        if (!bpe_heap_less(&work->heap[child], &last)) break;
        work->heap[i] = work->heap[child];
        i = child;
    }
    if (n > 0) work->heap[i] = last;
    return top;
}

// Pieces up to this many bytes merge with a linear scan per merge (they are almost all of them);
// longer ones with a heap, so a megabyte of digits or spaces costs O(n log n), not O(n^2).
#define BPE_SMALL_PIECE 64

static inline void bpe_merge_small(const BPE *bpe, const uint8_t *piece, size_t n, TokenList *out) {
    int32_t ids[BPE_SMALL_PIECE], ranks[BPE_SMALL_PIECE], results[BPE_SMALL_PIECE];
    for (size_t i = 0; i < n; i++) ids[i] = bpe->byte_to_id[piece[i]];
    for (size_t i = 0; i + 1 < n; i++) { // pairs of single bytes: a direct table
        const BPEPairSlot *p = &bpe->byte_pairs[(piece[i] << 8) | piece[i + 1]];
        ranks[i] = p->rank;
        results[i] = p->result;
    }
    size_t count = n;
    while (count > 1) {
        size_t best = 0;
        int32_t best_rank = ranks[0];
        for (size_t i = 1; i + 1 < count; i++) {
            if (ranks[i] < best_rank) {
                best_rank = ranks[i];
                best = i;
            }
        }
        if (best_rank == BPE_NO_RANK) break;
        ids[best] = results[best];
        // parts best+1.. shift left by one; pairs best+1.. likewise (old pair best+1 is gone)
        for (size_t i = best + 1; i + 1 < count; i++) ids[i] = ids[i + 1];
        for (size_t i = best + 1; i + 2 < count; i++) {
            ranks[i] = ranks[i + 1];
            results[i] = results[i + 1];
        }
        count--;
        if (best > 0)
            ranks[best - 1] = bpe_pair_lookup(bpe, ids[best - 1], ids[best], &results[best - 1]);
        if (best + 1 < count)
            ranks[best] = bpe_pair_lookup(bpe, ids[best], ids[best + 1], &results[best]);
    }
    token_list_reserve(out, count);
    memcpy(out->data + out->size, ids, count * sizeof(int32_t));
    out->size += count;
}

static inline void bpe_work_reserve(BPEWork *work, size_t n) {
    if (n <= work->capacity) return;
    size_t capacity = n < 4096 ? 4096 : n;
    free(work->ids);
    free(work->next);
    free(work->prev);
    free(work->version);
    work->ids = (int32_t *)malloc_check(capacity * sizeof(int32_t), "BPE work");
    work->next = (uint32_t *)malloc_check(capacity * sizeof(uint32_t), "BPE work");
    work->prev = (uint32_t *)malloc_check(capacity * sizeof(uint32_t), "BPE work");
    work->version = (uint32_t *)malloc_check(capacity * sizeof(uint32_t), "BPE work");
    work->capacity = capacity;
}

static inline void bpe_heap_push_pair(const BPE *bpe, BPEWork *work, uint32_t left,
                                      uint32_t right) {
    int32_t result;
    int32_t rank = bpe_pair_lookup(bpe, work->ids[left], work->ids[right], &result);
    if (rank == BPE_NO_RANK) return;
    BPEHeapEntry entry = {rank, result, left, right, work->version[left], work->version[right]};
    bpe_heap_push(work, entry);
}

static inline void bpe_merge_large(const BPE *bpe, const uint8_t *piece, size_t n, TokenList *out,
                                   BPEWork *work) {
    if (n >= UINT32_MAX) fatal("a single piece of %zu bytes is too long to encode", n);
    bpe_work_reserve(work, n);
    const uint32_t none = UINT32_MAX;
    for (size_t i = 0; i < n; i++) {
        work->ids[i] = bpe->byte_to_id[piece[i]];
        work->next[i] = i + 1 < n ? (uint32_t)(i + 1) : none;
        work->prev[i] = i > 0 ? (uint32_t)(i - 1) : none;
        work->version[i] = 0;
    }
    work->heap_size = 0;
    for (size_t i = 0; i + 1 < n; i++)
        bpe_heap_push_pair(bpe, work, (uint32_t)i, (uint32_t)(i + 1));
    while (work->heap_size > 0) {
        BPEHeapEntry e = bpe_heap_pop(work);
        // stale unless both parts are unchanged and still adjacent
        if (work->next[e.left] != e.right || work->version[e.left] != e.left_version ||
            work->version[e.right] != e.right_version) {
            continue;
        }
        work->ids[e.left] = e.result;
        work->version[e.left]++;
        work->version[e.right]++; // dead
        uint32_t after = work->next[e.right];
        work->next[e.left] = after;
        work->next[e.right] = none;
        if (after != none) work->prev[after] = e.left;
        if (work->prev[e.left] != none) bpe_heap_push_pair(bpe, work, work->prev[e.left], e.left);
        if (after != none) bpe_heap_push_pair(bpe, work, e.left, after);
    }
    for (uint32_t i = 0; i != none; i = work->next[i]) token_list_push(out, work->ids[i]);
}

// Encodes one piece (not a special token's text).
static inline void bpe_encode_piece(const BPE *bpe, const uint8_t *piece, size_t n, TokenList *out,
                                    BPEWork *work) {
    if (n == 1) {
        token_list_push(out, bpe->byte_to_id[piece[0]]);
        return;
    }
    int32_t whole = bpe_lookup(bpe, piece, n);
    if (whole >= 0 && bpe->kind[whole] != BPE_KIND_SPECIAL) {
        token_list_push(out, whole);
        return;
    }
    if (n <= BPE_SMALL_PIECE) {
        bpe_merge_small(bpe, piece, n, out);
    } else {
        bpe_merge_large(bpe, piece, n, out, work);
    }
}

// Appends the tokens of text[0..len) to out; special tokens' text is encoded as ordinary text.
static inline void bpe_encode_ordinary(const BPE *bpe, const uint8_t *text, size_t len,
                                       TokenList *out, BPEWork *work) {
    size_t pos = 0;
    while (pos < len) {
        size_t end = pretokenize_next(bpe->pattern, text, len, pos);
        bpe_encode_piece(bpe, text + pos, end - pos, out, work);
        pos = end;
    }
}

// Earliest occurrence at or after from of any special token's text (the longest on a tie); returns
// len if none, and the token in *special.
static inline size_t bpe_find_special(const BPE *bpe, const uint8_t *text, size_t len, size_t from,
                                      int32_t *special) {
    size_t best = len;
    *special = -1;
    for (int k = 0; k < bpe->num_special; k++) {
        int32_t id = bpe->special_ids[k];
        size_t n = bpe->length[id];
        if (from >= len || n > len - from) continue;
        const uint8_t *hit = find_bytes(text + from, len - from, bpe_token_bytes(bpe, id), n);
        if (hit == NULL) continue;
        size_t at = (size_t)(hit - text);
        if (at < best || (at == best && n > bpe->length[*special])) {
            best = at;
            *special = id;
        }
    }
    return best;
}

// Like bpe_encode_ordinary, but with allow_special the text of a special token becomes that token;
// the text between special tokens is encoded as separate strings (as tiktoken does).
static inline void bpe_encode(const BPE *bpe, const uint8_t *text, size_t len, int allow_special,
                              TokenList *out, BPEWork *work) {
    if (!allow_special || bpe->num_special == 0) {
        bpe_encode_ordinary(bpe, text, len, out, work);
        return;
    }
    size_t pos = 0;
    while (pos < len) {
        int32_t special;
        size_t at = bpe_find_special(bpe, text, len, pos, &special);
        bpe_encode_ordinary(bpe, text + pos, at - pos, out, work);
        if (special < 0) break;
        token_list_push(out, special);
        pos = at + bpe->length[special];
    }
}

// Writes the bytes of tokens ids[0..n) to out; returns the index of the first id outside the
// vocabulary (n if none), stopping there.
static inline size_t bpe_decode(const BPE *bpe, const int32_t *ids, size_t n, FILE *out) {
    for (size_t i = 0; i < n; i++) {
        if (ids[i] < 0 || ids[i] >= bpe->vocab_size) return i;
        fwrite(bpe_token_bytes(bpe, ids[i]), 1, bpe->length[ids[i]], out);
    }
    return n;
}

// ----------------------------------------------------------------------------------------------
// our tokenizer file: llm.c's version 2 file plus the merges and special tokens (docs/formats.md)

static inline void bpe_write_file(const BPE *bpe, const char *path) {
    int32_t header[HEADER_INTS];
    memset(header, 0, sizeof(header));
    header[0] = TOKENIZER_MAGIC;
    header[1] = 2;
    header[2] = bpe->vocab_size;
    header[3] = bpe->eot_token;
    header[4] = BPE_EXTENSION_VERSION;
    header[5] = bpe->num_merges;
    header[6] = bpe->num_special;
    header[7] = (int32_t)bpe->pattern;
    AtomicFile out;
    atomic_open(&out, path);
    fwrite_check(header, sizeof(int32_t), HEADER_INTS, out.file, out.temp_path);
    for (int id = 0; id < bpe->vocab_size; id++) {
        uint8_t n = bpe->length[id];
        fwrite_check(&n, 1, 1, out.file, out.temp_path);
        fwrite_check(bpe_token_bytes(bpe, id), 1, n, out.file, out.temp_path);
    }
    fwrite_check(bpe->merges, sizeof(int32_t), 2 * (size_t)bpe->num_merges, out.file,
                 out.temp_path);
    fwrite_check(bpe->special_ids, sizeof(int32_t), (size_t)bpe->num_special, out.file,
                 out.temp_path);
    atomic_commit(&out);
}

// Reads our tokenizer file. A plain llm.c file (header[4] = 0) has no merges: it can decode only.
static inline void bpe_read_file(BPE *bpe, const char *path) {
    int32_t header[HEADER_INTS];
    size_t file_size;
    FILE *file = tokenizer_file_open(path, header, &file_size);
    if (header[1] != 2) {
        fatal("%s: tokenizer version %d in header[1]: encoding needs version 2 with merges", path,
              header[1]);
    }
    if (header[4] == 0) {
        fatal("%s: decode-only tokenizer file (no merge table: header[4] is 0); encode with "
              "encoder.json + vocab.bpe, a .tiktoken file, or a file from tokenizer train/prepare",
              path);
    }
    if (header[4] != BPE_EXTENSION_VERSION) {
        fatal("%s: unsupported extension version %d in header[4], expected %d", path, header[4],
              BPE_EXTENSION_VERSION);
    }
    int V = header[2], num_merges = header[5], num_special = header[6];
    if (V < 257 || V > BPE_MAX_VOCAB) fatal("%s: bad vocabulary size %d in header[2]", path, V);
    // summed in 64 bits: two int32 counts near 2^31 would overflow an int
    if (num_special < 1 || num_merges < 0 ||
        (int64_t)num_merges + (int64_t)num_special + 256 != (int64_t)V) {
        fatal("%s: header[5] merges (%d) + header[6] special tokens (%d) + 256 bytes != V (%d)",
              path, num_merges, num_special, V);
    }
    if (header[7] < 0 || header[7] >= SPLIT_NUM_PATTERNS) {
        fatal("%s: unknown split pattern %d in header[7] (0 = gpt2, 1 = gpt4)", path, header[7]);
    }
    // records of at least 2 bytes, then the merges and specials: checked before allocating
    size_t minimum =
        HEADER_BYTES + 2 * (size_t)V + 8 * (size_t)num_merges + 4 * (size_t)num_special;
    if (file_size < minimum) {
        fatal("%s: file is %zu bytes, too short for header[2..6]: V=%d, %d merges, %d special "
              "tokens need at least %zu",
              path, file_size, V, num_merges, num_special, minimum);
    }
    bpe_begin(bpe, V, path);
    for (int id = 0; id < V; id++) {
        uint8_t n, bytes[256];
        fread_check(&n, 1, 1, file, path, "token length");
        if (n == 0) fatal("%s: token %d has length 0", path, id);
        fread_check(bytes, 1, n, file, path, "token bytes");
        bpe_set_token(bpe, id, bytes, n);
    }
    long table_end = ftell(file);
    size_t expected = (size_t)table_end + 8 * (size_t)num_merges + 4 * (size_t)num_special;
    if (file_size != expected) {
        fatal("%s: file is %zu bytes, expected %zu for %d tokens, %d merges and %d special tokens "
              "(truncated or corrupt)",
              path, file_size, expected, V, num_merges, num_special);
    }
    bpe_index_tokens(bpe);
    int32_t *merges = (int32_t *)malloc_check(8 * (size_t)num_merges + 8, "merges");
    fread_check(merges, sizeof(int32_t), 2 * (size_t)num_merges, file, path, "merges");
    for (int i = 0; i < num_merges; i++) bpe_add_merge(bpe, merges[2 * i], merges[2 * i + 1]);
    int32_t *specials = (int32_t *)malloc_check(4 * (size_t)num_special, "special tokens");
    fread_check(specials, sizeof(int32_t), (size_t)num_special, file, path, "special tokens");
    bpe_finish(bpe, specials, num_special, 0, header[3], (SplitPattern)header[7]);
    free(merges);
    free(specials);
    fclose(file);
}

#endif // LLMC_BPE_H
