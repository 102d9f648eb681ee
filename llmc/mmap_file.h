// Read-only memory maps of whole input files (text, JSONL, vocabularies): the tools read inputs of
// any size without copying them, and the OS pages them in as the encoder walks through.
#ifndef LLMC_MMAP_FILE_H
#define LLMC_MMAP_FILE_H

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "utils.h"

typedef struct {
    const uint8_t *data; // size bytes (NULL when size is 0)
    size_t size;
} MappedFile;

static inline MappedFile mmap_file_check(const char *path) {
    MappedFile mapped = {NULL, 0};
    int fd = open(path, O_RDONLY);
    if (fd < 0) fatal("cannot open %s: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0) fatal("%s: cannot stat: %s", path, strerror(errno));
    if (S_ISDIR(st.st_mode)) fatal("%s: is a directory, expected a file", path);
    mapped.size = (size_t)st.st_size;
    if (mapped.size > 0) {
        void *data = mmap(NULL, mapped.size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (data == MAP_FAILED)
            fatal("%s: cannot map %zu bytes: %s", path, mapped.size, strerror(errno));
        madvise(data, mapped.size, MADV_SEQUENTIAL);
        mapped.data = (const uint8_t *)data;
    }
    close(fd);
    return mapped;
}

static inline void mmap_file_close(MappedFile *mapped) {
    if (mapped->data != NULL) munmap((void *)mapped->data, mapped->size);
    mapped->data = NULL;
    mapped->size = 0;
}

// Line number (1-based) of byte offset in text, for errors about a line of an input file.
static inline size_t line_of(const uint8_t *text, size_t offset) {
    size_t line = 1;
    for (size_t i = 0; i < offset; i++) line += text[i] == '\n';
    return line;
}

#endif // LLMC_MMAP_FILE_H
