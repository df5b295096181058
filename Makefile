# runnerd — build, test, install. CC/CFLAGS/CPPFLAGS/LDFLAGS/DESTDIR/PREFIX are honoured.

VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo 0.0.0)
PREFIX ?= /usr/local
SBINDIR ?= $(PREFIX)/sbin
BINDIR ?= $(PREFIX)/bin
MANDIR ?= $(PREFIX)/share/man
SYSCONFDIR ?= /etc
PYTHON ?= /usr/bin/python3
PKG_CONFIG ?= pkg-config
# Debian's name for this machine's architecture (the packages' default, `make deb`).
NATIVE_ARCH := $(shell dpkg --print-architecture 2>/dev/null || echo amd64)

CC ?= gcc
CFLAGS ?= -O2 -g
WARN := -std=c11 -Wall -Wextra -Wformat=2 -Werror -Wshadow -Wno-unused-parameter
PKGS := libcurl libcjson libsystemd inih libcrypto yaml-0.1 zlib
DEP_CFLAGS = $(shell $(PKG_CONFIG) --cflags $(PKGS) 2>/dev/null)
DEP_LIBS = $(shell $(PKG_CONFIG) --libs $(PKGS) 2>/dev/null) -pthread
ALL_CPPFLAGS = -D_GNU_SOURCE -DRUNNERD_VERSION='"$(VERSION)"' -Ilib -Iagent -Isupervisor -Iscaler $(CPPFLAGS)
ALL_CFLAGS = $(WARN) $(DEP_CFLAGS) $(CFLAGS)

B ?= build
O := $(B)/obj

# Files named *_main.c hold a main(); everything else is library code of its directory.
LIB_SRCS := $(wildcard lib/*.c)
AGENT_SRCS := $(filter-out %_main.c,$(wildcard agent/*.c))
SUP_SRCS := $(filter-out %_main.c,$(wildcard supervisor/*.c))
SCALER_SRCS := $(filter-out %_main.c,$(wildcard scaler/*.c))
MOD_OBJS := $(patsubst %.c,$(O)/%.o,$(LIB_SRCS) $(AGENT_SRCS) $(SUP_SRCS) $(SCALER_SRCS))
LIBRUNNERD := $(B)/librunnerd.a

BINS := $(B)/runnerd $(B)/runnerctl $(B)/runner-scaler
UNIT_SRCS := $(wildcard tests/unit/test_*.c)
UNIT_BINS := $(patsubst tests/unit/%.c,$(B)/tests/%,$(UNIT_SRCS))
TOOL_SRCS := $(wildcard tests/tools/*.c)
TOOL_BINS := $(patsubst tests/tools/%.c,$(B)/tests/%,$(TOOL_SRCS))

.PHONY: all check unit integration demo deps install format lint clean tools
all: $(BINS)

$(O)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CPPFLAGS) $(ALL_CFLAGS) -MMD -MP -c -o $@ $<

$(LIBRUNNERD): $(MOD_OBJS)
	@mkdir -p $(dir $@)
	rm -f $@
	$(AR) rcs $@ $^

$(B)/runnerd: $(O)/supervisor/runnerd_main.o $(LIBRUNNERD)
	$(CC) $(ALL_CFLAGS) $(LDFLAGS) -o $@ $^ $(DEP_LIBS)
$(B)/runnerctl: $(O)/supervisor/runnerctl_main.o $(LIBRUNNERD)
	$(CC) $(ALL_CFLAGS) $(LDFLAGS) -o $@ $^ $(DEP_LIBS)
$(B)/runner-scaler: $(O)/scaler/scaler_main.o $(LIBRUNNERD)
	$(CC) $(ALL_CFLAGS) $(LDFLAGS) -o $@ $^ $(DEP_LIBS)

$(B)/tests/%: $(O)/tests/unit/%.o $(LIBRUNNERD)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) $(LDFLAGS) -o $@ $^ $(DEP_LIBS) -lcmocka
$(B)/tests/%: $(O)/tests/tools/%.o $(LIBRUNNERD)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) $(LDFLAGS) -o $@ $^ $(DEP_LIBS)

tools: $(TOOL_BINS)

deps:
	@scripts/install-deps

# The README's test command: installs what is missing, builds, runs every suite.
# Two lines at once after the builds: the qemu boot (e2e) then valgrind, beside the integration
# suite then its ASan run; the guests and the suites' waits share the cores (one after another
# it took 23 minutes on 2 cores). Each suite's output comes whole when it ends (--output-sync).
check: deps
	$(MAKE) -j2 all tools $(UNIT_BINS) fuzz-build asan-build
	$(MAKE) unit fuzz-replay
	$(MAKE) -j2 --output-sync=target check-boot check-suites

.PHONY: check-boot check-suites
check-boot: e2e
	$(MAKE) --no-print-directory memcheck
check-suites: integration
	$(MAKE) --no-print-directory asan

unit: $(UNIT_BINS)
	@scripts/run-unit $(UNIT_BINS)

# The packaging tests and the e2e boot share one `make debs-all` (a phony target runs once per
# make): the native packages, and the arm64 ones whose binaries test_packaging.py lints and
# starts under qemu user-mode emulation.
# The integration tests mostly wait (on fakes, intervals, leases): PYTEST_JOBS processes run
# them, a test file each at a time (its module fixtures built once); 1 runs them in one.
PYTEST_JOBS ?= 4
PYTEST_PAR = $(if $(filter-out 1,$(PYTEST_JOBS)),-n $(PYTEST_JOBS) --dist loadfile)
integration: all tools debs-all
	RUNNERD_BUILD=$(abspath $(B)) RUNNERD_DEBS=$(abspath $(B)) $(PYTHON) -m pytest -q -rs \
		-p no:cacheprovider $(PYTEST_PAR) --durations=10 tests/integration

# The real boot (tests/e2e): the runnerd .deb installed by cloud-init user-data in qemu guests
# against the fake cloud. Needs root (skipped otherwise); the base image is cached outside the tree.
.PHONY: e2e e2e-arm64
e2e: deb-$(NATIVE_ARCH)
	RUNNERD_BUILD=$(abspath $(B)) $(PYTHON) -m pytest -q -rs -p no:cacheprovider tests/e2e

# The arm64 package booted the same way under qemu-system-aarch64 (TCG, -machine virt, Debian's
# arm64 cloud kernel booted directly): the success scenario of `make e2e`, with its figures
# (image build, boot to power-off, qemu's CPU time). Not part of `make check`: under TCG on
# 2 cores it takes minutes (README: what runs where).
e2e-arm64: deps
	$(MAKE) deb-arm64
	RUNNERD_BUILD=$(abspath $(B)) RUNNERD_E2E_ARCH=arm64 $(PYTHON) -m pytest -q -rs \
		-p no:cacheprovider tests/e2e/test_boot.py

demo: deps
	$(MAKE) all tools
	RUNNERD_BUILD=$(abspath $(B)) $(PYTHON) tests/demo.py

# The soak (not part of check): two runner-scalers contending for the lease through dynalite
# and runnerd with one long job, for SOAK_MINUTES under injected faults (tests/soak.py). One
# line per minute; fails on RSS growth after the warm-up or a minute without lease renewals
# while no lease fault was active.
SOAK_MINUTES ?= 30
.PHONY: soak
soak: deps
	$(MAKE) all tools
	RUNNERD_BUILD=$(abspath $(B)) SOAK_MINUTES=$(SOAK_MINUTES) $(PYTHON) tests/soak.py

install: all
	install -d $(DESTDIR)$(SBINDIR) $(DESTDIR)$(BINDIR)
	install -m 0755 $(B)/runnerd $(B)/runner-scaler $(DESTDIR)$(SBINDIR)/
	install -m 0755 $(B)/runnerctl $(DESTDIR)$(BINDIR)/
	if ls man/*.[0-9] >/dev/null 2>&1; then \
		for f in man/*.[0-9]; do s=$${f##*.}; install -d $(DESTDIR)$(MANDIR)/man$$s; \
		install -m 0644 $$f $(DESTDIR)$(MANDIR)/man$$s/; done; fi

# Debian packages from the working tree (packaging/README.md): $(B)/runnerd_VERSION_ARCH.deb and
# $(B)/runner-scaler_VERSION_ARCH.deb. ARCH is this machine's (dpkg --print-architecture) unless
# given: `make deb ARCH=arm64` cross-builds with Debian's cross toolchain and the arm64 -dev
# packages (dpkg-buildpackage -aarm64). `make debs-all` builds both architectures.
# Only from the command line: an ARCH in the environment (x86_64 from a kernel build's shell)
# is not a Debian architecture.
ifneq ($(origin ARCH),command line)
ARCH := $(NATIVE_ARCH)
endif
DEB_ARCHS := amd64 arm64
.PHONY: deb debs-all $(addprefix deb-,$(DEB_ARCHS)) verify-packaging
deb:
	packaging/build-deb $(B) $(ARCH)
debs-all: $(addprefix deb-,$(DEB_ARCHS))
$(addprefix deb-,$(DEB_ARCHS)): deb-%:
	packaging/build-deb $(B) $*

# The packaging checks alone: lintian, systemd-analyze verify, installs into a Debian chroot
# (root), the AWS and Packer files. `make check` runs the same tests in its integration suite.
verify-packaging: all debs-all
	RUNNERD_BUILD=$(abspath $(B)) RUNNERD_DEBS=$(abspath $(B)) $(PYTHON) -m pytest -q \
		-p no:cacheprovider tests/integration/test_packaging.py \
		tests/integration/test_packaging_files.py

C_FILES = $(shell git ls-files '*.c' '*.h' 2>/dev/null)
format:
	clang-format -i $(C_FILES)
lint:
	clang-format --dry-run --Werror $(C_FILES)
	cppcheck --quiet --error-exitcode=1 --enable=warning,portability --inline-suppr \
		--suppress=missingIncludeSystem -D_GNU_SOURCE -Ilib $(C_FILES)

clean:
	rm -rf $(B)

-include $(shell find $(O) -name '*.d' 2>/dev/null)

# ---- Fuzzing (tests/fuzz): libFuzzer harnesses built by clang with ASan and UBSan, linked
# against a copy of the library instrumented for coverage ($(B)/fuzz/lib). `make fuzz` fuzzes
# each harness for FUZZ_SECONDS and prints execs per harness; `make fuzz-replay` (in check)
# runs every corpus input once. tests/fuzz/seed_corpus.py writes the seeds.
FUZZ_CC ?= clang
FUZZ_SECONDS ?= 60
FUZZ_SAN := -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer
FZ := $(B)/fuzz
FUZZ_NAMES := $(patsubst tests/fuzz/fuzz_%.c,%,$(wildcard tests/fuzz/fuzz_*.c))
FUZZ_BINS := $(addprefix $(FZ)/,$(FUZZ_NAMES))

.PHONY: fuzz fuzz-build fuzz-replay FORCE
FORCE:
$(FZ)/lib/librunnerd.a: FORCE
	@$(MAKE) --no-print-directory B=$(FZ)/lib CC=$(FUZZ_CC) \
		CFLAGS="-O1 -g $(FUZZ_SAN) -fsanitize=fuzzer-no-link" $@
$(FZ)/%: tests/fuzz/fuzz_%.c tests/fuzz/fuzz.h $(FZ)/lib/librunnerd.a
	$(FUZZ_CC) $(ALL_CPPFLAGS) $(WARN) $(DEP_CFLAGS) -O1 -g $(FUZZ_SAN) -fsanitize=fuzzer \
		-o $@ $< $(FZ)/lib/librunnerd.a $(DEP_LIBS)
fuzz-build: $(FUZZ_BINS)
fuzz: fuzz-build
	@scripts/run-fuzz fuzz $(FZ) tests/fuzz/corpus $(FUZZ_SECONDS) $(FUZZ_NAMES)
fuzz-replay: fuzz-build
	@scripts/run-fuzz replay $(FZ) tests/fuzz/corpus $(FUZZ_NAMES)

# ---- Sanitizers: the unit and integration suites again on a separate ASan+UBSan tree
# (ASAN_B, default $(B)-asan), and the runnerd integration suite with runnerd under valgrind
# memcheck. scripts/run-sanitized sends every report to a log directory and fails on any.
# Left out under ASan: the fake's contract tests (Python against boto3, no C), the template's
# spec and IAM checks (no C), the packaging
# tests (they check the .debs built from $(B)), and test_lasting (its two minutes of wall time
# run once, in the plain integration suite; `make soak` is the long run).
ASAN_B ?= $(B)-asan
SAN_FLAGS := -O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all
ASAN_MAKE = $(MAKE) --no-print-directory B=$(ASAN_B) CFLAGS="$(SAN_FLAGS)" LDFLAGS="$(SAN_FLAGS)"
ASAN_UNIT_BINS = $(patsubst $(B)/%,$(ASAN_B)/%,$(UNIT_BINS))
ASAN_SKIP := --ignore=tests/integration/test_fake_contract.py \
	--ignore=tests/integration/test_fake_warm_contract.py \
	--ignore-glob='tests/integration/test_packaging*' \
	--ignore=tests/integration/test_lasting.py \
	--ignore=tests/integration/test_cfn_resource_spec.py \
	--ignore=tests/integration/test_iam_actions.py

.PHONY: asan asan-build memcheck
asan-build:
	+$(ASAN_MAKE) all tools $(ASAN_UNIT_BINS)
asan: asan-build
	@scripts/run-sanitized asan $(ASAN_B)/sanitizer-logs/unit $(ASAN_B) -- \
		scripts/run-unit $(ASAN_UNIT_BINS)
	@scripts/run-sanitized asan $(ASAN_B)/sanitizer-logs/integration $(ASAN_B) -- \
		env RUNNERD_BUILD=$(abspath $(ASAN_B)) $(PYTHON) -m pytest -q -p no:cacheprovider \
		$(PYTEST_PAR) $(ASAN_SKIP) tests/integration
memcheck: all tools
	@scripts/run-sanitized memcheck $(B)/memcheck-logs $(B) -- \
		env RUNNERD_BUILD=$(abspath $(B)) $(PYTHON) -m pytest -q -p no:cacheprovider \
		tests/integration/test_runnerd.py tests/integration/test_runnerd_warm.py
clean: clean-asan
.PHONY: clean-asan
clean-asan:
	rm -rf $(ASAN_B)
