/* The agent's YAML config, rendered from random settings (valid UTF-8, any code points) and
 * read back with libyaml.
 * Properties: the document parses; it holds exactly the keys runnerd writes (api, runner, and
 * logging for machine runner 3; no extra or duplicate keys); every string comes back as the
 * same value in a double-quoted scalar; command_prefix is sudo -niHu USER --. */
#include <errno.h>
#include <yaml.h>

#include "agent.h"
#include "fuzz.h"

struct expect {
	const char *key;
	const char *value; /* NULL: the key must be absent */
	bool plain;        /* a plain scalar (true/false) rather than a quoted string */
};

static yaml_node_t *node(yaml_document_t *doc, int id)
{
	yaml_node_t *n = yaml_document_get_node(doc, id);

	FUZZ_CHECK(n != NULL);
	return n;
}

static const char *scalar(yaml_node_t *n)
{
	FUZZ_CHECK(n->type == YAML_SCALAR_NODE);
	/* Values never hold NUL, so the scalar's length must be its C string length. */
	FUZZ_CHECK(strlen((const char *)n->data.scalar.value) == n->data.scalar.length);
	return (const char *)n->data.scalar.value;
}

/* The mapping node must hold exactly the keys of exp whose value is set, once each, with those
 * values; sub is for the one key whose value is not a scalar (or NULL). */
static void check_map2(yaml_document_t *doc, yaml_node_t *map, const struct expect *exp, size_t n,
                       const char *sub_key, yaml_node_t **sub, const char *sub_key2,
                       yaml_node_t **sub2)
{
	size_t want = 0, seen = 0;
	bool found[16] = {false};

	FUZZ_CHECK(map->type == YAML_MAPPING_NODE && n <= 16);
	for (size_t i = 0; i < n; i++)
		want += exp[i].value != NULL;
	if (sub_key)
		want++;
	if (sub_key2)
		want++;
	for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top;
	     p++) {
		const char *k = scalar(node(doc, p->key));
		yaml_node_t *v = node(doc, p->value);
		bool known = false;

		seen++;
		if (sub_key && strcmp(k, sub_key) == 0) {
			FUZZ_CHECK(*sub == NULL);
			*sub = v;
			continue;
		}
		if (sub_key2 && strcmp(k, sub_key2) == 0) {
			FUZZ_CHECK(*sub2 == NULL);
			*sub2 = v;
			continue;
		}
		for (size_t i = 0; i < n; i++) {
			if (strcmp(k, exp[i].key) != 0)
				continue;
			FUZZ_CHECK(exp[i].value != NULL && !found[i]);
			found[i] = known = true;
			FUZZ_CHECK(strcmp(scalar(v), exp[i].value) == 0);
			FUZZ_CHECK(v->data.scalar.style ==
			           (exp[i].plain ? YAML_PLAIN_SCALAR_STYLE
			                         : YAML_DOUBLE_QUOTED_SCALAR_STYLE));
		}
		FUZZ_CHECK(known);
	}
	FUZZ_CHECK(seen == want);
}

static void check_map(yaml_document_t *doc, yaml_node_t *map, const struct expect *exp, size_t n,
                      const char *sub_key, yaml_node_t **sub)
{
	check_map2(doc, map, exp, n, sub_key, sub, NULL, NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fdp f = {data, size};
	struct agent_settings s;
	char *token, *api_url, *name, *user, *wd, *mode, *tad, *ssh, *level;
	char tadx[64];
	char idle[64], maxrun[64], wdx[4200];
	yaml_parser_t parser;
	yaml_document_t doc;
	yaml_node_t *root, *api = NULL, *runner = NULL, *logging = NULL, *prefix = NULL,
	                   *sshn = NULL;
	struct buf out;
	int r;

	memset(&s, 0, sizeof(s));
	s.flavour = fdp_bool(&f) ? AGENT_LAUNCH_AGENT : AGENT_CIRCLECI_RUNNER;
	s.cleanup_working_directory = fdp_bool(&f);
	s.idle_timeout_ms = fdp_u8(&f) & 1 ? 0 : fdp_u64(&f);
	s.max_run_time_ms = fdp_u64(&f);
	token = fdp_utf8(&f, 48);
	api_url = fdp_utf8(&f, 32);
	name = fdp_utf8(&f, 32);
	user = fdp_utf8(&f, 16);
	wd = fdp_utf8(&f, 32);
	mode = fdp_utf8(&f, 16);
	tad = fdp_utf8(&f, 32);
	ssh = fdp_utf8(&f, 24);
	level = fdp_utf8(&f, 8);
	/* Absolute or not, as the fuzzer likes: a relative one must be refused. */
	snprintf(tadx, sizeof(tadx), "%s%s", fdp_bool(&f) ? "/" : "", tad);
	s.task_agent_directory = tadx;
	s.ssh_advertise_addr = ssh;
	s.log_level = level;
	s.api_url = api_url;
	s.name = name;
	s.user = user;
	s.working_directory = wd;
	s.mode = mode;

	buf_init(&out, 0);
	r = agent_render_config(&s, token, &out);
	if (!token[0] || !user[0] || !wd[0] ||
	    (s.flavour == AGENT_CIRCLECI_RUNNER && tadx[0] != '/')) {
		FUZZ_CHECK(r == -EINVAL && out.len == 0);
		goto out;
	}
	FUZZ_CHECK(r == 0);
	FUZZ_CHECK(agent_working_directory(&s, wdx, sizeof(wdx)) == 0);
	agent_format_go_duration(s.idle_timeout_ms, idle, sizeof(idle));
	agent_format_go_duration(s.max_run_time_ms, maxrun, sizeof(maxrun));

	FUZZ_CHECK(yaml_parser_initialize(&parser));
	yaml_parser_set_input_string(&parser, (const unsigned char *)out.data, out.len);
	if (!yaml_parser_load(&parser, &doc)) {
		fprintf(stderr, "libyaml: %s at line %zu\n--- rendered ---\n%s", parser.problem,
		        parser.problem_mark.line + 1, out.data);
		FUZZ_CHECK(!"the rendered YAML parses");
	}
	root = yaml_document_get_root_node(&doc);
	FUZZ_CHECK(root != NULL && root->type == YAML_MAPPING_NODE);
	{
		/* Top level: three mappings, logging for machine runner 3 or a log level. */
		size_t want = s.flavour == AGENT_CIRCLECI_RUNNER || level[0] ? 3 : 2, seen = 0;

		for (yaml_node_pair_t *p = root->data.mapping.pairs.start;
		     p < root->data.mapping.pairs.top; p++) {
			const char *k = scalar(node(&doc, p->key));
			yaml_node_t **slot = !strcmp(k, "api")                    ? &api
			                     : !strcmp(k, "runner")               ? &runner
			                     : !strcmp(k, "logging") && want == 3 ? &logging
			                                                          : NULL;

			FUZZ_CHECK(slot != NULL && *slot == NULL);
			*slot = node(&doc, p->value);
			seen++;
		}
		FUZZ_CHECK(seen == want);
	}
	{
		const struct expect e[] = {
		        {"auth_token", token, false},
		        {"url", api_url[0] ? api_url : NULL, false},
		};

		check_map(&doc, api, e, 2, NULL, NULL);
	}
	{
		const struct expect e[] = {
		        {"name", name, false},
		        {"mode", mode, false},
		        {"idle_timeout", s.idle_timeout_ms ? idle : NULL, false},
		        {"max_run_time", maxrun, false},
		        {"working_directory", wdx, false},
		        {"cleanup_working_directory",
		         s.cleanup_working_directory ? "true" : "false", true},
		        {"task_agent_directory", s.flavour == AGENT_CIRCLECI_RUNNER ? tadx : NULL,
		         false},
		        {"disable_auto_update", s.flavour == AGENT_LAUNCH_AGENT ? "true" : NULL,
		         true},
		};
		static const char *const argv[] = {"sudo", "-niHu", NULL, "--"};
		size_t i = 0;

		check_map2(&doc, runner, e, 8, "command_prefix", &prefix, ssh[0] ? "ssh" : NULL,
		           &sshn);
		FUZZ_CHECK(prefix != NULL && prefix->type == YAML_SEQUENCE_NODE);
		for (yaml_node_item_t *it = prefix->data.sequence.items.start;
		     it < prefix->data.sequence.items.top; it++, i++) {
			yaml_node_t *v = node(&doc, *it);

			FUZZ_CHECK(i < 4);
			FUZZ_CHECK(strcmp(scalar(v), argv[i] ? argv[i] : user) == 0);
			FUZZ_CHECK(v->data.scalar.style == YAML_DOUBLE_QUOTED_SCALAR_STYLE);
		}
		FUZZ_CHECK(i == 4);
	}
	if (ssh[0]) {
		const struct expect e[] = {{"advertise_addr", ssh, false}};

		FUZZ_CHECK(sshn != NULL);
		check_map(&doc, sshn, e, 1, NULL, NULL);
	}
	if (logging) {
		bool mr3 = s.flavour == AGENT_CIRCLECI_RUNNER;
		const struct expect e[] = {{"file", mr3 ? "-" : NULL, false},
		                           {"format", mr3 ? "text" : NULL, false},
		                           {"level", level[0] ? level : NULL, false}};

		check_map(&doc, logging, e, 3, NULL, NULL);
	}
	/* One document only. */
	{
		yaml_document_t next;

		FUZZ_CHECK(yaml_parser_load(&parser, &next));
		FUZZ_CHECK(yaml_document_get_root_node(&next) == NULL);
		yaml_document_delete(&next);
	}
	yaml_document_delete(&doc);
	yaml_parser_delete(&parser);
out:
	buf_wipe(&out);
	free(token);
	free(api_url);
	free(name);
	free(user);
	free(wd);
	free(mode);
	free(tad);
	free(ssh);
	free(level);
	return 0;
}
