// A run's report: DIR/report.md (what was trained, on what, how fast, with what result, one
// sample) and DIR/loss.svg (train and val loss against step, eval accuracy on a second axis),
// both drawn from DIR/main.log (llmc/logger.h) so that the plot is the log's. The SVG is written
// here, without a plotting library; each series carries its points as main.log spells them
// (data-steps, data-values) and the plot its axis ranges, so that a test can check every drawn
// point. main.log is read as hostile input: malformed lines are skipped and counted, the points
// are bounded. `train_gpt2 --plot main.log` redraws the plot of any log (report_plot_command).
#ifndef LLMC_REPORT_H
#define LLMC_REPORT_H

#include <errno.h>
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "model_config.h"
#include "utils.h"

// Points per series at most (llm.c's GPT-2 124M run logs 19k steps): more are left out, with a
// note, to bound the memory (44 MB a series) and the SVG's size (about 30 MB a series).
#define REPORT_MAX_POINTS (1u << 20)
// main.log's values are %f or %e texts (at most ~15 characters); a longer one is malformed
#define REPORT_VALUE_TEXT 32
// longest main.log line read; longer lines are malformed (ours are under 200 characters)
#define REPORT_LINE_MAX 1024
// marks the files written here: an existing file without it is never overwritten
#define REPORT_SVG_MARK "llmc-loss-plot"
#define REPORT_MD_MARK "<!-- llmc-run-report -->"

typedef struct {
    int *steps;
    double *values;
    char (*texts)[REPORT_VALUE_TEXT]; // each value as main.log spells it
    size_t count, capacity, dropped;  // dropped: past REPORT_MAX_POINTS
} LogSeries;

typedef struct {
    LogSeries train, val, eval; // trl, tel and eval (HellaSwag accuracy) lines
    size_t lines, malformed;
} RunLog;

static inline void log_series_add(LogSeries *s, int step, double value, const char *text) {
    if (s->count >= REPORT_MAX_POINTS) {
        s->dropped++;
        return;
    }
    if (s->count == s->capacity) {
        size_t capacity = s->capacity == 0 ? 256 : size_mul_check(s->capacity, 2, "log points");
        if (capacity > REPORT_MAX_POINTS) capacity = REPORT_MAX_POINTS;
        s->steps = (int *)realloc(s->steps, size_mul_check(capacity, sizeof(int), "log points"));
        s->values =
            (double *)realloc(s->values, size_mul_check(capacity, sizeof(double), "log points"));
        s->texts = (char(*)[REPORT_VALUE_TEXT])realloc(
            s->texts, size_mul_check(capacity, REPORT_VALUE_TEXT, "log points"));
        if (s->steps == NULL || s->values == NULL || s->texts == NULL) {
            fatal("out of memory for %zu main.log points", capacity);
        }
        s->capacity = capacity;
    }
    s->steps[s->count] = step;
    s->values[s->count] = value;
    snprintf(s->texts[s->count], REPORT_VALUE_TEXT, "%s", text);
    s->count++;
}

static inline void log_series_free(LogSeries *s) {
    free(s->steps);
    free(s->values);
    free(s->texts);
    memset(s, 0, sizeof(*s));
}

static inline void run_log_free(RunLog *log) {
    log_series_free(&log->train);
    log_series_free(&log->val);
    log_series_free(&log->eval);
}

// One line "s:STEP KEY:VALUE[ more]" (without its newline). Returns 1 for a point of trl, tel or
// eval, 0 for a well-formed line of another key, -1 for a malformed one.
static inline int run_log_parse_line(RunLog *log, const char *line) {
    if (strncmp(line, "s:", 2) != 0 || line[2] < '0' || line[2] > '9') return -1;
    char *end;
    errno = 0;
    long step = strtol(line + 2, &end, 10);
    if (errno != 0 || step < 0 || step > 2147483647L || *end != ' ') return -1;
    const char *key = end + 1;
    const char *colon = strchr(key, ':');
    if (colon == NULL || colon == key) return -1;
    const char *value = colon + 1;
    size_t length = strcspn(value, " \t\r");
    if (length == 0 || length >= REPORT_VALUE_TEXT) return -1;
    char text[REPORT_VALUE_TEXT];
    memcpy(text, value, length);
    text[length] = '\0';
    size_t key_length = (size_t)(colon - key);
    const char *key_characters = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_";
    if (strspn(key, key_characters) != key_length) return -1; // "s:7  trl:1" is no key
    LogSeries *series = NULL;
    if (key_length == 3 && strncmp(key, "trl", 3) == 0) series = &log->train;
    if (key_length == 3 && strncmp(key, "tel", 3) == 0) series = &log->val;
    if (key_length == 4 && strncmp(key, "eval", 4) == 0) series = &log->eval;
    if (series == NULL) return 0;
    // decimal numbers only, as the trainers write them (no inf, nan or hexadecimal)
    if (strspn(text, "0123456789+-.eE") != length) return -1;
    double number = strtod(text, &end);
    // a non-finite value cannot be drawn (the trainers stop before logging one); one too small
    // for a double reads as 0 or a subnormal, and is drawn as such
    if (end == text || *end != '\0' || !isfinite(number)) return -1;
    log_series_add(series, (int)step, number, text);
    return 1;
}

// Reads the next line of file into line (size bytes, NUL-terminated, without its newline).
// Returns 0 at the end of the file, 1 for a well-formed line, -1 for one that is not: longer than
// size - 1 (its rest skipped), holding a NUL byte, or unfinished (the last line of a killed run,
// which the logger drops too).
static inline int run_log_next_line(FILE *file, char *line, size_t size) {
    size_t length = 0;
    int c, bad = 0;
    while ((c = getc(file)) != EOF && c != '\n') {
        if (c == '\0') bad = 1;
        if (length + 1 < size) {
            line[length++] = (char)c;
        } else {
            bad = 1;
        }
    }
    line[length] = '\0';
    if (c == EOF) {
        if (length == 0 && !bad) return 0;
        return -1;
    }
    return bad ? -1 : 1;
}

// Reads the trl, tel and eval points of main.log at path. Returns 0, or -1 with *problem set when
// the file cannot be read as a log (not a regular file, a read error).
static inline int run_log_read(RunLog *log, const char *path, const char **problem) {
    memset(log, 0, sizeof(*log));
    struct stat st;
    if (stat(path, &st) != 0) {
        *problem = strerror(errno);
        return -1;
    }
    if (!S_ISREG(st.st_mode)) { // a FIFO would block, a directory cannot be read
        *problem = "not a regular file";
        return -1;
    }
    FILE *file = fopen(path, "rb");
    if (file == NULL) {
        *problem = strerror(errno);
        return -1;
    }
    char line[REPORT_LINE_MAX];
    int status;
    while ((status = run_log_next_line(file, line, sizeof(line))) != 0) {
        log->lines++;
        if (status < 0 || run_log_parse_line(log, line) < 0) log->malformed++;
    }
    int failed = ferror(file);
    fclose(file);
    if (failed) {
        run_log_free(log);
        *problem = "read error";
        return -1;
    }
    return 0;
}

// ---------------------------------------------------------------------------------------------
// The SVG

// An axis: its range and ticks at "nice" numbers (1, 2 or 5 times a power of ten).
typedef struct {
    double min, max, tick;
    int decimals;   // of the tick labels
    int scientific; // labels as 1.5e+30 (huge or tiny values), with decimals after the point
} PlotAxis;

// The nice number (1, 2 or 5 times a power of ten) nearest x > 0.
static inline double plot_nice_number(double x) {
    double exponent = floor(log10(x));
    double fraction = x / pow(10.0, exponent);
    double nice = fraction < 1.5 ? 1.0 : fraction < 3.0 ? 2.0 : fraction < 7.0 ? 5.0 : 10.0;
    return nice * pow(10.0, exponent);
}

// About `ticks` ticks over [low, high], the range widened to whole ticks. integer: ticks at
// whole numbers (steps).
static inline PlotAxis plot_axis(double low, double high, int ticks, int integer) {
    PlotAxis axis;
    // a hostile log's extremes: keep the range finite, and wide enough against the values that
    // the ticks advance (and the tick loops end)
    if (!isfinite(high - low)) low = -1e300, high = 1e300;
    if (!(high - low > 1e-9 * fmax(1.0, fmax(fabs(low), fabs(high))))) { // one value: around it
        double middle = low / 2 + high / 2;
        double pad = integer ? 1.0 : (fabs(middle) > 0 ? fabs(middle) * 0.1 : 0.5);
        low = middle - pad;
        high = middle + pad;
        if (integer && low < 0) low = 0;
    } else if (!integer) { // room around the extreme points, off the frame
        double margin = (high - low) * 0.03;
        low -= margin;
        high += margin;
    }
    axis.tick = plot_nice_number((high - low) / (ticks - 1));
    if (integer && axis.tick < 1.0) axis.tick = 1.0;
    axis.min = floor(low / axis.tick) * axis.tick;
    axis.max = ceil(high / axis.tick) * axis.tick;
    if (!(axis.max > axis.min)) axis.max = axis.min + axis.tick;
    double largest = fmax(fabs(axis.min), fabs(axis.max));
    axis.scientific = largest >= 1e7 || axis.tick < 1e-5;
    // enough digits that neighbouring ticks differ
    int decimals = axis.scientific ? (int)ceil(log10(largest / axis.tick) - 1e-9)
                                   : (int)-floor(log10(axis.tick) + 1e-9);
    axis.decimals = decimals > 0 ? (decimals < 15 ? decimals : 15) : 0;
    return axis;
}

// The plot area, in pixels.
#define PLOT_WIDTH 900
#define PLOT_HEIGHT 560
#define PLOT_LEFT 80.0
#define PLOT_TOP 76.0
#define PLOT_AREA_WIDTH 730.0
#define PLOT_AREA_HEIGHT 420.0

static inline void plot_tick_label(const PlotAxis *a, double value, char *text, size_t size) {
    if (fabs(value) < a->tick * 1e-9) value = 0.0; // min + i * tick: no "-0.0" or "1e-17"
    snprintf(text, size, a->scientific ? "%.*e" : "%.*f", a->decimals, value);
}

static inline double plot_x(const PlotAxis *a, double step) {
    return PLOT_LEFT + (step - a->min) / (a->max - a->min) * PLOT_AREA_WIDTH;
}

static inline double plot_y(const PlotAxis *a, double value) {
    return PLOT_TOP + (a->max - value) / (a->max - a->min) * PLOT_AREA_HEIGHT;
}

// text as XML character data: markup characters escaped; control bytes and bytes that are not
// ASCII (a path's encoding is unknown, and invalid UTF-8 would make the file unreadable) as '?'
static inline void svg_put_text(FILE *out, const char *text) {
    for (const unsigned char *p = (const unsigned char *)text; *p != '\0'; p++) {
        if (*p == '&')
            fputs("&amp;", out);
        else if (*p == '<')
            fputs("&lt;", out);
        else if (*p == '>')
            fputs("&gt;", out);
        else if (*p == '"')
            fputs("&quot;", out);
        else if (*p < 0x20 || *p >= 0x7f)
            fputc('?', out);
        else
            fputc(*p, out);
    }
}

// The opening of every llmc plot: XML declaration, <svg> whose class is mark (report_may_write
// replaces only a file that carries it), white background, and the bold title (prefix, then the
// escaped title) centred at title_y.
static inline void svg_begin(FILE *out, const char *mark, int title_y, int title_size,
                             const char *title_prefix, const char *title) {
    fprintf(out, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    fprintf(out,
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" viewBox=\"0 0 "
            "%d %d\" font-family=\"DejaVu Sans, Arial, Helvetica, sans-serif\" font-size=\"13\" "
            "class=\"%s\">\n",
            PLOT_WIDTH, PLOT_HEIGHT, PLOT_WIDTH, PLOT_HEIGHT, mark);
    fprintf(out, "<rect width=\"%d\" height=\"%d\" fill=\"white\"/>\n", PLOT_WIDTH, PLOT_HEIGHT);
    fprintf(out,
            "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\" font-size=\"%d\" "
            "font-weight=\"bold\">%s",
            PLOT_WIDTH / 2, title_y, title_size, title_prefix);
    svg_put_text(out, title);
    fputs("</text>\n", out);
}

// Grid lines and tick labels of the x and y axes (x labels as whole numbers when x_whole).
static inline void svg_grid(FILE *out, const PlotAxis *x_axis, const PlotAxis *y_axis,
                            int x_whole) {
    const double right = PLOT_LEFT + PLOT_AREA_WIDTH, bottom = PLOT_TOP + PLOT_AREA_HEIGHT;
    char label[64];
    for (int i = 0; i <= 100; i++) {
        double v = x_axis->min + i * x_axis->tick;
        if (v > x_axis->max + x_axis->tick * 1e-6) break;
        double x = plot_x(x_axis, v);
        if (x_whole)
            snprintf(label, sizeof(label), "%.0f", v);
        else
            plot_tick_label(x_axis, v, label, sizeof(label));
        fprintf(out,
                "<line x1=\"%.2f\" y1=\"%.2f\" x2=\"%.2f\" y2=\"%.2f\"/>\n<text class=\"x-tick\" "
                "x=\"%.2f\" y=\"%.2f\" text-anchor=\"middle\" stroke=\"none\" "
                "fill=\"#333333\">%s</text>\n",
                x, PLOT_TOP, x, bottom, x, bottom + 18, label);
    }
    for (int i = 0; i <= 100; i++) {
        double v = y_axis->min + i * y_axis->tick;
        if (v > y_axis->max + y_axis->tick * 1e-6) break;
        double y = plot_y(y_axis, v);
        plot_tick_label(y_axis, v, label, sizeof(label));
        fprintf(out,
                "<line x1=\"%.2f\" y1=\"%.2f\" x2=\"%.2f\" y2=\"%.2f\"/>\n<text class=\"y-tick\" "
                "x=\"%.2f\" y=\"%.2f\" text-anchor=\"end\" stroke=\"none\" "
                "fill=\"#333333\">%s</text>\n",
                PLOT_LEFT, y, right, y, PLOT_LEFT - 8, y + 4, label);
    }
}

// The plot area's frame and the titles of the x axis (below) and the y axis (left, vertical).
static inline void svg_frame(FILE *out, const char *x_title, const char *y_title) {
    fprintf(out,
            "<rect x=\"%.2f\" y=\"%.2f\" width=\"%.2f\" height=\"%.2f\" fill=\"none\" "
            "stroke=\"#333333\"/>\n",
            PLOT_LEFT, PLOT_TOP, PLOT_AREA_WIDTH, PLOT_AREA_HEIGHT);
    fprintf(out, "<text x=\"%.2f\" y=\"%.2f\" text-anchor=\"middle\">%s</text>\n",
            PLOT_LEFT + PLOT_AREA_WIDTH / 2, PLOT_TOP + PLOT_AREA_HEIGHT + 42, x_title);
    fprintf(out,
            "<text x=\"22\" y=\"%.2f\" text-anchor=\"middle\" transform=\"rotate(-90 22 %.2f)\">"
            "%s</text>\n",
            PLOT_TOP + PLOT_AREA_HEIGHT / 2, PLOT_TOP + PLOT_AREA_HEIGHT / 2, y_title);
}

// One series as a polyline (with circles when markers) that keeps main.log's steps and value
// texts; x = step * x_per_step on x_axis (1 for steps, tokens a step / 1e6 for millions of tokens).
static inline void svg_series(FILE *out, const LogSeries *s, const char *id, const char *label,
                              const char *color, const char *dash, int markers, double x_per_step,
                              const PlotAxis *x_axis, const PlotAxis *y_axis, const char *axis) {
    if (s->count == 0) return;
    fprintf(out, "<g class=\"series\" id=\"%s\" data-label=\"", id);
    svg_put_text(out, label);
    fprintf(out, "\" data-axis=\"%s\">\n", axis);
    fprintf(out, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"1.6\"%s%s%s data-steps=\"",
            color, dash[0] ? " stroke-dasharray=\"" : "", dash, dash[0] ? "\"" : "");
    for (size_t i = 0; i < s->count; i++) fprintf(out, "%s%d", i ? " " : "", s->steps[i]);
    fputs("\" data-values=\"", out);
    for (size_t i = 0; i < s->count; i++) fprintf(out, "%s%s", i ? " " : "", s->texts[i]);
    fputs("\" points=\"", out);
    for (size_t i = 0; i < s->count; i++) {
        fprintf(out, "%s%.2f,%.2f", i ? " " : "", plot_x(x_axis, s->steps[i] * x_per_step),
                plot_y(y_axis, s->values[i]));
    }
    fputs("\"/>\n", out);
    if (markers) {
        for (size_t i = 0; i < s->count; i++) {
            fprintf(out, "<circle class=\"marker\" cx=\"%.2f\" cy=\"%.2f\" r=\"3\" fill=\"%s\"/>\n",
                    plot_x(x_axis, s->steps[i] * x_per_step), plot_y(y_axis, s->values[i]), color);
        }
    }
    fputs("</g>\n", out);
}

static inline void series_range(const LogSeries *s, double *low, double *high, int steps) {
    for (size_t i = 0; i < s->count; i++) {
        double v = steps ? (double)s->steps[i] : s->values[i];
        if (v < *low) *low = v;
        if (v > *high) *high = v;
    }
}

// Writes the plot of log into out; title names the run (any bytes).
static inline void report_write_svg(FILE *out, const RunLog *log, const char *title) {
    const LogSeries *train = &log->train, *val = &log->val, *eval = &log->eval;
    double step_low = INFINITY, step_high = -INFINITY, loss_low = INFINITY, loss_high = -INFINITY;
    double acc_low = INFINITY, acc_high = -INFINITY;
    series_range(train, &step_low, &step_high, 1);
    series_range(val, &step_low, &step_high, 1);
    series_range(eval, &step_low, &step_high, 1);
    series_range(train, &loss_low, &loss_high, 0);
    series_range(val, &loss_low, &loss_high, 0);
    series_range(eval, &acc_low, &acc_high, 0);
    int has_points = step_low <= step_high;
    if (!has_points) step_low = 0, step_high = 10;
    if (loss_low > loss_high) loss_low = 0, loss_high = 1;
    PlotAxis x_axis = plot_axis(step_low, step_high, 8, 1);
    PlotAxis y_axis = plot_axis(loss_low, loss_high, 7, 0);
    PlotAxis y2_axis = plot_axis(acc_low, acc_high, 7, 0);
    int has_eval = eval->count > 0;
    const double right = PLOT_LEFT + PLOT_AREA_WIDTH;

    svg_begin(out, REPORT_SVG_MARK, 28, 17, "Loss: ", title);
    // the mapping from data to pixels: x = left + (step - x-min) / (x-max - x-min) * width,
    // y = top + (y-max - value) / (y-max - y-min) * height (y2 for the right axis)
    fprintf(out,
            "<g id=\"plot\" data-left=\"%.17g\" data-top=\"%.17g\" data-width=\"%.17g\" "
            "data-height=\"%.17g\" data-x-min=\"%.17g\" data-x-max=\"%.17g\" data-y-min=\"%.17g\" "
            "data-y-max=\"%.17g\"",
            PLOT_LEFT, PLOT_TOP, PLOT_AREA_WIDTH, PLOT_AREA_HEIGHT, x_axis.min, x_axis.max,
            y_axis.min, y_axis.max);
    if (has_eval) {
        fprintf(out, " data-y2-min=\"%.17g\" data-y2-max=\"%.17g\"", y2_axis.min, y2_axis.max);
    }
    fprintf(out, " data-malformed-lines=\"%zu\">\n", log->malformed);
    // grid, ticks and their labels
    fputs("<g class=\"axes\" stroke=\"#dddddd\" stroke-width=\"1\">\n", out);
    svg_grid(out, &x_axis, &y_axis, 1);
    if (has_eval) {
        for (int i = 0; i <= 100; i++) {
            double v = y2_axis.min + i * y2_axis.tick;
            if (v > y2_axis.max + y2_axis.tick * 1e-6) break;
            char label[64];
            plot_tick_label(&y2_axis, v, label, sizeof(label));
            fprintf(out,
                    "<text class=\"y2-tick\" x=\"%.2f\" y=\"%.2f\" stroke=\"none\" "
                    "fill=\"#2ca02c\">%s</text>\n",
                    right + 8, plot_y(&y2_axis, v) + 4, label);
        }
    }
    fputs("</g>\n", out);
    svg_frame(out, "step", "loss");
    if (has_eval) {
        double x = PLOT_WIDTH - 14.0, y = PLOT_TOP + PLOT_AREA_HEIGHT / 2;
        fprintf(out,
                "<text x=\"%.2f\" y=\"%.2f\" text-anchor=\"middle\" fill=\"#2ca02c\" "
                "transform=\"rotate(90 %.2f %.2f)\">HellaSwag accuracy</text>\n",
                x, y, x, y);
    }
    svg_series(out, train, "train", "train loss", "#1f77b4", "", train->count == 1, 1, &x_axis,
               &y_axis, "y");
    svg_series(out, val, "val", "val loss", "#ff7f0e", "", 1, 1, &x_axis, &y_axis, "y");
    svg_series(out, eval, "eval", "HellaSwag accuracy (right axis)", "#2ca02c", "6 3", 1, 1,
               &x_axis, &y2_axis, "y2");
    if (!has_points) {
        fprintf(out,
                "<text x=\"%.2f\" y=\"%.2f\" text-anchor=\"middle\" fill=\"#888888\">no trl, tel "
                "or eval lines in main.log yet</text>\n",
                PLOT_LEFT + PLOT_AREA_WIDTH / 2, PLOT_TOP + PLOT_AREA_HEIGHT / 2);
    }
    // legend: one row between the title and the plot, off the data
    const LogSeries *entries[3] = {train, val, eval};
    const char *labels[3] = {"train loss", "val loss", "HellaSwag accuracy (right axis)"};
    const char *colors[3] = {"#1f77b4", "#ff7f0e", "#2ca02c"};
    const double entry_widths[3] = {120, 110, 250};
    double legend_width = 0;
    for (int i = 0; i < 3; i++) legend_width += entries[i]->count > 0 ? entry_widths[i] : 0;
    double x = PLOT_LEFT + (PLOT_AREA_WIDTH - legend_width) / 2, y = PLOT_TOP - 22;
    fputs("<g class=\"legend\">\n", out);
    for (int i = 0; i < 3; i++) {
        if (entries[i]->count == 0) continue;
        fprintf(out,
                "<line x1=\"%.2f\" y1=\"%.2f\" x2=\"%.2f\" y2=\"%.2f\" stroke=\"%s\" "
                "stroke-width=\"2.5\"%s/>\n",
                x, y - 4, x + 26, y - 4, colors[i], i == 2 ? " stroke-dasharray=\"6 3\"" : "");
        fprintf(out, "<text x=\"%.2f\" y=\"%.2f\">%s</text>\n", x + 32, y, labels[i]);
        x += entry_widths[i];
    }
    fputs("</g>\n", out);
    fputs("</g>\n</svg>\n", out);
}

// ---------------------------------------------------------------------------------------------
// Writing the files

// Whether path may be (over)written with a file carrying mark: it does not exist, or it is a
// regular file that one of these writers wrote (mark in its first bytes). Else *problem says why.
static inline int report_may_write(const char *path, const char *mark, const char **problem) {
    struct stat st;
    if (lstat(path, &st) != 0) return errno == ENOENT ? 1 : (*problem = strerror(errno), 0);
    if (!S_ISREG(st.st_mode)) {
        *problem = "exists and is not a regular file: not replaced";
        return 0;
    }
    FILE *file = fopen(path, "rb");
    char head[513];
    size_t got = file != NULL ? fread(head, 1, sizeof(head) - 1, file) : 0;
    if (file != NULL) fclose(file);
    head[got] = '\0';
    if (memchr(head, '\0', got) != NULL || strstr(head, mark) == NULL) {
        *problem = "exists and was not written by llmc: not replaced";
        return 0;
    }
    return 1;
}

// Draws log into path (temporary file and rename). Returns 0, or -1 with *problem set when path
// is something else than an earlier plot.
static inline int report_write_plot(const char *path, const RunLog *log, const char *title,
                                    const char **problem) {
    if (!report_may_write(path, REPORT_SVG_MARK, problem)) return -1;
    AtomicFile out;
    atomic_open(&out, path);
    report_write_svg(out.file, log, title);
    atomic_commit(&out);
    return 0;
}

// `--plot LOG [--plot-out SVG]`: redraws the plot of main.log LOG into SVG (default: loss.svg
// beside LOG). Exits 1 with one line when LOG cannot be read or SVG is not an earlier plot.
static inline void report_plot_command(const char *log_path, const char *svg_path) {
    char default_path[4096 + 16];
    if (svg_path == NULL || svg_path[0] == '\0') {
        const char *slash = strrchr(log_path, '/');
        int dir_length = slash == NULL ? 1 : (int)(slash - log_path);
        if (slash == log_path) dir_length = 0; // "/main.log"
        snprintf(default_path, sizeof(default_path), "%.*s/loss.svg", dir_length,
                 slash == NULL ? "." : log_path);
        svg_path = default_path;
    }
    RunLog log;
    const char *problem = NULL;
    if (run_log_read(&log, log_path, &problem) != 0)
        fatal("%s: cannot read: %s", log_path, problem);
    if (report_write_plot(svg_path, &log, log_path, &problem) != 0) {
        run_log_free(&log);
        fatal("%s: %s", svg_path, problem);
    }
    printf("%s: %zu train, %zu val, %zu eval point(s) from %s (%zu line(s), %zu malformed "
           "skipped)\n",
           svg_path, log.train.count, log.val.count, log.eval.count, log_path, log.lines,
           log.malformed);
    size_t dropped = log.train.dropped + log.val.dropped + log.eval.dropped;
    if (dropped > 0)
        printf("note: %zu point(s) past %u a series left out\n", dropped, REPORT_MAX_POINTS);
    run_log_free(&log);
}

// What a trainer knows at the end of a run, for report.md (the losses come from main.log).
typedef struct {
    const char *output_dir;
    const char *model;  // -e: a descriptor such as d12 or a file (a resumed run: its checkpoint)
    const char *device; // "CPU (N threads)", the GPU's name and precision
    size_t num_parameters;
    GPT2Config config;
    const char *train_pattern, *val_pattern;
    int B, T, tokens_per_step, grad_accum_steps, processes;
    int start_step, max_steps; // this run trained steps start_step..max_steps-1
    double wall_seconds;       // this run's step loop, validation and sampling included
    double train_seconds;      // its timed steps (the first left out, as the progress line)
    int timed_steps;           //
    double mfu_percent;        // over the timed steps; < 0: unknown (CPU, an unknown GPU)
    const char *sample;        // the last sample printed (NULL: none)
    int sample_step;           // the step it was taken at
} RunReport;

// A Markdown code block around text: a fence longer than any run of backticks in it.
static inline void report_put_code_block(FILE *out, const char *text) {
    int longest = 0, run = 0;
    for (const char *p = text; *p != '\0'; p++) {
        run = *p == '`' ? run + 1 : 0;
        if (run > longest) longest = run;
    }
    int fence = longest >= 3 ? longest + 1 : 3;
    for (int i = 0; i < fence; i++) fputc('`', out);
    fputs("text\n", out);
    fputs(text, out);
    if (text[0] == '\0' || text[strlen(text) - 1] != '\n') fputc('\n', out);
    for (int i = 0; i < fence; i++) fputc('`', out);
    fputc('\n', out);
}

// text for a Markdown table cell: '|' escaped, control characters as spaces
static inline void report_put_cell(FILE *out, const char *text) {
    for (const unsigned char *p = (const unsigned char *)text; *p != '\0'; p++) {
        if (*p == '|')
            fputs("\\|", out);
        else if (*p < 0x20)
            fputc(' ', out);
        else
            fputc(*p, out);
    }
}

static inline void report_put_last(FILE *out, const char *name, const LogSeries *s) {
    if (s->count == 0) return;
    fprintf(out, "| %s | %s (step %d) |\n", name, s->texts[s->count - 1], s->steps[s->count - 1]);
}

// Writes r->output_dir/report.md and loss.svg from r and main.log there. A file of those names
// that these writers did not write is left alone, with a warning (the run itself is done).
static inline void report_write_run(const RunReport *r) {
    char log_path[4096 + 16], svg_path[4096 + 16], md_path[4096 + 16];
    snprintf(log_path, sizeof(log_path), "%s/main.log", r->output_dir);
    snprintf(svg_path, sizeof(svg_path), "%s/loss.svg", r->output_dir);
    snprintf(md_path, sizeof(md_path), "%s/report.md", r->output_dir);
    RunLog log;
    const char *problem = NULL;
    if (run_log_read(&log, log_path, &problem) != 0) {
        printf("warning: %s: cannot read (%s): no report or plot\n", log_path, problem);
        return;
    }
    // titled as `--plot DIR/main.log` titles it, which then redraws this very file
    if (report_write_plot(svg_path, &log, log_path, &problem) != 0) {
        printf("warning: %s %s\n", svg_path, problem);
    }
    if (!report_may_write(md_path, REPORT_MD_MARK, &problem)) {
        printf("warning: %s %s\n", md_path, problem);
        run_log_free(&log);
        return;
    }
    AtomicFile af;
    atomic_open(&af, md_path);
    FILE *out = af.file;
    fprintf(out, REPORT_MD_MARK "\n# Training run: ");
    report_put_cell(out, r->output_dir);
    fputs("\n\n| | |\n|---|---|\n| model | ", out);
    report_put_cell(out, r->model);
    fprintf(out, " |\n| parameters | %zu (%.2fM) |\n", r->num_parameters, r->num_parameters / 1e6);
    const GPT2Config *c = &r->config;
    fprintf(out,
            "| layers L / channels C / heads NH / vocabulary V | %d / %d / %d / %d (padded %d) "
            "|\n",
            c->num_layers, c->channels, c->num_heads, c->vocab_size, c->padded_vocab_size);
    if (c->arch == MODEL_ARCH_LLAMA) {
        fprintf(out,
                "| llama: kv heads KV / SwiGLU ffn / QK-norm / RoPE theta | %d / %d / %s / %g |\n",
                c->num_kv_heads, c->ffn, c->qknorm ? "on" : "off", (double)c->rope_theta);
    }
    fprintf(out, "| max sequence length | %d |\n| device | ", c->max_seq_len);
    report_put_cell(out, r->device);
    fputs(" |\n| train data | ", out);
    report_put_cell(out, r->train_pattern);
    fputs(" |\n| val data | ", out);
    report_put_cell(out, r->val_pattern[0] ? r->val_pattern : "none");
    fprintf(out, " |\n| batch | B=%d T=%d x %d process(es), %d tokens/step (%d micro-step(s)) |\n",
            r->B, r->T, r->processes, r->tokens_per_step, r->grad_accum_steps);
    int run_steps = r->max_steps > r->start_step ? r->max_steps - r->start_step : 0;
    fprintf(out, "| steps | %d", r->max_steps);
    if (r->start_step > 0)
        fprintf(out, " (this run: %d, resumed at step %d)", run_steps, r->start_step);
    fprintf(out, " |\n| tokens seen | %.0f", (double)r->max_steps * r->tokens_per_step);
    if (r->start_step > 0)
        fprintf(out, " (this run: %.0f)", (double)run_steps * r->tokens_per_step);
    fprintf(out,
            " |\n| wall time | %.1f s (this run's steps, validation, sampling and checkpoints) |\n",
            r->wall_seconds);
    if (r->timed_steps > 0 && r->train_seconds > 0) {
        fprintf(out, "| tokens/s | %.0f (mean over %d step(s), the first left out) |\n",
                (double)r->tokens_per_step * r->timed_steps / r->train_seconds, r->timed_steps);
        if (r->mfu_percent >= 0) fprintf(out, "| MFU | %.1f%% |\n", r->mfu_percent);
    }
    report_put_last(out, "final train loss", &log.train);
    report_put_last(out, "final val loss", &log.val);
    report_put_last(out, "HellaSwag accuracy", &log.eval);
    fputs("\n![train and val loss against step](loss.svg)\n\n", out);
    fprintf(out, "main.log: %zu train, %zu val, %zu eval point(s)", log.train.count, log.val.count,
            log.eval.count);
    if (log.malformed > 0) fprintf(out, ", %zu malformed line(s) skipped", log.malformed);
    size_t dropped = log.train.dropped + log.val.dropped + log.eval.dropped;
    if (dropped > 0)
        fprintf(out, ", %zu point(s) past %u a series left out", dropped, REPORT_MAX_POINTS);
    fputs(". Redraw the plot from any main.log with `./train_gpt2 --plot DIR/main.log`.\n", out);
    if (r->sample != NULL) {
        fprintf(out, "\n## Sample (step %d)\n\n", r->sample_step);
        report_put_code_block(out, r->sample);
    }
    atomic_commit(&af);
    printf("report: %s and %s\n", md_path, svg_path);
    run_log_free(&log);
}

#endif // LLMC_REPORT_H
