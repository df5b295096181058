/* runner-scaler: queue depth to ASG capacity. The full program arrives with its issue; this is the entry point. */
#include <stdio.h>
#include <string.h>

int main(int argc, char **argv)
{
	if (argc > 1 && strcmp(argv[1], "--version") == 0) {
		printf("runner-scaler %s\n", RUNNERD_VERSION);
		return 0;
	}
	if (argc > 1 && strcmp(argv[1], "--help") == 0) {
		printf("usage: runner-scaler [-c FILE] [--once] [--dry-run] | check-config | simulate\n");
		return 0;
	}
	fprintf(stderr, "usage: runner-scaler [-c FILE] [--once] [--dry-run] | check-config | simulate\n");
	return 64;
}
