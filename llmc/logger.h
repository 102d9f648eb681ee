// Training log: llm.c's main.log lines ("s:%d trl:%f", "s:%d tel:%f") in the output directory, so
// existing plotting tools read our runs, plus a human progress line per step on stdout.
#ifndef LLMC_LOGGER_H
#define LLMC_LOGGER_H

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "utils.h"

typedef struct {
    FILE *file; // NULL when there is no output directory
    char path[4096 + 16];
} Logger;

// A run that starts at step start_step logs the steps from start_step on (again, when it resumes):
// their old lines are dropped, and an unfinished last line (a killed run's), so that main.log
// reads as one uninterrupted run. Returns how many lines were dropped.
static inline int logger_drop_from_step(const char *path, int start_step) {
    struct stat st;
    if (stat(path, &st) != 0 || !S_ISREG(st.st_mode)) return 0; // none yet, or e.g. /dev/null
    FILE *in = fopen_check(path, "rb");
    AtomicFile out;
    atomic_open(&out, path);
    char *line = NULL;
    size_t capacity = 0;
    ssize_t length;
    int dropped = 0;
    while ((length = getline(&line, &capacity, in)) > 0) {
        int step;
        int finished = line[length - 1] == '\n';
        int is_step = sscanf(line, "s:%d", &step) == 1;
        if (!finished || (is_step && step >= start_step)) {
            dropped++;
            continue;
        }
        fwrite_check(line, 1, (size_t)length, out.file, out.temp_path);
    }
    if (ferror(in)) fatal("%s: read failed: %s", path, strerror(errno));
    free(line);
    fclose(in);
    atomic_commit(&out);
    return dropped;
}

// Opens output_dir/main.log for a run that starts at step start_step (0: a fresh run), keeping
// the lines of the steps before it.
static inline void logger_init(Logger *logger, const char *output_dir, int start_step) {
    logger->file = NULL;
    if (output_dir == NULL || output_dir[0] == '\0') {
        return;
    }
    snprintf(logger->path, sizeof(logger->path), "%s/main.log", output_dir);
    int dropped = logger_drop_from_step(logger->path, start_step);
    if (dropped > 0) {
        printf("%s: dropped %d line(s) of steps >= %d, which this run logs again\n", logger->path,
               dropped, start_step);
    }
    logger->file = fopen_check(logger->path, "a");
}

// A line that cannot be written (a full disk) ends the run: a log with holes would pass for a
// whole one.
static inline void logger_write(Logger *logger, const char *format, ...)
    __attribute__((format(printf, 2, 3)));
static inline void logger_write(Logger *logger, const char *format, ...) {
    if (logger->file == NULL) return;
    va_list args;
    va_start(args, format);
    int written = vfprintf(logger->file, format, args);
    va_end(args);
    if (written < 0 || fflush(logger->file) != 0) {
        fatal("%s: write failed: %s", logger->path, strerror(errno));
    }
}

// extra: "" or more "name:value" fields (a skipped update's), after the ones llm.c's tools read
static inline void logger_log_train(Logger *logger, int step, float loss, float lr, float norm,
                                    const char *extra) {
    logger_write(logger, "s:%d trl:%f lr:%e norm:%f%s\n", step, loss, lr, norm, extra);
}

static inline void logger_log_val(Logger *logger, int step, float loss) {
    logger_write(logger, "s:%d tel:%f\n", step, loss);
}

static inline void logger_free(Logger *logger) {
    if (logger->file != NULL && fclose(logger->file) != 0) {
        fatal("%s: close failed: %s", logger->path, strerror(errno));
    }
    logger->file = NULL;
}

// "1h02m", "3m05s", "42s": for ETAs.
static inline void format_duration(double seconds, char *out, size_t size) {
    if (seconds < 0) seconds = 0;
    long s = (long)(seconds + 0.5);
    if (s >= 3600)
        snprintf(out, size, "%ldh%02ldm", s / 3600, (s % 3600) / 60);
    else if (s >= 60)
        snprintf(out, size, "%ldm%02lds", s / 60, s % 60);
    else
        snprintf(out, size, "%lds", s);
}

#endif // LLMC_LOGGER_H
