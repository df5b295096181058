/* runnerd.conf through the real schema and cross-key checks (runnerd_config_load_string).
 * Property: an accepted config printed by cfg_print loads again, and prints the same text. */
#include <errno.h>
#include <stdlib.h>

#include "fuzz.h"
#include "runnerd_config.h"

static char *print_config(const struct runnerd_config *c)
{
	char *text = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);

	FUZZ_CHECK(f != NULL);
	FUZZ_CHECK(cfg_print(c->cfg, f) == 0);
	FUZZ_CHECK(fclose(f) == 0);
	return text;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	/* The only override of this schema: keep runs independent of the caller's environment. */
	unsetenv("CIRCLECI_RUNNER_API_URL");
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct runnerd_config c, again;
	char *text = fuzz_cstr(data, size), *errors = NULL, *p1 = NULL, *p2 = NULL;
	int r;

	r = runnerd_config_load_string(text, "fuzz.conf", &c, &errors);
	if (r == -EINVAL) {
		FUZZ_CHECK(errors != NULL && errors[0] != '\0');
		goto out;
	}
	FUZZ_CHECK(r == 0);
	FUZZ_CHECK(c.agent && c.token && c.packages && c.lifecycle && c.control);
	p1 = print_config(&c);
	free(errors);
	errors = NULL;
	r = runnerd_config_load_string(p1, "printed.conf", &again, &errors);
	if (r != 0)
		fprintf(stderr, "reload of printed config failed (%d):\n%s\n--- printed ---\n%s", r,
		        errors ? errors : "", p1);
	FUZZ_CHECK(r == 0);
	p2 = print_config(&again);
	FUZZ_CHECK(strcmp(p1, p2) == 0);
	runnerd_config_free(&again);
	runnerd_config_free(&c);
out:
	free(p1);
	free(p2);
	free(errors);
	free(text);
	return 0;
}
