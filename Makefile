# runnerd — build, test, install. CC/CFLAGS/CPPFLAGS/LDFLAGS/DESTDIR/PREFIX are honoured.

VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo 0.0.0)
PREFIX ?= /usr/local
SBINDIR ?= $(PREFIX)/sbin
BINDIR ?= $(PREFIX)/bin
MANDIR ?= $(PREFIX)/share/man
SYSCONFDIR ?= /etc
PYTHON ?= /usr/bin/python3
PKG_CONFIG ?= pkg-config

CC ?= gcc
CFLAGS ?= -O2 -g
WARN := -std=c11 -Wall -Wextra -Wformat=2 -Werror -Wshadow -Wno-unused-parameter
PKGS := libcurl libcjson libsystemd inih libcrypto yaml-0.1
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
check: deps
	$(MAKE) all tools $(UNIT_BINS)
	$(MAKE) unit integration

unit: $(UNIT_BINS)
	@scripts/run-unit $(UNIT_BINS)

integration: all tools
	RUNNERD_BUILD=$(abspath $(B)) $(PYTHON) -m pytest -q -p no:cacheprovider tests/integration

demo: deps
	$(MAKE) all tools
	RUNNERD_BUILD=$(abspath $(B)) $(PYTHON) tests/demo.py

install: all
	install -d $(DESTDIR)$(SBINDIR) $(DESTDIR)$(BINDIR)
	install -m 0755 $(B)/runnerd $(B)/runner-scaler $(DESTDIR)$(SBINDIR)/
	install -m 0755 $(B)/runnerctl $(DESTDIR)$(BINDIR)/
	if ls man/*.[0-9] >/dev/null 2>&1; then \
		for f in man/*.[0-9]; do s=$${f##*.}; install -d $(DESTDIR)$(MANDIR)/man$$s; \
		install -m 0644 $$f $(DESTDIR)$(MANDIR)/man$$s/; done; fi

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
