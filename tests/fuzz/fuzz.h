// What every libFuzzer harness of tests/fuzz/ shares (tests/fuzz/README.md).
//
// A harness writes its input to a file in a private temporary directory and runs a loader of
// llmc/ on it, the way a user's file reaches it. The loaders end a bad file in fatal(); built
// with -DLLMC_FUZZ, fatal() jumps back here instead (llmc/utils.h), so a rejected input is not an
// exit, and fuzz_load checks that the error is one line naming the file.
//
// A rejected input leaves what the loader had open: the harness is linked with --wrap for the
// allocation and file functions (FUZZ_WRAP_FLAGS in the Makefile), and everything allocated,
// opened or mapped while a loader runs is tracked and released after a rejection, so nothing
// piles up over millions of inputs. A load that succeeds must release all of it itself: anything
// left is reported as a leak (abort, so libFuzzer keeps the input).
//
// Seeds: run with LLMC_FUZZ_SEEDS=DIR, a harness writes valid files made by our own writers into
// DIR (its fuzz_write_seeds) and exits.
#ifndef LLMC_FUZZ_FUZZ_H
#define LLMC_FUZZ_FUZZ_H

#include <glob.h>
#include <json-c/json.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../../llmc/utils.h"

#ifndef LLMC_FUZZ
#error "tests/fuzz harnesses are built with -DLLMC_FUZZ (make fuzz)"
#endif

// ----------------------------------------------------------------------------------------------
// resources of a loader run: one open-addressing set of (kind, pointer, size)

enum { FUZZ_HEAP = 1, FUZZ_FILE, FUZZ_MAP, FUZZ_GLOB, FUZZ_JSON, FUZZ_TOKENER };

typedef struct {
    const void *pointer; // NULL: empty slot
    size_t size;         // of a mapping
    glob_t *glob;        // a copy of the glob_t at pointer (which may be on an abandoned stack)
    int kind;
} FuzzResource;

void *__real_malloc(size_t size);
void *__real_calloc(size_t count, size_t size);
void *__real_realloc(void *pointer, size_t size);
void __real_free(void *pointer);
FILE *__real_fopen(const char *path, const char *mode);
int __real_fclose(FILE *file);
void *__real_mmap(void *address, size_t length, int protection, int flags, int fd, off_t offset);
int __real_munmap(void *address, size_t length);
int __real_glob(const char *pattern, int flags, int (*errfunc)(const char *, int), glob_t *found);
void __real_globfree(glob_t *found);
json_tokener *__real_json_tokener_new(void);
void __real_json_tokener_free(json_tokener *tokener);
json_object *__real_json_tokener_parse_ex(json_tokener *tokener, const char *text, int length);
int __real_json_object_put(json_object *object);

static struct {
    int on; // tracking while a loader runs
    FuzzResource *slots;
    size_t mask, used;
} fuzz_resources;

static inline size_t fuzz_slot_of(const void *pointer) {
    uint64_t h = (uint64_t)(uintptr_t)pointer * 0x9e3779b97f4a7c15ull;
    return (size_t)(h >> 20) & fuzz_resources.mask;
}

static inline void fuzz_track_copy(int kind, const void *pointer, size_t size, glob_t *copy) {
    if (!fuzz_resources.on || pointer == NULL) return;
    if (2 * (fuzz_resources.used + 1) > fuzz_resources.mask + 1) { // grow: rehash every entry
        FuzzResource *old = fuzz_resources.slots;
        size_t old_size = old == NULL ? 0 : fuzz_resources.mask + 1;
        size_t new_size = old_size == 0 ? 1024 : 2 * old_size;
        fuzz_resources.slots = (FuzzResource *)__real_calloc(new_size, sizeof(FuzzResource));
        if (fuzz_resources.slots == NULL) abort();
        fuzz_resources.mask = new_size - 1;
        fuzz_resources.used = 0;
        for (size_t i = 0; i < old_size; i++) {
            if (old[i].pointer != NULL)
                fuzz_track_copy(old[i].kind, old[i].pointer, old[i].size, old[i].glob);
        }
        __real_free(old);
    }
    size_t slot = fuzz_slot_of(pointer);
    while (fuzz_resources.slots[slot].pointer != NULL) slot = (slot + 1) & fuzz_resources.mask;
    fuzz_resources.slots[slot] = (FuzzResource){pointer, size, copy, kind};
    fuzz_resources.used++;
}

static inline void fuzz_track(int kind, const void *pointer, size_t size) {
    fuzz_track_copy(kind, pointer, size, NULL);
}

// Forgets pointer (a resource the loader released itself); linear probing with backward shift.
static inline void fuzz_untrack(const void *pointer) {
    if (fuzz_resources.used == 0 || pointer == NULL) return;
    size_t slot = fuzz_slot_of(pointer);
    while (fuzz_resources.slots[slot].pointer != pointer) {
        if (fuzz_resources.slots[slot].pointer == NULL) return;
        slot = (slot + 1) & fuzz_resources.mask;
    }
    __real_free(fuzz_resources.slots[slot].glob);
    fuzz_resources.used--;
    for (size_t hole = slot, next = (slot + 1) & fuzz_resources.mask;;
         next = (next + 1) & fuzz_resources.mask) {
        FuzzResource *entry = &fuzz_resources.slots[next];
        if (entry->pointer == NULL) {
            fuzz_resources.slots[hole].pointer = NULL;
            return;
        }
        size_t home = fuzz_slot_of(entry->pointer);
        // entry may fill the hole if its home is not in (hole, next]
        if (((next - home) & fuzz_resources.mask) >= ((next - hole) & fuzz_resources.mask)) {
            fuzz_resources.slots[hole] = *entry;
            hole = next;
        }
    }
}

void *__wrap_malloc(size_t size) {
    void *pointer = __real_malloc(size);
    fuzz_track(FUZZ_HEAP, pointer, 0);
    return pointer;
}

void *__wrap_calloc(size_t count, size_t size) {
    void *pointer = __real_calloc(count, size);
    fuzz_track(FUZZ_HEAP, pointer, 0);
    return pointer;
}

void *__wrap_realloc(void *pointer, size_t size) {
    void *grown = __real_realloc(pointer, size);
    if (grown != NULL) {
        fuzz_untrack(pointer);
        fuzz_track(FUZZ_HEAP, grown, 0);
    }
    return grown;
}

void __wrap_free(void *pointer) {
    fuzz_untrack(pointer);
    __real_free(pointer);
}

FILE *__wrap_fopen(const char *path, const char *mode) {
    FILE *file = __real_fopen(path, mode);
    fuzz_track(FUZZ_FILE, file, 0);
    return file;
}

int __wrap_fclose(FILE *file) {
    fuzz_untrack(file);
    return __real_fclose(file);
}

void *__wrap_mmap(void *address, size_t length, int protection, int flags, int fd, off_t offset) {
    void *mapped = __real_mmap(address, length, protection, flags, fd, offset);
    if (mapped != MAP_FAILED) fuzz_track(FUZZ_MAP, mapped, length);
    return mapped;
}

int __wrap_munmap(void *address, size_t length) {
    fuzz_untrack(address);
    return __real_munmap(address, length);
}

int __wrap_glob(const char *pattern, int flags, int (*errfunc)(const char *, int), glob_t *found) {
    int status = __real_glob(pattern, flags, errfunc, found);
    if (fuzz_resources.on) { // the lists it allocated, kept apart from found
        glob_t *copy = (glob_t *)__real_malloc(sizeof(glob_t));
        if (copy == NULL) abort();
        *copy = *found;
        fuzz_track_copy(FUZZ_GLOB, found, 0, copy);
    }
    return status;
}

void __wrap_globfree(glob_t *found) {
    fuzz_untrack(found);
    __real_globfree(found);
}

// json-c allocates inside its own library: its objects are tracked by their roots (the loaders
// release only what json_tokener_parse_ex returned) and its tokeners
json_tokener *__wrap_json_tokener_new(void) {
    json_tokener *tokener = __real_json_tokener_new();
    fuzz_track(FUZZ_TOKENER, tokener, 0);
    return tokener;
}

void __wrap_json_tokener_free(json_tokener *tokener) {
    fuzz_untrack(tokener);
    __real_json_tokener_free(tokener);
}

json_object *__wrap_json_tokener_parse_ex(json_tokener *tokener, const char *text, int length) {
    json_object *object = __real_json_tokener_parse_ex(tokener, text, length);
    fuzz_track(FUZZ_JSON, object, 0);
    return object;
}

int __wrap_json_object_put(json_object *object) {
    fuzz_untrack(object);
    return __real_json_object_put(object);
}

// Releases everything tracked (after a rejected input), json objects before the heap.
static inline void fuzz_release_all(void) {
    fuzz_resources.on = 0;
    for (int kind = FUZZ_JSON; kind >= FUZZ_HEAP; kind--) {
        for (size_t i = 0; fuzz_resources.used > 0 && i <= fuzz_resources.mask; i++) {
            FuzzResource *r = &fuzz_resources.slots[i];
            if (r->pointer == NULL || r->kind != kind) continue;
            void *pointer = (void *)r->pointer;
            if (kind == FUZZ_JSON) __real_json_object_put((json_object *)pointer);
            if (kind == FUZZ_MAP) __real_munmap(pointer, r->size);
            if (kind == FUZZ_FILE) __real_fclose((FILE *)pointer);
            if (kind == FUZZ_HEAP) __real_free(pointer);
            if (kind == FUZZ_GLOB) __real_globfree(r->glob);
            __real_free(r->glob);
            r->pointer = NULL;
            fuzz_resources.used--;
        }
    }
    for (size_t i = 0; fuzz_resources.used > 0 && i <= fuzz_resources.mask; i++) {
        FuzzResource *r = &fuzz_resources.slots[i]; // tokeners last: roots may point into them
        if (r->pointer == NULL) continue;
        __real_json_tokener_free((json_tokener *)r->pointer);
        r->pointer = NULL;
        fuzz_resources.used--;
    }
}

// ----------------------------------------------------------------------------------------------
// files and runs

static char fuzz_dir[256];

static inline void fuzz_remove_dir(void) {
    char command[512];
    if (fuzz_dir[0] == '\0') return;
    snprintf(command, sizeof(command), "rm -rf '%s'", fuzz_dir);
    if (system(command) != 0) fprintf(stderr, "fuzz: could not remove %s\n", fuzz_dir);
}

// The private directory inputs are written to (in /dev/shm when there is one: memory, not disk).
static inline const char *fuzz_temp_dir(void) {
    if (fuzz_dir[0] != '\0') return fuzz_dir;
    const char *base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : getenv("TMPDIR");
    snprintf(fuzz_dir, sizeof(fuzz_dir), "%s/llmc_fuzz_XXXXXX", base != NULL ? base : "/tmp");
    if (mkdtemp(fuzz_dir) == NULL) {
        perror("fuzz: mkdtemp");
        abort();
    }
    atexit(fuzz_remove_dir);
    return fuzz_dir;
}

// fuzz_temp_dir()/name into out.
static inline const char *fuzz_path(char *out, size_t size, const char *name) {
    snprintf(out, size, "%s/%s", fuzz_temp_dir(), name);
    return out;
}

static inline void fuzz_write_file(const char *path, const void *data, size_t size) {
    FILE *file = __real_fopen(path, "wb");
    if (file == NULL || (size > 0 && fwrite(data, 1, size, file) != size) ||
        __real_fclose(file) != 0) {
        perror(path);
        abort();
    }
}

// Runs load(context) on an input held in the files named by paths (NULL-terminated): returns 1 if
// it was loaded (everything released again), 0 if it was rejected with a one-line error naming
// one of the files; anything else aborts, which libFuzzer reports with the input.
static inline int fuzz_load(void (*load)(void *context), void *context, const char *const *paths) {
    static jmp_buf jump;
    fuzz_resources.on = 1;
    if (setjmp(jump) != 0) {
        fatal_jump = NULL;
        fuzz_release_all();
        int names_file = 0, control = 0;
        for (const char *const *p = paths; *p != NULL; p++) {
            names_file |= strstr(fatal_message, *p) != NULL;
        }
        for (const char *c = fatal_message; *c != '\0'; c++) {
            control |= ((unsigned char)*c < 0x20 && *c != '\t') || *c == 0x7f;
        }
        if (control || !names_file) {
            fprintf(stderr, "fuzz: the error %s: %s\n",
                    control ? "holds a control character (one line, printable)"
                            : "does not name the input file",
                    fatal_message);
            abort();
        }
        return 0;
    }
    fatal_jump = &jump;
    load(context);
    fatal_jump = NULL;
    fuzz_resources.on = 0;
    if (fuzz_resources.used > 0) {
        fprintf(stderr, "fuzz: a loaded input left %zu allocations, files or maps unreleased\n",
                fuzz_resources.used);
        abort();
    }
    return 1;
}

// ----------------------------------------------------------------------------------------------
// seeds (LLMC_FUZZ_SEEDS=DIR)

// Random bytes for seed contents (xorshift64*; never zeros, as the house rule asks of inputs).
static uint64_t fuzz_random_state = 0x243f6a8885a308d3ull;

static inline uint32_t fuzz_random(void) {
    fuzz_random_state ^= fuzz_random_state >> 12;
    fuzz_random_state ^= fuzz_random_state << 25;
    fuzz_random_state ^= fuzz_random_state >> 27;
    return (uint32_t)((fuzz_random_state * 0x2545F4914F6CDD1Dull) >> 32);
}

// Each harness defines these two and LLVMFuzzerTestOneInput.
static void fuzz_write_seeds(const char *dir); // valid files into dir
static void fuzz_init(void);                   // its paths, and the files it reads beside an input

// With LLMC_FUZZ_SEEDS=DIR: writes the harness's seeds into DIR and exits; else fuzz_init.
int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    const char *dir = getenv("LLMC_FUZZ_SEEDS");
    if (dir != NULL) {
        make_dir_check(dir);
        fuzz_write_seeds(dir);
        exit(0);
    }
    fuzz_init();
    return 0;
}

// The path of a seed file: dir/name.
static inline const char *fuzz_seed_path(char *out, size_t size, const char *dir,
                                         const char *name) {
    snprintf(out, size, "%s/%s", dir, name);
    return out;
}

// Reads a whole file (a seed made by a writer, or a piece of ../shared/data); *size its length.
static inline uint8_t *fuzz_read_file(const char *path, size_t *size) {
    FILE *file = fopen_check(path, "rb");
    *size = file_size_check(file, path);
    uint8_t *data = (uint8_t *)malloc_check(*size, path);
    fread_check(data, 1, *size, file, path, "the whole file");
    fclose(file);
    return data;
}

// The first bytes of file shared (a path under ../shared/data), up to max_bytes and cut after a
// newline, into dir/name; nothing when the shared data is not there.
static inline void fuzz_seed_from_shared(const char *dir, const char *name, const char *shared,
                                         size_t max_bytes) {
    if (!file_exists(shared)) return;
    size_t size;
    uint8_t *data = fuzz_read_file(shared, &size);
    size_t keep = size < max_bytes ? size : max_bytes;
    while (keep > 0 && keep < size && data[keep - 1] != '\n') keep--;
    char path[4096];
    fuzz_write_file(fuzz_seed_path(path, sizeof(path), dir, name), data, keep);
    free(data);
}

#endif // LLMC_FUZZ_FUZZ_H
