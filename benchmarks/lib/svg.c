/* svg.c — benchmark plots as small SVG files: a scatter plot (axes with a
 * few ticks, one dot and one label per point) and a bar chart (one bar per
 * value, a dashed reference line). */
#include <math.h>
#include <stdio.h>
#include <string.h>
#include "bench.h"

enum { W = 720, H = 480, ML = 70, MR = 170, MT = 40, MB = 60 };   /* the scatter plot */

/* Writes s with XML's special characters escaped. */
static void put_text(FILE *f, const char *s) {
    for (; s && *s; s++) {
        switch (*s) {
        case '<': fputs("&lt;", f); break;
        case '>': fputs("&gt;", f); break;
        case '&': fputs("&amp;", f); break;
        case '"': fputs("&quot;", f); break;
        default:
            if ((unsigned char)*s >= 0x20 || *s == '\t') fputc(*s, f);
        }
    }
}

/* A round tick step giving about 5 ticks over span. */
static double tick_step(double span) {
    double raw = span / 5, p = pow(10, floor(log10(raw))), m = raw / p;
    return (m < 1.5 ? 1 : m < 3.5 ? 2 : m < 7.5 ? 5 : 10) * p;
}

static void range_of(const bench_svg_point *p, int n, int y, double *lo, double *hi) {
    *lo = INFINITY;
    *hi = -INFINITY;
    for (int i = 0; i < n; i++) {
        double v = y ? p[i].y : p[i].x;
        if (!isfinite(v)) continue;
        if (v < *lo) *lo = v;
        if (v > *hi) *hi = v;
    }
    if (!isfinite(*lo)) { *lo = 0; *hi = 1; }
    if (*lo > 0) *lo = 0;               /* both axes start at zero */
    if (*hi <= *lo) *hi = *lo + 1;
    *hi += (*hi - *lo) * 0.05;
}

static void axis(FILE *f, double lo, double hi, int vertical) {
    double st = tick_step(hi - lo);
    for (double v = ceil(lo / st) * st; v <= hi + st * 1e-9; v += st) {
        double fr = (v - lo) / (hi - lo);
        if (vertical) {
            double y = H - MB - fr * (H - MT - MB);
            fprintf(f, "<line x1='%d' y1='%.1f' x2='%d' y2='%.1f' stroke='#ddd'/>\n", ML, y, W - MR, y);
            fprintf(f, "<text x='%d' y='%.1f' text-anchor='end' font-size='12'>%g</text>\n", ML - 6, y + 4, v);
        } else {
            double x = ML + fr * (W - ML - MR);
            fprintf(f, "<line x1='%.1f' y1='%d' x2='%.1f' y2='%d' stroke='#ddd'/>\n", x, MT, x, H - MB);
            fprintf(f, "<text x='%.1f' y='%d' text-anchor='middle' font-size='12'>%g</text>\n", x, H - MB + 18, v);
        }
    }
}

int bench_svg_scatter(const char *path, const char *title, const char *xlabel, const char *ylabel,
                    const bench_svg_point *p, int n, eng_err *err) {
    if (!path || (n > 0 && !p)) return eng_seterr(err, ENG_EINVAL, "svg: missing path or points");
    FILE *f = fopen(path, "w");
    if (!f) return eng_seterr(err, ENG_EIO, "svg: cannot write %s", path);
    double x0, x1, y0, y1;
    range_of(p, n, 0, &x0, &x1);
    range_of(p, n, 1, &y0, &y1);
    fprintf(f, "<svg xmlns='http://www.w3.org/2000/svg' width='%d' height='%d' "
               "font-family='sans-serif'>\n<rect width='100%%' height='100%%' fill='white'/>\n", W, H);
    axis(f, x0, x1, 0);
    axis(f, y0, y1, 1);
    fprintf(f, "<rect x='%d' y='%d' width='%d' height='%d' fill='none' stroke='black'/>\n",
            ML, MT, W - ML - MR, H - MT - MB);
    fprintf(f, "<text x='%d' y='24' text-anchor='middle' font-size='15'>", (W - MR + ML) / 2);
    put_text(f, title);
    fprintf(f, "</text>\n<text x='%d' y='%d' text-anchor='middle' font-size='13'>", (W - MR + ML) / 2, H - 18);
    put_text(f, xlabel);
    fprintf(f, "</text>\n<text x='18' y='%d' text-anchor='middle' font-size='13' "
               "transform='rotate(-90 18 %d)'>", H / 2, H / 2);
    put_text(f, ylabel);
    fputs("</text>\n", f);
    for (int i = 0; i < n; i++) {
        if (!isfinite(p[i].x) || !isfinite(p[i].y)) continue;
        double x = ML + (p[i].x - x0) / (x1 - x0) * (W - ML - MR);
        double y = H - MB - (p[i].y - y0) / (y1 - y0) * (H - MT - MB);
        fprintf(f, "<circle cx='%.1f' cy='%.1f' r='4' fill='#1f77b4'/>\n", x, y);
        fprintf(f, "<text x='%.1f' y='%.1f' font-size='11'>", x + 6, y - 6 - (i % 3) * 11.0);
        put_text(f, p[i].label);
        fputs("</text>\n", f);
    }
    fputs("</svg>\n", f);
    if (fclose(f)) return eng_seterr(err, ENG_EIO, "svg: error writing %s", path);
    return ENG_OK;
}

int bench_svg_bars(const char *path, const char *title, const char *ylabel,
                   const char *const *labels, const double *v, int n, double ref, eng_err *err) {
    if (!path || (n > 0 && (!labels || !v))) return eng_seterr(err, ENG_EINVAL, "svg: missing path or bars");
    FILE *f = fopen(path, "w");
    if (!f) return eng_seterr(err, ENG_EIO, "svg: cannot write %s", path);
    const double BW = 900, BH = 420, L = 60, R = 20, T = 40, B = 70, PH = BH - T - B;
    double top = ref;
    for (int i = 0; i < n; i++) if (v[i] > top) top = v[i];
    top = top > 0 ? top * 1.1 : 1;
    fprintf(f, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" height=\"%.0f\" "
               "font-family=\"sans-serif\" font-size=\"11\">\n", BW, BH);
    fprintf(f, "<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n");
    fprintf(f, "<text x=\"%.0f\" y=\"22\" font-size=\"15\" text-anchor=\"middle\">", BW / 2);
    put_text(f, title);
    fprintf(f, "</text>\n");
    fprintf(f, "<text x=\"14\" y=\"%.0f\" transform=\"rotate(-90 14 %.0f)\" text-anchor=\"middle\">",
            T + PH / 2, T + PH / 2);
    put_text(f, ylabel);
    fprintf(f, "</text>\n");
    fprintf(f, "<line x1=\"%.0f\" y1=\"%.0f\" x2=\"%.0f\" y2=\"%.0f\" stroke=\"black\"/>\n", L, BH - B, BW - R, BH - B);
    fprintf(f, "<line x1=\"%.0f\" y1=\"%.0f\" x2=\"%.0f\" y2=\"%.0f\" stroke=\"black\"/>\n", L, T, L, BH - B);
    for (int t = 0; t <= 4; t++)
        fprintf(f, "<text x=\"%.0f\" y=\"%.1f\" text-anchor=\"end\">%.3g</text>\n", L - 4,
                BH - B - PH * t / 4 + 4, top * t / 4);
    double bw = n ? (BW - L - R) / n : 0;
    for (int i = 0; i < n; i++) {
        double h = PH * (v[i] > 0 ? v[i] : 0) / top, x = L + i * bw;
        fprintf(f, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"%s\"><title>",
                x + bw * 0.1, BH - B - h, bw * 0.8, h, v[i] >= ref ? "#4a7bd0" : "#d0734a");
        put_text(f, labels[i]);
        fprintf(f, ": %.3f</title></rect>\n", v[i]);
        if (n <= 40) {
            fprintf(f, "<text x=\"%.1f\" y=\"%.0f\" text-anchor=\"end\" transform=\"rotate(-60 %.1f %.0f)\">",
                    x + bw / 2, BH - B + 12, x + bw / 2, BH - B + 12);
            put_text(f, labels[i]);
            fprintf(f, "</text>\n");
        }
    }
    if (ref > 0) {
        double y = BH - B - PH * ref / top;
        fprintf(f, "<line x1=\"%.0f\" y1=\"%.1f\" x2=\"%.0f\" y2=\"%.1f\" stroke=\"gray\" "
                   "stroke-dasharray=\"4 3\"/>\n", L, y, BW - R, y);
    }
    fprintf(f, "</svg>\n");
    int bad = ferror(f);
    if (fclose(f) || bad) return eng_seterr(err, ENG_EIO, "svg: error writing %s", path);
    return ENG_OK;
}
