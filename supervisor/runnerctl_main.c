/* runnerctl: runnerd's control client. The full program arrives with its issue; this is the entry point. */
#include <stdio.h>
#include <string.h>

int main(int argc, char **argv)
{
	if (argc > 1 && strcmp(argv[1], "--version") == 0) {
		printf("runnerctl %s\n", RUNNERD_VERSION);
		return 0;
	}
	if (argc > 1 && strcmp(argv[1], "--help") == 0) {
		printf("usage: runnerctl [-s SOCKET] status [--json] | drain\n");
		return 0;
	}
	fprintf(stderr, "usage: runnerctl [-s SOCKET] status [--json] | drain\n");
	return 64;
}
