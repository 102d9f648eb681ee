// Training log: llm.c's main.log lines ("s:%d trl:%f", "s:%d tel:%f") in the output directory, so
// existing plotting tools read our runs, plus a human progress line per step on stdout.
#ifndef LLMC_LOGGER_H
#define LLMC_LOGGER_H

#include <stdio.h>
#include <string.h>

#include "utils.h"

typedef struct {
    FILE *file; // NULL when there is no output directory
} Logger;

// resuming keeps the existing log (appends); a fresh run starts a new one.
static inline void logger_init(Logger *logger, const char *output_dir, int resuming) {
    logger->file = NULL;
    if (output_dir == NULL || output_dir[0] == '\0') {
        return;
    }
    char path[4096];
    snprintf(path, sizeof(path), "%s/main.log", output_dir);
    logger->file = fopen_check(path, resuming ? "a" : "w");
}

// extra: "" or more "name:value" fields (a skipped update's), after the ones llm.c's tools read
static inline void logger_log_train(Logger *logger, int step, float loss, float lr, float norm,
                                    const char *extra) {
    if (logger->file == NULL) return;
    fprintf(logger->file, "s:%d trl:%f lr:%e norm:%f%s\n", step, loss, lr, norm, extra);
    fflush(logger->file);
}

static inline void logger_log_val(Logger *logger, int step, float loss) {
    if (logger->file == NULL) return;
    fprintf(logger->file, "s:%d tel:%f\n", step, loss);
    fflush(logger->file);
}

static inline void logger_free(Logger *logger) {
    if (logger->file != NULL) fclose(logger->file);
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
