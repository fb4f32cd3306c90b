# Stockade build. `make run` and `make test` are the two entry points (see README.md).
#
# Layout the build relies on (add files, not rules):
#   src/<subsystem>/*.c   -> the library (build*/libstockade.a)
#   src/cmd/*.c           -> the `stockade` binary (thin commands over the library)
#   src/engine/engine-js*.c, engine-py*.c, engine-lang-ops.c
#                         -> build*/libstockade-lang.so, JavaScriptCore + CPython, which the
#                            engine's zygotes dlopen (the binary itself does not link them)
#   src/agent/*.c         -> `stockade-agent`, the in-sandbox agent (its own small program),
#                            but agent-compat.c -> `stockade-compat.so` (preloaded in gVisor)
#   tests/unit/test-*.c   -> one unit-test binary per module
#   tests/hostile/*.c     -> attack programs run *inside* jails (plain build, no sanitizers)
#   tests/fuzz/fuzz-*.c   -> libFuzzer targets (make fuzz, clang)
#   tools/jail-seccomp-gen.c -> build*/tools/, run at build time: the jail's seccomp programs
#                            (build*/gen/jail-seccomp-bpf.c, part of the library)
#   scripts/lazy-trampolines.sh -> build*/gen/lazy-trampolines.S: the executable's
#                            lazy-binding trampolines for the libraries it loads when it
#                            starts instead of linking them (src/cmd/lazy-libs.c)
#
# Two build flavours share one rule set: release in build/, ASan+UBSan in build-asan/.

SHELL := /bin/bash
CC ?= gcc
PKGS := libseccomp libcap jansson yaml-0.1 openssl libcurl sqlite3 libpq libarchive libzstd \
        libmicrohttpd
# The executable links only these directly; the rest of PKGS are loaded through generated
# lazy-binding trampolines (scripts/lazy-trampolines.sh, src/cmd/lazy-libs.c): every command
# but `jail` and `doctor` loads them all before main(); those two load one only if they call it
# (libseccomp when a violation is named or extra syscalls are allowed). Unit tests and fuzz
# targets link every library normally.
EAGER_PKGS := jansson
LAZY_PKGS := $(filter-out $(EAGER_PKGS),$(PKGS))
# The language runtimes are linked into build*/libstockade-lang.so only, which a zygote loads
# on demand (src/engine/engine-lang.c); the executable never maps them (see docs/engines.md).
LANG_PKGS := javascriptcoregtk-4.1 python3-embed

# Deliberate warning list (bubblewrap/crun style): everything -Wall -Wextra has, plus shadowing,
# prototypes, switch defaults, format safety, casts that drop qualifiers, and VLAs; with gcc also
# what only C2x allows (a declaration right after a label: clang 14, the fuzz build, refuses it).
WARN := -Wall -Wextra -Werror -Wshadow -Wmissing-prototypes -Wstrict-prototypes \
        -Wswitch-default -Wformat=2 -Wformat-security -Wcast-qual -Wpointer-arith \
        -Wundef -Wvla -Wwrite-strings -Wnull-dereference -Wimplicit-fallthrough \
        -Wno-unused-parameter -Wno-format-nonliteral \
        $(if $(findstring clang,$(CC)),,-Wc11-c2x-compat)
CFLAGS_BASE := -std=gnu17 $(WARN) -D_GNU_SOURCE -fno-strict-aliasing -fstack-protector-strong \
        -D_FORTIFY_SOURCE=2 -g -MMD -MP -Isrc
PKG_CFLAGS = $(shell pkg-config --cflags $(PKGS) $(LANG_PKGS) 2>/dev/null)
PKG_LIBS = $(shell pkg-config --libs $(PKGS) 2>/dev/null) -lpthread -lm -ldl
EAGER_LIBS = $(shell pkg-config --libs $(EAGER_PKGS) 2>/dev/null) -lpthread -lm -ldl
LAZY_LIBNAMES = $(patsubst -l%,%,$(shell pkg-config --libs-only-l $(LAZY_PKGS) 2>/dev/null))
LANG_LIBS = $(shell pkg-config --libs $(LANG_PKGS) jansson 2>/dev/null) -lpthread -lm -ldl

ifeq ($(FLAVOUR),asan)
OUT := build-asan
OPT := -O1 -fno-omit-frame-pointer -fsanitize=address,undefined,float-cast-overflow -fno-sanitize-recover=undefined,float-cast-overflow
LDSAN := -fsanitize=address,undefined,float-cast-overflow
else
OUT := build
OPT := -O2
LDSAN :=
endif

CFLAGS := $(CFLAGS_BASE) $(OPT) $(PKG_CFLAGS) $(EXTRA_CFLAGS)
LDFLAGS += $(LDSAN)

# Sources of the language runtimes' shared object (everything that touches JSC or CPython).
LANG_SRC := $(wildcard src/engine/engine-js*.c src/engine/engine-py*.c) src/engine/engine-lang-ops.c
LIB_SRC := $(filter-out src/cmd/% src/agent/% $(LANG_SRC),$(wildcard src/*/*.c))
CMD_SRC := $(wildcard src/cmd/*.c)
AGENT_SRC := $(filter-out src/agent/agent-compat.c,$(wildcard src/agent/*.c))
UNIT_SRC := $(wildcard tests/unit/test-*.c)
HOSTILE_SRC := $(wildcard tests/hostile/*.c)

# The jail's seccomp programs, compiled by libseccomp at build time (tools/jail-seccomp-gen.c).
LIB_OBJ := $(LIB_SRC:%.c=$(OUT)/obj/%.o) $(OUT)/obj/gen/jail-seccomp-bpf.o
LANG_OBJ := $(LANG_SRC:%.c=$(OUT)/obj-lang/%.o)
CMD_OBJ := $(CMD_SRC:%.c=$(OUT)/obj/%.o)
AGENT_OBJ := $(AGENT_SRC:%.c=$(OUT)/obj/%.o)
UNIT_BIN := $(UNIT_SRC:tests/unit/%.c=$(OUT)/tests/%)
HOSTILE_BIN := $(HOSTILE_SRC:tests/hostile/%.c=build/hostile/%)

.SECONDARY:
.PHONY: all build asan deps run test test-release unit format format-check bench fuzz soak clean help
.DEFAULT_GOAL := all

all: build

help:
	@echo "make run          install missing dependencies, build, start 'stockade serve' on 127.0.0.1:8080"
	@echo "make test         install, build (release + ASan/UBSan), run every test under ASan/UBSan"
	@echo "make test-release run the suite against the release build"
	@echo "make bench        run the benchmarks in bench/ (release build)"
	@echo "make soak         ten minutes of mixed executions from four clients, then a leak check"
	@echo "make fuzz         build the libFuzzer targets with clang and run each (FUZZ_SECONDS)"
	@echo "make format       apply clang-format;  make format-check  check it"

deps:
	@bash scripts/deps.sh

build: deps
	@$(MAKE) --no-print-directory binaries

asan: deps
	@$(MAKE) --no-print-directory FLAVOUR=asan binaries

binaries: $(OUT)/stockade $(OUT)/libstockade-lang.so $(if $(AGENT_SRC),$(OUT)/stockade-agent) \
          $(OUT)/stockade-compat.so \
          $(UNIT_BIN) hostile

hostile: $(HOSTILE_BIN)

$(OUT)/libstockade.a: $(LIB_OBJ)
	@mkdir -p $(@D)
	@rm -f $@
	@echo "  AR      $@"
	@ar rcs $@ $^

# The generator runs on the build machine: plain build (no sanitizer, whatever the flavour),
# from the policy file and src/common only.
SECCOMP_GEN_SRC := tools/jail-seccomp-gen.c src/jail/jail-seccomp-policy.c src/common/common.c
$(OUT)/tools/jail-seccomp-gen: $(SECCOMP_GEN_SRC) src/jail/jail-internal.h src/jail/jail.h \
                               src/common/common.h
	@mkdir -p $(@D)
	@echo "  CC      $@"
	@$(CC) $(filter-out -MMD -MP,$(CFLAGS_BASE)) -O1 $(EXTRA_CFLAGS) \
	    $(shell pkg-config --cflags libseccomp jansson) -o $@ $(SECCOMP_GEN_SRC) \
	    $(shell pkg-config --libs libseccomp jansson)

$(OUT)/gen/jail-seccomp-bpf.c: $(OUT)/tools/jail-seccomp-gen
	@mkdir -p $(@D)
	@echo "  GEN     $@"
	@$(OUT)/tools/jail-seccomp-gen $@

$(OUT)/obj/gen/jail-seccomp-bpf.o: $(OUT)/gen/jail-seccomp-bpf.c
	@mkdir -p $(@D)
	@echo "  CC      $<"
	@$(CC) $(CFLAGS) -c -o $@ $<

# The language runtimes' object: position-independent, only engine_lang_ops exported.
$(OUT)/obj-lang/%.o: %.c
	@mkdir -p $(@D)
	@echo "  CC      $< (shared)"
	@$(CC) $(CFLAGS) -fPIC -fvisibility=hidden -c -o $@ $<

$(OUT)/libstockade-lang.so: $(LANG_OBJ)
	@echo "  LD      $@"
	@$(CC) $(LDFLAGS) -shared -o $@ $(LANG_OBJ) $(LANG_LIBS)

# The executable exports to the runtimes' object exactly what it calls back (engine__*, st_*,
# jail_*...): the symbols its objects leave undefined that the library defines. -u makes sure
# those archive members are linked in even where the executable itself does not use them.
$(OUT)/lang-exports.ld: $(LANG_OBJ) $(OUT)/libstockade.a
	@nm -u $(LANG_OBJ) | awk 'NF == 2 { print $$2 }' | sort -u >$@.undef
	@nm -g --defined-only $(OUT)/libstockade.a | awk 'NF == 3 { print $$3 }' | sort -u >$@.def
	@comm -12 $@.undef $@.def >$@.syms
	@{ echo '{'; sed 's/.*/  &;/' $@.syms; echo '};'; } >$@.list
	@{ echo "-Wl,--dynamic-list=$@.list"; sed 's/.*/-Wl,-u,&/' $@.syms; } >$@
	@rm -f $@.undef $@.def

# Trampolines for every function of LAZY_PKGS the executable calls (see src/cmd/lazy-libs.c).
$(OUT)/gen/lazy-trampolines.S: $(CMD_OBJ) $(OUT)/libstockade.a scripts/lazy-trampolines.sh
	@mkdir -p $(@D)
	@echo "  GEN     $@"
	@CC="$(CC)" bash scripts/lazy-trampolines.sh $@ "$(LAZY_LIBNAMES)" $(CMD_OBJ) \
	    $(OUT)/libstockade.a

$(OUT)/gen/lazy-trampolines.o: $(OUT)/gen/lazy-trampolines.S
	@echo "  AS      $@"
	@$(CC) -c -o $@ $<

# -z now: every symbol is bound once at start, so the jail's forked children never write the
# GOT (a copy-on-write fault each, expensive on a paravirtualised host) nor run the resolver.
$(OUT)/stockade: $(CMD_OBJ) $(OUT)/gen/lazy-trampolines.o $(OUT)/libstockade.a \
                 $(OUT)/lang-exports.ld
	@echo "  LD      $@"
	@$(CC) $(LDFLAGS) -Wl,-z,now @$(OUT)/lang-exports.ld -o $@ $(CMD_OBJ) \
	    $(OUT)/gen/lazy-trampolines.o $(OUT)/libstockade.a $(EAGER_LIBS)

$(OUT)/stockade-agent: $(AGENT_OBJ)
	@echo "  LD      $@"
	@$(CC) $(LDFLAGS) -o $@ $(AGENT_OBJ) -lpthread

# Preloaded into the commands of a gVisor sandbox (src/agent/agent-compat.c): never built with
# a sanitizer (its runtime would have to come first in programs that do not have it), and
# laid out to load cheaply (two segments, no relro, no start files; libc's syscall() and errno
# come from the program's libc).
$(OUT)/stockade-compat.so: src/agent/agent-compat.c
	@mkdir -p $(@D)
	@echo "  CC      $@"
	@$(CC) -std=gnu17 $(WARN) -D_GNU_SOURCE -O2 -fPIC -shared -nostdlib \
	    -Wl,-z,noseparate-code -Wl,-z,norelro -Wl,--hash-style=gnu \
	    -o $@ $<

$(OUT)/tests/test-%: $(OUT)/obj/tests/unit/test-%.o $(OUT)/obj/tests/unit/unit-main.o $(OUT)/libstockade.a \
                    $(OUT)/lang-exports.ld
	@mkdir -p $(@D)
	@echo "  LD      $@"
	@$(CC) $(LDFLAGS) @$(OUT)/lang-exports.ld -o $@ $< $(OUT)/obj/tests/unit/unit-main.o \
	    $(OUT)/libstockade.a $(PKG_LIBS)

$(OUT)/obj/%.o: %.c
	@mkdir -p $(@D)
	@echo "  CC      $<"
	@$(CC) $(CFLAGS) -c -o $@ $<

# Attack programs: no sanitizer runtime (it would need syscalls the jail refuses), static where
# possible so they do not depend on what the jail binds.
build/hostile/%: tests/hostile/%.c
	@mkdir -p $(@D)
	@echo "  CC      $@"
	@$(CC) -std=gnu17 -O1 -w -D_GNU_SOURCE -o $@ $< -lpthread

run: build
	./build/stockade serve --listen 127.0.0.1:8080 --data-dir ./data

# The whole suite runs against the ASan+UBSan build; the release build is built too (the
# benchmarks and `make run` use it) and its unit tests run as well.
test: deps format-check
	@$(MAKE) --no-print-directory binaries
	@$(MAKE) --no-print-directory FLAVOUR=asan binaries
	STOCKADE_BUILD=build-asan bash tests/run.sh

test-release: build
	STOCKADE_BUILD=build bash tests/run.sh

unit: build
	STOCKADE_BUILD=build bash tests/run.sh unit

bench: build
	bash bench/run.sh

FORMAT_FILES = $(shell git ls-files 'src/*.c' 'src/*.h' 'tests/unit/*.c' 'tests/unit/*.h' 2>/dev/null)
format:
	clang-format -i $(FORMAT_FILES)

format-check:
	@out=$$(clang-format --dry-run $(FORMAT_FILES) 2>&1); \
	if [ -n "$$out" ]; then echo "$$out" | head -40; echo "format-check: run 'make format'"; exit 1; fi; \
	echo "format-check: ok"

fuzz:
	bash tests/fuzz/run.sh

soak: build
	STOCKADE_BUILD=build STOCKADE_SOAK_SECONDS=$${STOCKADE_SOAK_SECONDS:-600} bash tests/e2e/soak.sh

clean:
	rm -rf build build-asan

-include $(shell find build build-asan -name '*.d' 2>/dev/null)
