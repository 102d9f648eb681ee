// One command-line parser for every binary: llm.c's single-letter flags ("-b 4") plus a long name
// for each ("--batch-size 4"). A binary describes its options in a table; the parser fills the
// variables, prints --help from the table (with the defaults as they stand), and rejects an
// unknown flag, a missing value or a malformed number with one line.
#ifndef LLMC_CLI_H
#define LLMC_CLI_H

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "utils.h"

typedef enum { OPTION_INT, OPTION_FLOAT, OPTION_STRING } OptionType;

// An option with no short name and a two-letter long name is spelled with one dash too, as llm.c
// spells its -nk and -nm.
typedef struct {
    char short_name;       // 'b' for -b, or 0 for long-only options
    const char *long_name; // "batch-size" for --batch-size
    OptionType type;
    void *value; // int*, float* or const char**
    const char *help;
} CliOption;

static inline int cli_is_two_letter(const CliOption *o) {
    return o->short_name == 0 && strlen(o->long_name) == 2;
}

static inline void cli_print_usage(const char *program, const char *summary,
                                   const CliOption *options, int num_options) {
    printf("usage: %s [options]\n%s\n\noptions:\n", program, summary);
    for (int i = 0; i < num_options; i++) {
        const CliOption *o = &options[i];
        char flag[64];
        const char *metavar = o->type == OPTION_INT     ? "INT"
                              : o->type == OPTION_FLOAT ? "FLOAT"
                                                        : "STR";
        if (o->short_name) {
            snprintf(flag, sizeof(flag), "-%c, --%s %s", o->short_name, o->long_name, metavar);
        } else if (cli_is_two_letter(o)) {
            snprintf(flag, sizeof(flag), "-%s %s", o->long_name, metavar);
        } else {
            snprintf(flag, sizeof(flag), "    --%s %s", o->long_name, metavar);
        }
        char default_value[64];
        if (o->type == OPTION_INT) {
            snprintf(default_value, sizeof(default_value), "%d", *(int *)o->value);
        } else if (o->type == OPTION_FLOAT) {
            snprintf(default_value, sizeof(default_value), "%g", *(float *)o->value);
        } else {
            const char *s = *(const char **)o->value;
            snprintf(default_value, sizeof(default_value), "%s", s && s[0] ? s : "none");
        }
        printf("  %-28s %s (default %s)\n", flag, o->help, default_value);
    }
    int h_is_help = 1;
    for (int k = 0; k < num_options; k++) {
        if (options[k].short_name == 'h') h_is_help = 0;
    }
    printf("  %-28s print this help and exit\n", h_is_help ? "-h, --help" : "    --help");
}

static inline void cli_set_value(const CliOption *o, const char *flag, const char *text) {
    char *end = NULL;
    errno = 0;
    if (o->type == OPTION_INT) {
        long value = strtol(text, &end, 10);
        if (end == text || *end != '\0' || errno != 0 || value < -2147483647L ||
            value > 2147483647L) {
            fatal("bad value '%s' for %s: expected an integer", text, flag);
        }
        *(int *)o->value = (int)value;
    } else if (o->type == OPTION_FLOAT) {
        float value = strtof(text, &end);
        if (end == text || *end != '\0' || errno != 0 || !isfinite(value)) {
            fatal("bad value '%s' for %s: expected a number", text, flag);
        }
        *(float *)o->value = value;
    } else {
        *(const char **)o->value = text;
    }
}

// Parses argv; exits 0 after printing usage for --help (or -h alone, where no option takes -h),
// exits 1 with one line on any error.
static inline void cli_parse(int argc, char **argv, const char *summary, const CliOption *options,
                             int num_options) {
    int h_is_help = 1;
    for (int k = 0; k < num_options; k++) {
        if (options[k].short_name == 'h') h_is_help = 0;
    }
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        // -h only alone: llm.c's trainers take "-h 1" (HellaSwag), which must not print help
        if (strcmp(arg, "--help") == 0 || (h_is_help && argc == 2 && strcmp(arg, "-h") == 0)) {
            cli_print_usage(argv[0], summary, options, num_options);
            exit(0);
        }
        const CliOption *match = NULL;
        if (arg[0] == '-' && arg[1] == '-' && arg[2] != '\0') {
            for (int k = 0; k < num_options; k++) {
                if (strcmp(arg + 2, options[k].long_name) == 0) match = &options[k];
            }
        } else if (arg[0] == '-' && arg[1] != '\0' && arg[2] == '\0') {
            for (int k = 0; k < num_options; k++) {
                if (options[k].short_name == arg[1]) match = &options[k];
            }
        } else if (arg[0] == '-' && arg[1] != '-' && strlen(arg) == 3) {
            for (int k = 0; k < num_options; k++) {
                if (cli_is_two_letter(&options[k]) && strcmp(arg + 1, options[k].long_name) == 0) {
                    match = &options[k];
                }
            }
        } else {
            fatal("unexpected argument '%s' (flags look like -b 4 or --batch-size 4; see --help)",
                  arg);
        }
        if (match == NULL) {
            fatal("unknown flag '%s' (see --help)", arg);
        }
        if (i + 1 >= argc) {
            fatal("flag %s needs a value (see --help)", arg);
        }
        cli_set_value(match, arg, argv[++i]);
    }
}

#endif // LLMC_CLI_H
