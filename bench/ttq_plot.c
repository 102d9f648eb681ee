// The time-to-quality plot (bench/time_to_quality.sh): the val loss of several runs against
// tokens seen, one line each, drawn with llmc/report.h's writer pieces (main.log reader, axes,
// ticks, text escaping, atomic replace of an earlier plot only), so that it reads its logs as
// the trainer's own loss.svg does. Each series keeps main.log's steps and values (data-steps,
// data-values); x = step * tokens_per_step / 1e6 on the axis (millions of tokens).
//
// usage: ttq_plot OUT.svg TOKENS_PER_STEP TITLE LABEL MAIN.LOG [LABEL MAIN.LOG]...
#include <stdio.h>
#include <stdlib.h>

#include "../llmc/report.h"

#define TTQ_PLOT_MARK "llmc-ttq-plot"
#define TTQ_MAX_SERIES 8

static const char *series_colors[TTQ_MAX_SERIES] = {"#1f77b4", "#ff7f0e", "#2ca02c", "#d62728",
                                                    "#9467bd", "#8c564b", "#e377c2", "#7f7f7f"};

static void write_plot(FILE *out, RunLog *logs, char **labels, int count, double tokens_per_step,
                       const char *title) {
    double x_low = INFINITY, x_high = -INFINITY, y_low = INFINITY, y_high = -INFINITY;
    for (int i = 0; i < count; i++) {
        series_range(&logs[i].val, &x_low, &x_high, 1);
        series_range(&logs[i].val, &y_low, &y_high, 0);
    }
    if (x_low > x_high) x_low = 0, x_high = 10, y_low = 0, y_high = 1;
    const double per_million = tokens_per_step / 1e6;
    PlotAxis x_axis = plot_axis(x_low * per_million, x_high * per_million, 8, 0);
    PlotAxis y_axis = plot_axis(y_low, y_high, 7, 0);
    const double right = PLOT_LEFT + PLOT_AREA_WIDTH;
    svg_begin(out, TTQ_PLOT_MARK, 24, 16, "", title);
    fprintf(out,
            "<g id=\"plot\" data-left=\"%.17g\" data-top=\"%.17g\" data-width=\"%.17g\" "
            "data-height=\"%.17g\" data-x-min=\"%.17g\" data-x-max=\"%.17g\" data-y-min=\"%.17g\" "
            "data-y-max=\"%.17g\" data-tokens-per-step=\"%.17g\">\n",
            PLOT_LEFT, PLOT_TOP, PLOT_AREA_WIDTH, PLOT_AREA_HEIGHT, x_axis.min, x_axis.max,
            y_axis.min, y_axis.max, tokens_per_step);
    fputs("<g class=\"axes\" stroke=\"#dddddd\" stroke-width=\"1\">\n", out);
    svg_grid(out, &x_axis, &y_axis, 0);
    fputs("</g>\n", out);
    svg_frame(out, "tokens seen (millions)", "val loss");
    for (int i = 0; i < count; i++) {
        char id[32];
        snprintf(id, sizeof(id), "series%d", i);
        svg_series(out, &logs[i].val, id, labels[i], series_colors[i], "", 1, per_million, &x_axis,
                   &y_axis, "y");
    }
    // legend: top right inside the plot, where falling loss curves leave room
    fputs("<g class=\"legend\">\n", out);
    for (int i = 0; i < count; i++) {
        double x = right - 330, y = PLOT_TOP + 22 + 20 * i;
        fprintf(out,
                "<line x1=\"%.2f\" y1=\"%.2f\" x2=\"%.2f\" y2=\"%.2f\" stroke=\"%s\" "
                "stroke-width=\"2.5\"/>\n<text x=\"%.2f\" y=\"%.2f\">",
                x, y - 4, x + 26, y - 4, series_colors[i], x + 32, y);
        svg_put_text(out, labels[i]);
        fputs("</text>\n", out);
    }
    fputs("</g>\n</g>\n</svg>\n", out);
}

int main(int argc, char **argv) {
    if (argc < 6 || (argc - 4) % 2 != 0) {
        fprintf(stderr,
                "usage: %s OUT.svg TOKENS_PER_STEP TITLE LABEL MAIN.LOG [LABEL MAIN.LOG]...\n",
                argv[0]);
        return 1;
    }
    char *end;
    double tokens_per_step = strtod(argv[2], &end);
    if (*end != '\0' || !(tokens_per_step >= 1 && tokens_per_step <= 1e12)) {
        fprintf(stderr, "error: TOKENS_PER_STEP '%s': expected a number in [1, 1e12]\n", argv[2]);
        return 1;
    }
    int count = (argc - 4) / 2;
    if (count > TTQ_MAX_SERIES) {
        fprintf(stderr, "error: %d series: at most %d\n", count, TTQ_MAX_SERIES);
        return 1;
    }
    RunLog logs[TTQ_MAX_SERIES];
    char *labels[TTQ_MAX_SERIES];
    for (int i = 0; i < count; i++) {
        labels[i] = argv[4 + 2 * i];
        const char *problem = NULL;
        if (run_log_read(&logs[i], argv[5 + 2 * i], &problem) != 0) {
            fprintf(stderr, "error: %s: %s\n", argv[5 + 2 * i], problem);
            return 1;
        }
    }
    const char *problem = NULL;
    if (!report_may_write(argv[1], TTQ_PLOT_MARK, &problem)) {
        fprintf(stderr, "error: %s: %s\n", argv[1], problem);
        return 1;
    }
    AtomicFile out;
    atomic_open(&out, argv[1]);
    write_plot(out.file, logs, labels, count, tokens_per_step, argv[3]);
    atomic_commit(&out);
    for (int i = 0; i < count; i++) run_log_free(&logs[i]);
    return 0;
}
