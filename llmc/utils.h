// Small helpers shared by every binary: fatal errors, checked allocation and file I/O,
// atomic file writes. Errors are one line: what failed, where (file, field), expected vs found.
#ifndef LLMC_UTILS_H
#define LLMC_UTILS_H

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#ifdef _OPENMP
#include <omp.h>
#endif

// Threads an OpenMP parallel region will use (1 in a build without OpenMP).
static inline int max_threads(void) {
#ifdef _OPENMP
    return omp_get_max_threads();
#else
    return 1;
#endif
}

// Seconds on a monotonic clock, for timing and deadlines.
static inline double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

#ifdef LLMC_FUZZ
// Fuzz builds (tests/fuzz/): while a harness points fatal_jump at its jmp_buf, fatal() keeps the
// message in fatal_message and jumps back there, so a rejected input is not an exit.
#include <setjmp.h>
static jmp_buf *fatal_jump;
static char fatal_message[4096];
#endif

// Prints "error: <message>" on one line and exits with status 1.
static inline void fatal(const char *format, ...) __attribute__((noreturn, format(printf, 1, 2)));
static inline void fatal(const char *format, ...) {
    va_list args;
    va_start(args, format);
#ifdef LLMC_FUZZ
    if (fatal_jump != NULL) {
        vsnprintf(fatal_message, sizeof(fatal_message), format, args);
        va_end(args);
        longjmp(*fatal_jump, 1);
    }
#endif
    fflush(stdout);
    fprintf(stderr, "error: ");
    vfprintf(stderr, format, args);
    fprintf(stderr, "\n");
    va_end(args);
    exit(1);
}

static inline void *malloc_check(size_t size, const char *what) {
    void *ptr = malloc(size > 0 ? size : 1);
    if (ptr == NULL) {
        fatal("out of memory allocating %zu bytes for %s", size, what);
    }
    return ptr;
}

static inline void *calloc_check(size_t count, size_t size, const char *what) {
    void *ptr = calloc(count > 0 ? count : 1, size > 0 ? size : 1);
    if (ptr == NULL) {
        fatal("out of memory allocating %zu x %zu bytes for %s", count, size, what);
    }
    return ptr;
}

// Opens path or exits; a directory where a file is expected is named as such (reading one would
// only report a short read).
static inline FILE *fopen_check(const char *path, const char *mode) {
    FILE *file = fopen(path, mode);
    if (file == NULL) {
        fatal("cannot open %s (mode %s): %s", path, mode, strerror(errno));
    }
    struct stat st;
    if (fstat(fileno(file), &st) == 0 && S_ISDIR(st.st_mode)) {
        fatal("%s: is a directory, expected a file", path);
    }
    return file;
}

// Overflow-checked sizes: every size computed from a file's header, a model descriptor or a flag
// goes through these, so a crafted value gives an error instead of a wrapped (small) size.
// *_ok store the result and return 1 when it fits in size_t (64 bits), else return 0.
static inline int size_mul_ok(size_t a, size_t b, size_t *result) {
    return !__builtin_mul_overflow(a, b, result);
}

static inline int size_add_ok(size_t a, size_t b, size_t *result) {
    return !__builtin_add_overflow(a, b, result);
}

// a * b, or exits naming what overflowed.
static inline size_t size_mul_check(size_t a, size_t b, const char *what) {
    size_t result;
    if (!size_mul_ok(a, b, &result)) fatal("%s: %zu x %zu overflows 64 bits", what, a, b);
    return result;
}

static inline size_t size_add_check(size_t a, size_t b, const char *what) {
    size_t result;
    if (!size_add_ok(a, b, &result)) fatal("%s: %zu + %zu overflows 64 bits", what, a, b);
    return result;
}

// Why name cannot be a file name inside a directory (NULL if it can): it must not be empty, hold
// a '/' (it would leave the directory), hold a glob character (names end up in glob patterns, so
// '*' would match other files), or start with '.' (hidden files, "." and "..").
static inline const char *file_name_problem(const char *name) {
    if (name[0] == '\0') return "empty";
    if (name[0] == '.') return "starts with '.'";
    if (strchr(name, '/') != NULL) return "holds '/'";
    if (strpbrk(name, "*?[]\\") != NULL) return "holds a glob character (* ? [ ] \\)";
    return NULL;
}

// text[0..length) as it may appear in a one-line error: control characters read from a file (a
// newline, a terminal escape) become \xNN; cut to what out (size > 0) holds. Returns out.
static inline const char *printable_text(const char *text, size_t length, char *out, size_t size) {
    size_t used = 0;
    for (size_t i = 0; i < length && text[i] != '\0'; i++) {
        unsigned char c = (unsigned char)text[i];
        int control = c < 0x20 || c == 0x7f;
        if (used + (control ? 4 : 1) >= size) break;
        if (control) {
            snprintf(out + used, size - used, "\\x%02x", c);
            used += 4;
        } else {
            out[used++] = (char)c;
        }
    }
    out[used] = '\0';
    return out;
}

// CRC-32C (Castagnoli: iSCSI's, ext4's, SSE4.2's crc32 instruction's), the checksum of model and
// state files (docs/formats.md). zlib's convention: start from 0 and pass the last value on to
// continue over more bytes. The portable version is slicing-by-8 (8 table lookups per 8 bytes).
static inline const uint32_t *crc32c_table(void) {
    static uint32_t table[8][256];
    static int ready = 0;
    if (!ready) {
        for (uint32_t i = 0; i < 256; i++) {
            uint32_t c = i;
            for (int k = 0; k < 8; k++) c = (c >> 1) ^ (0x82F63B78u & (0u - (c & 1u)));
            table[0][i] = c;
        }
        for (int t = 1; t < 8; t++) {
            for (int i = 0; i < 256; i++) {
                table[t][i] = (table[t - 1][i] >> 8) ^ table[0][table[t - 1][i] & 0xff];
            }
        }
        ready = 1;
    }
    return &table[0][0];
}

static inline uint32_t crc32c_update_portable(uint32_t crc, const void *data, size_t size) {
    const uint32_t *t = crc32c_table(); // t[k * 256 + byte]: table k
    const unsigned char *p = (const unsigned char *)data;
    crc = ~crc;
    for (; size >= 8; p += 8, size -= 8) {
        uint64_t word;
        memcpy(&word, p, 8); // little-endian, as the files
        word ^= crc;
        crc = t[7 * 256 + (word & 0xff)] ^ t[6 * 256 + ((word >> 8) & 0xff)] ^
              t[5 * 256 + ((word >> 16) & 0xff)] ^ t[4 * 256 + ((word >> 24) & 0xff)] ^
              t[3 * 256 + ((word >> 32) & 0xff)] ^ t[2 * 256 + ((word >> 40) & 0xff)] ^
              t[1 * 256 + ((word >> 48) & 0xff)] ^ t[word >> 56];
    }
    for (; size > 0; p++, size--) crc = (crc >> 8) ^ t[(crc ^ *p) & 0xff];
    return ~crc;
}

// With SSE4.2 (-march=native on x86) the crc32 instruction, ~4x faster; the same values.
static inline uint32_t crc32c_update(uint32_t crc, const void *data, size_t size) {
#if defined(__SSE4_2__) && defined(__x86_64__)
    const unsigned char *p = (const unsigned char *)data;
    uint64_t c = ~crc;
    for (; size >= 8; p += 8, size -= 8) {
        uint64_t word;
        memcpy(&word, p, 8);
        c = __builtin_ia32_crc32di(c, word);
    }
    uint32_t c32 = (uint32_t)c;
    for (; size > 0; p++, size--) c32 = __builtin_ia32_crc32qi(c32, *p);
    return ~c32;
#else
    return crc32c_update_portable(crc, data, size);
#endif
}

// Reads exactly count items or exits naming the file and what was being read.
static inline void fread_check(void *dst, size_t size, size_t count, FILE *file, const char *path,
                               const char *what) {
    size_t got = fread(dst, size, count, file);
    if (got != count) {
        fatal("%s: truncated while reading %s: expected %zu items of %zu bytes, got %zu", path,
              what, count, size, got);
    }
}

static inline void fwrite_check(const void *src, size_t size, size_t count, FILE *file,
                                const char *path) {
    if (fwrite(src, size, count, file) != count) {
        fatal("%s: write failed: %s", path, strerror(errno));
    }
}

// fread_check / fwrite_check that also continue *crc (crc32c_update) over the bytes.
static inline void fread_crc(void *dst, size_t size, size_t count, FILE *file, const char *path,
                             const char *what, uint32_t *crc) {
    fread_check(dst, size, count, file, path, what);
    *crc = crc32c_update(*crc, dst, size * count);
}

static inline void fwrite_crc(const void *src, size_t size, size_t count, FILE *file,
                              const char *path, uint32_t *crc) {
    fwrite_check(src, size, count, file, path);
    *crc = crc32c_update(*crc, src, size * count);
}

static inline void fseek_check(FILE *file, long offset, int whence, const char *path) {
    if (fseek(file, offset, whence) != 0) {
        fatal("%s: seek to %ld failed: %s", path, offset, strerror(errno));
    }
}

// Size in bytes of an open file (via fstat, so it works for large files).
static inline size_t file_size_check(FILE *file, const char *path) {
    struct stat st;
    if (fstat(fileno(file), &st) != 0) {
        fatal("%s: cannot stat: %s", path, strerror(errno));
    }
    return (size_t)st.st_size;
}

static inline int file_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

// mkdir -p: creates path and any missing parents.
static inline void make_dir_check(const char *path) {
    char partial[4096];
    size_t length = strlen(path);
    if (length == 0 || length >= sizeof(partial)) {
        fatal("bad directory path '%s'", path);
    }
    for (size_t i = 1; i <= length; i++) {
        if (path[i] != '/' && path[i] != '\0') continue;
        memcpy(partial, path, i);
        partial[i] = '\0';
        struct stat st;
        if (stat(partial, &st) == 0) {
            if (!S_ISDIR(st.st_mode)) fatal("%s exists and is not a directory", partial);
            continue;
        }
        if (mkdir(partial, 0755) != 0 && errno != EEXIST) {
            fatal("cannot create directory %s: %s", partial, strerror(errno));
        }
    }
}

// Atomic writes: callers write into the FILE returned by atomic_open, then atomic_commit flushes,
// fsyncs and renames over the final path, so a crash never leaves a half-written file under the
// final name and an existing file is replaced only by a complete one.
typedef struct {
    FILE *file;
    char final_path[4096];
    char temp_path[4096 + 16];
    int pending_slot; // in atomic_pending_paths while not committed
} AtomicFile;

// The temporary files of atomic writes not yet committed: removed when the process exits without
// committing them (fatal() ends in exit), so a failed write leaves no *.tmpPID behind. A killed
// process leaves its own: run_dir_remove_stale_temp_files (llmc/run_dir.h) removes those.
#define ATOMIC_MAX_PENDING 8
static char atomic_pending_paths[ATOMIC_MAX_PENDING][4096 + 16];

static inline void atomic_remove_pending(void) {
    for (int i = 0; i < ATOMIC_MAX_PENDING; i++) {
        if (atomic_pending_paths[i][0] != '\0') unlink(atomic_pending_paths[i]);
        atomic_pending_paths[i][0] = '\0';
    }
}

static inline void atomic_open(AtomicFile *af, const char *path) {
    static int registered = 0;
    if (!registered) {
        atexit(atomic_remove_pending);
        registered = 1;
    }
    if (strlen(path) >= sizeof(af->final_path)) {
        fatal("path too long: %s", path);
    }
    snprintf(af->final_path, sizeof(af->final_path), "%s", path);
    snprintf(af->temp_path, sizeof(af->temp_path), "%s.tmp%d", path, (int)getpid());
    af->pending_slot = -1;
    for (int i = 0; i < ATOMIC_MAX_PENDING && af->pending_slot < 0; i++) {
        if (atomic_pending_paths[i][0] == '\0') af->pending_slot = i;
    }
    if (af->pending_slot < 0)
        fatal("internal: more than %d atomic writes open", ATOMIC_MAX_PENDING);
    // registered before it exists: a failed fopen_check then has nothing to remove
    memcpy(atomic_pending_paths[af->pending_slot], af->temp_path, sizeof(af->temp_path));
    af->file = fopen_check(af->temp_path, "wb");
}

// fsync of the directory that holds path, so a rename in it survives a power loss. File systems
// that cannot sync a directory (EINVAL) make their renames durable by themselves.
static inline void fsync_parent_dir(const char *path) {
    char dir[4096] = ".";
    const char *slash = strrchr(path, '/');
    if (slash != NULL) {
        size_t length = slash == path ? 1 : (size_t)(slash - path); // "/name": the root
        if (length >= sizeof(dir)) fatal("path too long: %s", path);
        memcpy(dir, path, length);
        dir[length] = '\0';
    }
    int fd = open(dir, O_RDONLY | O_DIRECTORY);
    if (fd < 0) fatal("%s: cannot open directory to fsync it: %s", dir, strerror(errno));
    if (fsync(fd) != 0 && errno != EINVAL) {
        fatal("%s: fsync of the directory failed: %s", dir, strerror(errno));
    }
    close(fd);
}

static inline void atomic_commit(AtomicFile *af) {
    if (fflush(af->file) != 0 || fsync(fileno(af->file)) != 0) {
        fatal("%s: flush/fsync failed: %s", af->temp_path, strerror(errno));
    }
    if (fclose(af->file) != 0) {
        fatal("%s: close failed: %s", af->temp_path, strerror(errno));
    }
    if (rename(af->temp_path, af->final_path) != 0) {
        fatal("cannot rename %s to %s: %s", af->temp_path, af->final_path, strerror(errno));
    }
    atomic_pending_paths[af->pending_slot][0] = '\0';
    af->file = NULL;
    fsync_parent_dir(af->final_path);
}

// Header slots store floats as their bit patterns (as the debug state does).
static inline float int_bits_to_float(int32_t bits) {
    float value;
    memcpy(&value, &bits, sizeof(value));
    return value;
}

static inline int32_t float_to_int_bits(float value) {
    int32_t bits;
    memcpy(&bits, &value, sizeof(bits));
    return bits;
}

// bf16 <-> fp32: bf16 is the upper half of the fp32 pattern; rounding is to nearest even.
static inline float bf16_to_float(uint16_t h) {
    uint32_t bits = (uint32_t)h << 16;
    float value;
    memcpy(&value, &bits, sizeof(value));
    return value;
}

static inline uint16_t float_to_bf16(float value) {
    uint32_t bits;
    memcpy(&bits, &value, sizeof(bits));
    if ((bits & 0x7f800000u) == 0x7f800000u && (bits & 0x007fffffu) != 0) {
        return (uint16_t)((bits >> 16) | 0x40); // keep NaN a (quiet) NaN
    }
    uint32_t rounding = 0x7fffu + ((bits >> 16) & 1u);
    return (uint16_t)((bits + rounding) >> 16);
}

#endif // LLMC_UTILS_H
