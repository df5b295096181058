/* runner-scaler simulate: the reports of a run: text, JSON and the SVG plot (see simulate.h).
 * Pure: they write into a bounded buffer. */
#include "simulate.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "sim_internal.h"
#include "util.h"

/* ---- reports ------------------------------------------------------------------------------ */

static double secs(int64_t ms)
{
	return (double)ms / SIM_MS_PER_S;
}

static double per_job(int64_t ms, size_t jobs)
{
	return jobs ? secs(ms) / (double)jobs : 0;
}

static void fmt_dur(int64_t ms, char *out, size_t n)
{
	cfg_format_duration((uint64_t)(ms < 0 ? 0 : ms), out, n);
}

static bool failing(const struct sim_model *m)
{
	return m->fail_to_ms > m->fail_from_ms;
}

static int model_line(const struct sim_model *m, const struct sim_pool *pools, size_t npools,
                      struct buf *out)
{
	char iv[32], cl[32], it[32], rd[32];
	int bad = 0;

	fmt_dur(m->interval_ms, iv, sizeof(iv));
	fmt_dur(m->claim_interval_ms, cl, sizeof(cl));
	fmt_dur(m->idle_timeout_ms, it, sizeof(it));
	fmt_dur(m->replace_delay_ms, rd, sizeof(rd));
	if (m->boot_min_ms == m->boot_max_ms)
		bad |= buf_printf(out, "model:  boot %.3g s", secs(m->boot_min_ms)) < 0;
	else
		bad |= buf_printf(out, "model:  boot %.3g-%.3g s (uniform)", secs(m->boot_min_ms),
		                  secs(m->boot_max_ms)) < 0;
	bad |= buf_printf(out, ", poll every %s, claim every %s, idle timeout %s;\n",
	                  m->interval_ms ? iv : "event", m->claim_interval_ms ? cl : "event",
	                  it) < 0;
	if (m->policy == SIM_POLICY_RUNNERD)
		bad |= buf_printf(out, "        an agent that exits leaves the group with a "
		                       "decrement\n") < 0;
	else
		bad |= buf_printf(out,
		                  "        an agent that exits stops its instance; the group "
		                  "replaces it after %s while desired counts it\n",
		                  rd) < 0;
	if (failing(m))
		bad |= buf_printf(
		               out,
		               "        instances launched from %.0f s to %.0f s fail their boot "
		               "and leave\n",
		               secs(m->fail_from_ms), secs(m->fail_to_ms)) < 0;
	if (m->policy == SIM_POLICY_RUNNERD && npools && pools[0].launch_failures > 0)
		bad |= buf_printf(out,
		                  "        launch back-off after %" PRId64
		                  " failed launches in a row%s\n",
		                  pools[0].launch_failures,
		                  npools > 1 ? " (the first pool's)" : "") < 0;
	else if (m->policy == SIM_POLICY_RUNNERD)
		bad |= buf_printf(out, "        no launch back-off\n") < 0;
	if (m->warm_report)
		bad |= buf_printf(out,
		                  "        warm pool of %" PRId64
		                  "%s, stopped; resume %.3g-%.3g s (uniform); a refill boots, "
		                  "prepares and stops (+%.3g s)\n",
		                  npools ? pools[0].warm_pool : 0,
		                  npools > 1 ? " (the first pool's)" : "", secs(m->resume_min_ms),
		                  secs(m->resume_max_ms), secs(m->warm_stop_ms)) < 0;
	return bad ? -EFBIG : 0;
}

/* The agent up without a job: what is neither a job, a boot (or resume) nor a warm-up. */
static int64_t idle_ms(const struct sim_stats *st)
{
	return st->instance_ms - st->busy_ms - st->boot_ms - st->warm_ms;
}

static int warm_text(const struct sim_stats *st, struct buf *out)
{
	return buf_printf(out,
	                  "        warm pool %" PRId64 ": %" PRIu64 " launches from it, %" PRIu64
	                  " refills running %.0f s (%.1f per job); stopped %.0f instance-seconds"
	                  " (EBS only; %.1f per job)\n",
	                  st->warm_pool, st->warm_taken, st->warm_refills, secs(st->warm_ms),
	                  per_job(st->warm_ms, st->jobs), secs(st->warm_stopped_ms),
	                  per_job(st->warm_stopped_ms, st->jobs));
}

static int stats_text(const char *label, const struct sim_stats *st, bool warm, struct buf *out)
{
	int bad = 0;

	bad |= buf_printf(out,
	                  "%s%zu jobs; wait p50 %.1f s, p95 %.1f s, max %.1f s (mean %.1f s)\n",
	                  label, st->jobs, secs(st->wait_p50_ms), secs(st->wait_p95_ms),
	                  secs(st->wait_max_ms), st->wait_mean_ms / SIM_MS_PER_S) < 0;
	if (warm)
		bad |= buf_printf(out,
		                  "        instance-seconds %.0f: busy %.0f, boot %.0f, idle %.0f, "
		                  "warm-up %.0f; per job: idle %.1f, boot + idle + warm-up %.1f\n",
		                  secs(st->instance_ms), secs(st->busy_ms), secs(st->boot_ms),
		                  secs(idle_ms(st)), secs(st->warm_ms),
		                  per_job(idle_ms(st), st->jobs),
		                  per_job(st->instance_ms - st->busy_ms, st->jobs)) < 0;
	else
		bad |= buf_printf(out,
		                  "        instance-seconds %.0f: busy %.0f, boot %.0f, idle %.0f; "
		                  "per job: idle %.1f, boot + idle %.1f\n",
		                  secs(st->instance_ms), secs(st->busy_ms), secs(st->boot_ms),
		                  secs(idle_ms(st)), per_job(idle_ms(st), st->jobs),
		                  per_job(st->instance_ms - st->busy_ms, st->jobs)) < 0;
	bad |= buf_printf(out,
	                  "        %" PRIu64 " launches (%" PRIu64
	                  " replacements), at most %" PRId64 " in the group at once, %" PRIu64
	                  " API calls (%" PRIu64 " capacity writes)\n",
	                  st->launches, st->replacements, st->peak_in_group, st->api_calls,
	                  st->writes) < 0;
	if (warm)
		bad |= warm_text(st, out) < 0;
	if (st->failed_launches || st->backoffs)
		bad |= buf_printf(out,
		                  "        %" PRIu64 " launches failed their boot; %" PRIu64
		                  " launch back-off%s\n",
		                  st->failed_launches, st->backoffs,
		                  st->backoffs == 1 ? "" : "s") < 0;
	return bad ? -EFBIG : 0;
}

int sim_render_text(const struct sim_model *m, const struct sim_pool *pools,
                    const struct sim_result *r, const struct sim_result *without, struct buf *out)
{
	char end[32];
	int bad = 0;

	fmt_dur((r->end_ms + SIM_MS_PER_S / 2) / SIM_MS_PER_S * SIM_MS_PER_S, end, sizeof(end));
	bad |= buf_printf(out, "policy: %s, seed %" PRIu64 ", %zu pool%s, %s simulated\n",
	                  sim_policy_name(m->policy), m->seed, r->npools, r->npools == 1 ? "" : "s",
	                  end) < 0;
	bad |= model_line(m, pools, r->npools, out) < 0;
	bad |= stats_text("total:  ", &r->total, m->warm_report, out) < 0;
	if (without)
		bad |= buf_printf(out,
		                  "        without the launch back-off: %" PRIu64
		                  " launches (%" PRIu64
		                  " failed their boot), wait p95 %.1f s, instance-seconds %.0f, "
		                  "%" PRIu64 " capacity writes\n",
		                  without->total.launches, without->total.failed_launches,
		                  secs(without->total.wait_p95_ms),
		                  secs(without->total.instance_ms), without->total.writes) < 0;
	for (size_t i = 0; r->npools > 1 && i < r->npools; i++) {
		char label[256];

		if (!r->pools[i].jobs && !r->pools[i].launches)
			continue; /* a pool of the config the trace does not use */
		snprintf(label, sizeof(label), "pool %s (%s, max %" PRId64 "): ", pools[i].name,
		         pools[i].resource_class[0] ? pools[i].resource_class : "-", pools[i].max);
		bad |= stats_text(label, &r->pools[i], m->warm_report, out) < 0;
	}
	return bad ? -EFBIG : 0;
}

static int json_str(struct buf *out, const char *s)
{
	int rc = buf_append_str(out, "\"");

	for (; rc == 0 && *s; s++) {
		unsigned char c = (unsigned char)*s;

		if (c == '"' || c == '\\')
			rc = buf_printf(out, "\\%c", c);
		else if (c < 0x20)
			rc = buf_printf(out, "\\u%04x", c);
		else
			rc = buf_append(out, s, 1);
	}
	return rc ? rc : buf_append_str(out, "\"");
}

static int stats_json(const struct sim_stats *st, bool warm, struct buf *out)
{
	int64_t idle = idle_ms(st);
	int rc = buf_printf(
	        out,
	        "\"jobs\":%zu,\"wait_p50_s\":%.3f,\"wait_p95_s\":%.3f,\"wait_max_s\":%.3f,"
	        "\"wait_mean_s\":%.3f,\"instance_seconds\":%.3f,\"busy_seconds\":%.3f,"
	        "\"boot_seconds\":%.3f,\"idle_instance_seconds\":%.3f,"
	        "\"idle_instance_seconds_per_job\":%.3f,\"overhead_seconds_per_job\":%.3f,"
	        "\"launches\":%" PRIu64 ",\"replacements\":%" PRIu64 ",\"peak_instances\":%" PRId64
	        ",\"api_calls\":%" PRIu64 ",\"capacity_writes\":%" PRIu64
	        ",\"failed_launches\":%" PRIu64 ",\"backoffs\":%" PRIu64,
	        st->jobs, secs(st->wait_p50_ms), secs(st->wait_p95_ms), secs(st->wait_max_ms),
	        st->wait_mean_ms / SIM_MS_PER_S, secs(st->instance_ms), secs(st->busy_ms),
	        secs(st->boot_ms), secs(idle), per_job(idle, st->jobs),
	        per_job(st->instance_ms - st->busy_ms, st->jobs), st->launches, st->replacements,
	        st->peak_in_group, st->api_calls, st->writes, st->failed_launches, st->backoffs);

	if (rc == 0 && warm)
		rc = buf_printf(out,
		                ",\"warm_pool\":%" PRId64 ",\"warm_pool_launches\":%" PRIu64
		                ",\"warm_pool_refills\":%" PRIu64
		                ",\"warm_pool_running_seconds\":%.3f"
		                ",\"warm_pool_stopped_seconds\":%.3f"
		                ",\"warm_pool_stopped_seconds_per_job\":%.3f",
		                st->warm_pool, st->warm_taken, st->warm_refills, secs(st->warm_ms),
		                secs(st->warm_stopped_ms), per_job(st->warm_stopped_ms, st->jobs));
	return rc;
}

int sim_render_json(const struct sim_model *m, const struct sim_pool *pools,
                    const struct sim_result *r, const struct sim_result *without, struct buf *out)
{
	int bad = 0;

	bad |= buf_printf(out, "{\"policy\":\"%s\",\"seed\":%" PRIu64 ",",
	                  sim_policy_name(m->policy), m->seed) < 0;
	bad |= buf_printf(out,
	                  "\"model\":{\"boot_min_s\":%.3f,\"boot_max_s\":%.3f,\"interval_s\":%.3f,"
	                  "\"claim_interval_s\":%.3f,\"idle_timeout_s\":%.3f,"
	                  "\"replace_delay_s\":%.3f,",
	                  secs(m->boot_min_ms), secs(m->boot_max_ms), secs(m->interval_ms),
	                  secs(m->claim_interval_ms), secs(m->idle_timeout_ms),
	                  secs(m->replace_delay_ms)) < 0;
	if (m->warm_report)
		bad |= buf_printf(
		               out,
		               "\"resume_min_s\":%.3f,\"resume_max_s\":%.3f,\"warm_stop_s\":%.3f,",
		               secs(m->resume_min_ms), secs(m->resume_max_ms),
		               secs(m->warm_stop_ms)) < 0;
	if (failing(m))
		bad |= buf_printf(out, "\"fail_launches_s\":[%.3f,%.3f]},", secs(m->fail_from_ms),
		                  secs(m->fail_to_ms)) < 0;
	else
		bad |= buf_append_str(out, "\"fail_launches_s\":null},") < 0;
	bad |= buf_printf(out, "\"simulated_seconds\":%.3f,", secs(r->end_ms)) < 0;
	bad |= stats_json(&r->total, m->warm_report, out) < 0;
	bad |= buf_append_str(out, ",\"pools\":[") < 0;
	for (size_t i = 0; i < r->npools; i++) {
		bad |= buf_append_str(out, i ? ",{\"name\":" : "{\"name\":") < 0;
		bad |= json_str(out, pools[i].name) < 0;
		bad |= buf_append_str(out, ",\"resource_class\":") < 0;
		bad |= json_str(out, pools[i].resource_class) < 0;
		bad |= buf_printf(out,
		                  ",\"min\":%" PRId64 ",\"max\":%" PRId64
		                  ",\"launch_failures\":%" PRId64 ",",
		                  pools[i].min, pools[i].max, pools[i].launch_failures) < 0;
		bad |= stats_json(&r->pools[i], m->warm_report, out) < 0;
		bad |= buf_append_str(out, "}") < 0;
	}
	bad |= buf_append_str(out, "]") < 0;
	if (without) {
		bad |= buf_append_str(out, ",\"without_backoff\":{") < 0;
		bad |= stats_json(&without->total, m->warm_report, out) < 0;
		bad |= buf_append_str(out, "}") < 0;
	}
	bad |= buf_append_str(out, "}\n") < 0;
	return bad ? -EFBIG : 0;
}

/* ---- the plot ----------------------------------------------------------------------------- */

#define SVG_W       960
#define SVG_PANEL_H 250
#define SVG_LEFT    56
#define SVG_RIGHT   16
#define SVG_TOP     44
#define SVG_BOTTOM  36
#define SVG_COLS    (SVG_W - SVG_LEFT - SVG_RIGHT)

static const struct {
	const char *name, *color, *dash;
	double width;
} svg_lines[] = {
        {"queued jobs", "#d62728", "", 1.6},      {"desired", "#1f77b4", "5,3", 1.4},
        {"instances up", "#2ca02c", "", 1.6},     {"busy", "#7f7f7f", "2,2", 1.0},
        {"warm pool", "#ff7f0e", "6,2,2,2", 1.2}, /* drawn with m->warm_report only */
};

static int32_t sample_val(const struct sim_sample *s, size_t k)
{
	switch (k) {
	case 0:
		return s->queued;
	case 1:
		return s->desired;
	case 2:
		return s->up;
	case 3:
		return s->busy;
	default:
		return s->warm;
	}
}

static int64_t nice_step(int64_t span, int64_t target_ticks)
{
	static const int64_t steps[] = {1,   2,   5,    10,   20,   25,    50,    100,   200,
	                                250, 500, 1000, 2000, 5000, 10000, 20000, 50000, 100000};

	for (size_t i = 0; i < ARRAY_SIZE(steps); i++)
		if (span / steps[i] <= target_ticks)
			return steps[i];
	return span / target_ticks + 1;
}

/* One panel: per pixel column, the highest value each series reached in it (a step plot). */
static int svg_panel(const struct sim_series *ser, int64_t end_ms, const char *label, int y0,
                     size_t nlines, struct buf *out)
{
	int32_t col[ARRAY_SIZE(svg_lines)][SVG_COLS];
	int64_t ymax = 1, ystep, tstep_min, span_min;
	int ph = SVG_PANEL_H - SVG_TOP - SVG_BOTTOM, rc = 0;
	double yscale;

	if (end_ms <= 0)
		end_ms = 1;
	for (size_t k = 0; k < nlines; k++)
		for (size_t c = 0; c < SVG_COLS; c++)
			col[k][c] = -1;
	for (size_t i = 0; i < ser->n; i++) {
		int64_t t1 = i + 1 < ser->n ? ser->s[i + 1].t_ms : end_ms;
		size_t c0 = (size_t)(ser->s[i].t_ms * (SVG_COLS - 1) / end_ms);
		size_t c1 = (size_t)(t1 * (SVG_COLS - 1) / end_ms);

		if (c1 > c0 && t1 * (SVG_COLS - 1) % end_ms == 0)
			c1--; /* the next sample owns the column it starts in */
		for (size_t c = c0; c <= c1 && c < SVG_COLS; c++)
			for (size_t k = 0; k < nlines; k++)
				if (sample_val(&ser->s[i], k) > col[k][c])
					col[k][c] = sample_val(&ser->s[i], k);
	}
	for (size_t k = 0; k < nlines; k++)
		for (size_t c = 0; c < SVG_COLS; c++)
			if (col[k][c] > ymax)
				ymax = col[k][c];
	ystep = nice_step(ymax, 5);
	ymax = (ymax + ystep - 1) / ystep * ystep;
	yscale = (double)ph / (double)ymax;

	buf_printf(out, "<g transform=\"translate(0,%d)\">\n", y0);
	buf_printf(out, "<text x=\"%d\" y=\"%d\" font-size=\"13\" font-weight=\"bold\">", SVG_LEFT,
	           SVG_TOP - 22);
	for (const char *p = label; *p; p++) {
		if (*p == '<')
			buf_append_str(out, "&lt;");
		else if (*p == '&')
			buf_append_str(out, "&amp;");
		else if (*p == '>')
			buf_append_str(out, "&gt;");
		else
			buf_append(out, p, 1);
	}
	buf_append_str(out, "</text>\n");
	/* Axes and grid. */
	for (int64_t v = 0; v <= ymax; v += ystep) {
		double y = SVG_TOP + ph - (double)v * yscale;

		buf_printf(out,
		           "<line x1=\"%d\" y1=\"%.1f\" x2=\"%d\" y2=\"%.1f\" stroke=\"#ddd\"/>"
		           "<text x=\"%d\" y=\"%.1f\" font-size=\"11\" text-anchor=\"end\">%" PRId64
		           "</text>\n",
		           SVG_LEFT, y, SVG_LEFT + SVG_COLS, y, SVG_LEFT - 6, y + 4, v);
	}
	span_min = (end_ms + 59999) / 60000;
	tstep_min = nice_step(span_min, 10);
	for (int64_t mnt = 0; mnt * 60000 <= end_ms; mnt += tstep_min) {
		double x = SVG_LEFT + (double)(mnt * 60000) * (SVG_COLS - 1) / (double)end_ms;

		buf_printf(
		        out,
		        "<line x1=\"%.1f\" y1=\"%d\" x2=\"%.1f\" y2=\"%d\" stroke=\"#999\"/>"
		        "<text x=\"%.1f\" y=\"%d\" font-size=\"11\" text-anchor=\"middle\">%" PRId64
		        "</text>\n",
		        x, SVG_TOP + ph, x, SVG_TOP + ph + 4, x, SVG_TOP + ph + 16, mnt);
	}
	buf_printf(out,
	           "<text x=\"%d\" y=\"%d\" font-size=\"11\" text-anchor=\"end\">minutes</text>\n"
	           "<rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" fill=\"none\" "
	           "stroke=\"#333\"/>\n",
	           SVG_LEFT + SVG_COLS, SVG_TOP + ph + 30, SVG_LEFT, SVG_TOP, SVG_COLS, ph);
	for (size_t k = 0; k < nlines; k++) {
		bool pen = false;
		int32_t prev = -1;

		buf_printf(out,
		           "<path fill=\"none\" stroke=\"%s\" stroke-width=\"%.1f\"%s%s%s d=\"",
		           svg_lines[k].color, svg_lines[k].width,
		           svg_lines[k].dash[0] ? " stroke-dasharray=\"" : "", svg_lines[k].dash,
		           svg_lines[k].dash[0] ? "\"" : "");
		for (size_t c = 0; c < SVG_COLS; c++) {
			int32_t v = col[k][c];
			double y = SVG_TOP + ph - (double)v * yscale;

			if (v < 0) {
				if (pen)
					buf_printf(out, "H%zu", SVG_LEFT + c);
				pen = false;
			} else if (!pen) {
				buf_printf(out, "M%zu %.1f", SVG_LEFT + c, y);
				pen = true;
			} else if (v != prev) {
				buf_printf(out, "H%zuV%.1f", SVG_LEFT + c, y);
			}
			prev = v;
		}
		if (pen)
			buf_printf(out, "H%d", SVG_LEFT + SVG_COLS);
		buf_append_str(out, "\"/>\n");
	}
	/* The legend, top right. */
	for (size_t k = 0; k < nlines; k++) {
		int x = SVG_LEFT + SVG_COLS - ((int)nlines * 118 - 2) + (int)k * 118;

		buf_printf(out,
		           "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"%s\" "
		           "stroke-width=\"2\"%s%s%s/><text x=\"%d\" y=\"%d\" "
		           "font-size=\"11\">%s</text>\n",
		           x, SVG_TOP - 8, x + 22, SVG_TOP - 8, svg_lines[k].color,
		           svg_lines[k].dash[0] ? " stroke-dasharray=\"" : "", svg_lines[k].dash,
		           svg_lines[k].dash[0] ? "\"" : "", x + 26, SVG_TOP - 4,
		           svg_lines[k].name);
	}
	rc = buf_append_str(out, "</g>\n");
	return rc;
}

int sim_render_svg(const struct sim_model *m, const struct sim_pool *pools,
                   const struct sim_result *r, const char *title, struct buf *out)
{
	int h, panels = 0, y = 0;

	if (!r->series)
		return -EINVAL;
	/* A panel per pool the trace used (a config may list many more). */
	for (size_t i = 0; i < r->npools; i++)
		panels += r->pools[i].jobs || r->pools[i].launches;
	h = panels * SVG_PANEL_H + 30;
	buf_printf(out,
	           "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" "
	           "viewBox=\"0 0 %d %d\" font-family=\"sans-serif\">\n"
	           "<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n",
	           SVG_W, h, SVG_W, h);
	for (size_t i = 0; i < r->npools; i++) {
		char label[512];
		const struct sim_stats *st = &r->pools[i];

		if (!st->jobs && !st->launches)
			continue;
		snprintf(label, sizeof(label),
		         "%s%s%s: pool %s, max %" PRId64 ": %zu jobs, wait p95 %.0f s, %.1f idle "
		         "instance-s per job",
		         title && title[0] ? title : "", title && title[0] ? ": " : "",
		         sim_policy_name(m->policy), pools[i].name, pools[i].max, st->jobs,
		         secs(st->wait_p95_ms), per_job(idle_ms(st), st->jobs));
		if (m->warm_report)
			snprintf(label + strlen(label), sizeof(label) - strlen(label),
			         ", warm pool %" PRId64 ": %.1f stopped instance-s per job",
			         pools[i].warm_pool, per_job(st->warm_stopped_ms, st->jobs));
		svg_panel(&r->series[i], r->end_ms, label, y,
		          ARRAY_SIZE(svg_lines) - (m->warm_report ? 0 : 1), out);
		y += SVG_PANEL_H;
	}
	return buf_append_str(out, "</svg>\n");
}
