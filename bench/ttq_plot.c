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
    const double right = PLOT_LEFT + PLOT_AREA_WIDTH, bottom = PLOT_TOP + PLOT_AREA_HEIGHT;
    fprintf(out, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    fprintf(out,
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" viewBox=\"0 0 "
            "%d %d\" font-family=\"DejaVu Sans, Arial, Helvetica, sans-serif\" font-size=\"13\" "
            "class=\"" TTQ_PLOT_MARK "\">\n",
            PLOT_WIDTH, PLOT_HEIGHT, PLOT_WIDTH, PLOT_HEIGHT);
    fprintf(out, "<rect width=\"%d\" height=\"%d\" fill=\"white\"/>\n", PLOT_WIDTH, PLOT_HEIGHT);
    fprintf(out,
            "<text x=\"%d\" y=\"24\" text-anchor=\"middle\" font-size=\"16\" "
            "font-weight=\"bold\">",
            PLOT_WIDTH / 2);
    svg_put_text(out, title);
    fputs("</text>\n", out);
    fprintf(out,
            "<g id=\"plot\" data-left=\"%.17g\" data-top=\"%.17g\" data-width=\"%.17g\" "
            "data-height=\"%.17g\" data-x-min=\"%.17g\" data-x-max=\"%.17g\" data-y-min=\"%.17g\" "
            "data-y-max=\"%.17g\" data-tokens-per-step=\"%.17g\">\n",
            PLOT_LEFT, PLOT_TOP, PLOT_AREA_WIDTH, PLOT_AREA_HEIGHT, x_axis.min, x_axis.max,
            y_axis.min, y_axis.max, tokens_per_step);
    fputs("<g class=\"axes\" stroke=\"#dddddd\" stroke-width=\"1\">\n", out);
    char label[64];
    for (int i = 0; i <= 100; i++) {
        double v = x_axis.min + i * x_axis.tick;
        if (v > x_axis.max + x_axis.tick * 1e-6) break;
        double x = plot_x(&x_axis, v);
        plot_tick_label(&x_axis, v, label, sizeof(label));
        fprintf(out,
                "<line x1=\"%.2f\" y1=\"%.2f\" x2=\"%.2f\" y2=\"%.2f\"/>\n<text class=\"x-tick\" "
                "x=\"%.2f\" y=\"%.2f\" text-anchor=\"middle\" stroke=\"none\" "
                "fill=\"#333333\">%s</text>\n",
                x, PLOT_TOP, x, bottom, x, bottom + 18, label);
    }
    for (int i = 0; i <= 100; i++) {
        double v = y_axis.min + i * y_axis.tick;
        if (v > y_axis.max + y_axis.tick * 1e-6) break;
        double y = plot_y(&y_axis, v);
        plot_tick_label(&y_axis, v, label, sizeof(label));
        fprintf(out,
                "<line x1=\"%.2f\" y1=\"%.2f\" x2=\"%.2f\" y2=\"%.2f\"/>\n<text class=\"y-tick\" "
                "x=\"%.2f\" y=\"%.2f\" text-anchor=\"end\" stroke=\"none\" "
                "fill=\"#333333\">%s</text>\n",
                PLOT_LEFT, y, right, y, PLOT_LEFT - 8, y + 4, label);
    }
    fputs("</g>\n", out);
    fprintf(out,
            "<rect x=\"%.2f\" y=\"%.2f\" width=\"%.2f\" height=\"%.2f\" fill=\"none\" "
            "stroke=\"#333333\"/>\n",
            PLOT_LEFT, PLOT_TOP, PLOT_AREA_WIDTH, PLOT_AREA_HEIGHT);
    fprintf(out,
            "<text x=\"%.2f\" y=\"%.2f\" text-anchor=\"middle\">tokens seen (millions)</text>\n",
            PLOT_LEFT + PLOT_AREA_WIDTH / 2, bottom + 42);
    fprintf(out,
            "<text x=\"22\" y=\"%.2f\" text-anchor=\"middle\" transform=\"rotate(-90 22 %.2f)\">"
            "val loss</text>\n",
            PLOT_TOP + PLOT_AREA_HEIGHT / 2, PLOT_TOP + PLOT_AREA_HEIGHT / 2);
    for (int i = 0; i < count; i++) {
        const LogSeries *s = &logs[i].val;
        fprintf(out, "<g class=\"series\" id=\"series%d\" data-label=\"", i);
        svg_put_text(out, labels[i]);
        fprintf(out, "\" data-malformed-lines=\"%zu\">\n", logs[i].malformed);
        fprintf(out, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"1.8\" data-steps=\"",
                series_colors[i]);
        for (size_t k = 0; k < s->count; k++) fprintf(out, "%s%d", k ? " " : "", s->steps[k]);
        fputs("\" data-values=\"", out);
        for (size_t k = 0; k < s->count; k++) fprintf(out, "%s%s", k ? " " : "", s->texts[k]);
        fputs("\" points=\"", out);
        for (size_t k = 0; k < s->count; k++) {
            fprintf(out, "%s%.2f,%.2f", k ? " " : "", plot_x(&x_axis, s->steps[k] * per_million),
                    plot_y(&y_axis, s->values[k]));
        }
        fputs("\"/>\n", out);
        for (size_t k = 0; k < s->count; k++) {
            fprintf(out, "<circle cx=\"%.2f\" cy=\"%.2f\" r=\"2.5\" fill=\"%s\"/>\n",
                    plot_x(&x_axis, s->steps[k] * per_million), plot_y(&y_axis, s->values[k]),
                    series_colors[i]);
        }
        fputs("</g>\n", out);
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
