# hookwork build. `make` installs missing Debian packages, then builds ./hookwork.
# llhttp's C sources come from Debian's node-llhttp at build time (never copied
# into the repo); see third_party/README.md.

CC      ?= cc
PKGS    := clang liblua5.4-dev libuv1-dev libcurl4-openssl-dev \
           libsqlite3-dev node-llhttp python3 curl \
           lua-check lintian binutils \
           chromium chromium-driver python3-selenium \
           libssl-dev zlib1g-dev
# PostgreSQL server for the tests of --store postgres (tests/e2e/pgserver.py);
# nginx to check the README's load-balancer config (nginx -t); libpq for
# the PostgreSQL backend (core/store_pg.c).
PKGS    += postgresql nginx-light libpq-dev
LLHTTP  := /usr/share/llhttp
CFLAGS_BASE := -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -Wno-unused-parameter \
           -I/usr/include/lua5.4 -I/usr/share/include/llhttp -I/usr/include/postgresql -Icore \
           -DLLHTTP_STRICT_MODE=1
OPT     ?= -O2 -g
LIBS    := -llua5.4 -luv -lcurl \
           -lsqlite3 -lpq -lcrypto -lz -lpthread -lm -ldl

SRC     := $(sort $(wildcard core/*.c))
LIBSRC  := $(filter-out core/main.c,$(SRC))
UNIT    := $(sort $(wildcard tests/unit/test_*.c))

BUILD   ?= build/release
OBJS    := $(patsubst core/%.c,$(BUILD)/%.o,$(SRC))
LIBOBJS := $(patsubst core/%.c,$(BUILD)/%.o,$(LIBSRC))
# The web console's files, embedded in the binary by console/embed.sh.
CONSOLE := $(sort $(wildcard console/*.html console/*.css console/*.js console/*.svg))
OBJS    += $(BUILD)/console_assets.o
LIBOBJS += $(BUILD)/console_assets.o
LLOBJS  := $(BUILD)/llhttp/llhttp.o $(BUILD)/llhttp/api.o $(BUILD)/llhttp/http.o
STAMP   := third_party/.deps-installed

.PHONY: all deps run test asan tsan chaos debug unit e2e bench clean install deb fuzz \
        fuzz-build fuzz-replay fuzz-bins
all: hookwork tests/fault/faultfs.so

# The durability tests' fault injector (LD_PRELOAD; never linked into hookwork).
tests/fault/faultfs.so: tests/fault/faultfs.c
	@echo "  CC   $<"
	@$(CC) -std=c11 -O2 -g -Wall -Wextra -Werror -shared -fPIC -o $@ $< -ldl

# Install only what is missing; apt-get update once, and only then.
deps: $(STAMP)
$(STAMP):
	@missing=""; for p in $(PKGS); do \
	  dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then echo "installing:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null || exit 1; fi
	@mkdir -p third_party && touch $@

hookwork: $(STAMP) $(OBJS) $(LLOBJS)
	@echo "  LINK $@"
	@$(CC) -o $@ $(OBJS) $(LLOBJS) $(LIBS) $(LDFLAGS)

$(BUILD)/%.o: core/%.c core/*.h $(STAMP)
	@mkdir -p $(dir $@)
	@echo "  CC   $<"
	@$(CC) $(CFLAGS_BASE) $(OPT) $(CFLAGS) -c -o $@ $<

$(BUILD)/console_assets.c: console/embed.sh $(CONSOLE)
	@mkdir -p $(dir $@)
	@echo "  GEN  $@"
	@sh console/embed.sh $(CONSOLE) > $@.tmp && mv $@.tmp $@

$(BUILD)/console_assets.o: $(BUILD)/console_assets.c core/console.h
	@echo "  CC   $<"
	@$(CC) $(CFLAGS_BASE) $(OPT) $(CFLAGS) -c -o $@ $<

$(BUILD)/llhttp/%.o: $(STAMP) Makefile
	@mkdir -p $(dir $@)
	@echo "  CC   $(LLHTTP)/$*.c"
	@$(CC) -std=c11 -O2 -g -I/usr/share/include/llhttp -DLLHTTP_STRICT_MODE=1 \
	  $(CFLAGS) -c -o $@ $(LLHTTP)/$*.c

# AddressSanitizer + UBSan build: ./hookwork-asan and unit tests under build/asan.
ASAN_FLAGS := -O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer \
              -fno-sanitize-recover=all -DLUA_USE_APICHECK
asan: $(STAMP)
	$(MAKE) BUILD=build/asan OPT="$(ASAN_FLAGS)" LDFLAGS="-fsanitize=address,undefined" \
	  TARGET=hookwork-asan hookwork-asan

hookwork-asan: $(OBJS) $(LLOBJS)
	@echo "  LINK $@"
	@$(CC) -o $@ $(OBJS) $(LLOBJS) $(LIBS) $(LDFLAGS)

# ThreadSanitizer: the store's unit tests and a short load against
# ./hookwork-tsan (webhooks, resumes, a store failure and its recovery, a
# graceful stop); fails on any report.
TSAN_FLAGS := -O1 -g -fsanitize=thread -fno-omit-frame-pointer
tsan: $(STAMP) tests/fault/faultfs.so
	$(MAKE) BUILD=build/tsan OPT="$(TSAN_FLAGS)" LDFLAGS="-fsanitize=thread" \
	  hookwork-tsan build/tsan/unit/test_store
	TSAN_OPTIONS="halt_on_error=1 exitcode=66" build/tsan/unit/test_store
	HOOKWORK_BIN=$(CURDIR)/hookwork-tsan python3 tests/tsan/load.py

hookwork-tsan: $(OBJS) $(LLOBJS)
	@echo "  LINK $@"
	@$(CC) -o $@ $(OBJS) $(LLOBJS) $(LIBS) $(LDFLAGS)

# make chaos (not in make test): kill -9 and SIGTERM at random moments under
# full load; every acknowledged request must be stored once and complete.
chaos: hookwork
	python3 tests/chaos/chaos.py

debug: $(STAMP)
	$(MAKE) BUILD=build/debug OPT="-O0 -g -DLUA_USE_APICHECK" hookwork

# Unit tests: each tests/unit/test_X.c links against the engine objects.
$(BUILD)/unit/%: tests/unit/%.c tests/unit/unit.h $(LIBOBJS) $(LLOBJS)
	@mkdir -p $(dir $@)
	@echo "  CC   $<"
	@$(CC) $(CFLAGS_BASE) $(OPT) $(CFLAGS) -Itests/unit -o $@ $< $(LIBOBJS) $(LLOBJS) $(LIBS) $(LDFLAGS)

unit: $(patsubst tests/unit/%.c,$(BUILD)/unit/%,$(UNIT))
	@bash tests/run_unit.sh $(BUILD)/unit

# make run ARGS="--listen 127.0.0.1:9090 --admin 127.0.0.1:9091"
# libFuzzer harnesses: every tests/fuzz/fuzz_NAME.c, linked with the engine
# objects built by clang under ASan/UBSan in build/fuzz; its seed corpus is
# tests/fuzz/corpus/NAME/.  `make fuzz` runs each for FUZZ_SECONDS (new
# inputs go to build/fuzz/work/NAME); `make fuzz-replay` (part of make test)
# runs every corpus file once.
FUZZ       := $(sort $(wildcard tests/fuzz/fuzz_*.c))
FUZZ_SECONDS ?= 60
FUZZ_OPT   := -O1 -g -fno-omit-frame-pointer -fno-sanitize-recover=all \
              -fsanitize=fuzzer-no-link,address,undefined
fuzz-build: $(STAMP)
	@$(MAKE) --no-print-directory BUILD=build/fuzz CC=clang OPT="$(FUZZ_OPT)" \
	  fuzz-bins

fuzz-bins: $(patsubst tests/fuzz/%.c,$(BUILD)/fuzzbin/%,$(FUZZ))

$(BUILD)/fuzzbin/%: tests/fuzz/%.c $(LIBOBJS) $(LLOBJS)
	@mkdir -p $(dir $@)
	@echo "  FUZZ $<"
	@$(CC) $(CFLAGS_BASE) $(OPT) -fsanitize=fuzzer,address,undefined -o $@ $< \
	  $(LIBOBJS) $(LLOBJS) $(LIBS)

fuzz: fuzz-build
	@bash tests/fuzz/run.sh fuzz $(FUZZ_SECONDS)

fuzz-replay: fuzz-build
	@bash tests/fuzz/run.sh replay

run: hookwork
	./hookwork run $(ARGS)

test: hookwork tests/fault/faultfs.so
	@bash tests/run_all.sh

bench: hookwork
	@bash tests/bench/run.sh

clean:
	rm -rf build hookwork hookwork-asan hookwork-tsan tests/fault/faultfs.so

# make install [PREFIX=/usr/local] [DESTDIR=]: the binary, the Lua side and
# the editor type definitions, the man page, the docs and a systemd unit.
PREFIX     ?= /usr/local
SYSTEMDDIR ?= $(if $(filter /usr,$(PREFIX)),/lib/systemd/system,$(PREFIX)/lib/systemd/system)
install: hookwork
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/share/hookwork \
	  $(DESTDIR)$(PREFIX)/share/man/man1 $(DESTDIR)$(PREFIX)/share/doc/hookwork \
	  $(DESTDIR)$(SYSTEMDDIR)
	install -m 0755 -s hookwork $(DESTDIR)$(PREFIX)/bin/hookwork
	cp -R lua $(DESTDIR)$(PREFIX)/share/hookwork/
	find $(DESTDIR)$(PREFIX)/share/hookwork -type d -exec chmod 0755 {} +
	find $(DESTDIR)$(PREFIX)/share/hookwork -type f -exec chmod 0644 {} +
	cp -R cycles $(DESTDIR)$(PREFIX)/share/doc/hookwork/examples
	chmod -R u=rwX,go=rX $(DESTDIR)$(PREFIX)/share/doc/hookwork/examples
	install -m 0644 README.md $(DESTDIR)$(PREFIX)/share/doc/hookwork/README.md
	install -m 0644 docs/*.md $(DESTDIR)$(PREFIX)/share/doc/hookwork/
	gzip -9n < packaging/hookwork.1 > $(DESTDIR)$(PREFIX)/share/man/man1/hookwork.1.gz
	chmod 0644 $(DESTDIR)$(PREFIX)/share/man/man1/hookwork.1.gz
	sed 's|@BINDIR@|$(PREFIX)/bin|' packaging/hookwork.service.in \
	  > $(DESTDIR)$(SYSTEMDDIR)/hookwork.service
	chmod 0644 $(DESTDIR)$(SYSTEMDDIR)/hookwork.service

# make deb: build/hookwork_VERSION_ARCH.deb (dpkg-deb; see packaging/)
deb: hookwork
	@bash packaging/build-deb.sh
