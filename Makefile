# s3tee - hand-written Makefile.
#   make                 build every binary into build/
#   make test            install missing packages, then unit + integration tests
#   make unit            C unit tests only
#   make integration     pytest integration tests only
#   make SANITIZER=address test   the same with ASan + UBSan (build-asan/)
#   make demo            two-site demo on loopback
#   make bench           benchmarks (tests/bench), prints ratios
#   make bench-repl      replication benchmark: recording cost, lag, replicator objects/s
#   make bench-wan       replication across an emulated 40 ms WAN: lag, 64 MiB vs a cap, resync
#   make fuzz            libFuzzer targets (clang, build-fuzz/), FUZZ_SECONDS each (default 60)
#   make fuzz-replay     fuzz seeds and regression inputs through the targets (also in `make unit`)
# Dependency rule (include paths): common <- signing, queue <- proxy, replicator.

CC        ?= cc
PKGS      := libevent libevent_openssl libevent_pthreads libnghttp2 openssl hiredis jansson libcurl
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null)
WARN      := -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wmissing-prototypes -Wwrite-strings
CFLAGS    ?= -O2 -g
CFLAGS    += -std=gnu11 -pthread $(WARN) -D_GNU_SOURCE -I. $(PKG_CFLAGS)
LDLIBS    += $(PKG_LIBS) -pthread -lm
VERSION   := $(shell cat VERSION 2>/dev/null || echo 0.0.0)
CFLAGS    += -DS3TEE_VERSION='"$(VERSION)"'

ifeq ($(SANITIZER),address)
  BUILD   ?= build-asan
  CFLAGS  += -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
  LDFLAGS += -fsanitize=address,undefined
else ifeq ($(SANITIZER),)
  BUILD   ?= build
else
  $(error SANITIZER must be empty or 'address')
endif

MODULES   := common signing queue proxy replicator
# Each module is a static library of its .c files, minus main.c (the binary's entry).
define module_srcs
$(filter-out $(1)/main.c,$(wildcard $(1)/*.c))
endef
define module_objs
$(patsubst %.c,$(BUILD)/%.o,$(call module_srcs,$(1)))
endef

LIB_common    := $(BUILD)/libcommon.a
LIB_signing   := $(BUILD)/libsigning.a
LIB_queue     := $(BUILD)/libqueue.a
LIB_proxy     := $(BUILD)/libproxy.a
LIB_replicator:= $(BUILD)/libreplicator.a

BINS := $(BUILD)/s3tee-proxy
ifneq ($(wildcard replicator/main.c),)
BINS += $(BUILD)/s3tee-replicator
endif
ifneq ($(wildcard tools/main.c),)
BINS += $(BUILD)/s3tee
endif

UNIT_SRCS := $(wildcard tests/unit/*/*.c)
UNIT_BINS := $(patsubst tests/unit/%.c,$(BUILD)/tests/unit/%,$(UNIT_SRCS))

.PHONY: all test unit integration deps demo bench bench-repl bench-wan fuzz fuzz-replay clean format
all: $(BINS)

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -MMD -MP -c $< -o $@

$(foreach m,$(MODULES),$(eval $(LIB_$(m)): $(call module_objs,$(m)) ; @mkdir -p $$(dir $$@); rm -f $$@; ar rcs $$@ $$^))

ALL_LIBS := $(LIB_proxy) $(LIB_replicator) $(LIB_queue) $(LIB_signing) $(LIB_common)

$(BUILD)/s3tee-proxy: $(BUILD)/proxy/main.o $(LIB_proxy) $(LIB_queue) $(LIB_signing) $(LIB_common)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/s3tee-replicator: $(BUILD)/replicator/main.o $(LIB_replicator) $(LIB_queue) $(LIB_signing) $(LIB_common)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

# s3tee (tools/): every tools/*.c; resync reuses the replicator's apply and sites code.
TOOLS_OBJS := $(patsubst %.c,$(BUILD)/%.o,$(wildcard tools/*.c))
$(BUILD)/s3tee: $(TOOLS_OBJS) $(LIB_replicator) $(LIB_queue) $(LIB_signing) $(LIB_common)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

# A unit test file may #include the .c it tests (for static functions); the archives
# then only supply what the test does not define itself. Tests link only the modules
# below their own (tests/unit/proxy/* #include the proxy files they test), so a module
# under construction never breaks another module's tests.
TEST_LIBS_common     := $(LIB_common)
TEST_LIBS_signing    := $(LIB_signing) $(LIB_common)
TEST_LIBS_queue      := $(LIB_queue) $(LIB_signing) $(LIB_common)
TEST_LIBS_proxy      := $(LIB_queue) $(LIB_signing) $(LIB_common)
TEST_LIBS_replicator := $(LIB_queue) $(LIB_signing) $(LIB_common)
TEST_LIBS_tools      := $(LIB_replicator) $(LIB_queue) $(LIB_signing) $(LIB_common)
.SECONDEXPANSION:
$(BUILD)/tests/unit/%: tests/unit/%.c tests/unit/test.h $$(TEST_LIBS_$$(firstword $$(subst /, ,$$*)))
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -MMD -MP -MF $@.d -Itests/unit -o $@ $< $(TEST_LIBS_$(firstword $(subst /, ,$*))) $(LDFLAGS) $(LDLIBS)

# Fuzz targets built with $(CC) and tests/fuzz/replay.c instead of libFuzzer: `make unit`
# replays their seed corpora and regression inputs (tests/fuzz/{corpus,regressions}/<target>/),
# in build/ and, under SANITIZER=address, in build-asan/.
FUZZ_SRCS         := $(wildcard tests/fuzz/fuzz_*.c)
FUZZ_REPLAY_BINS  := $(patsubst tests/fuzz/fuzz_%.c,$(BUILD)/tests/fuzz/%,$(FUZZ_SRCS))
.SECONDARY: $(patsubst tests/fuzz/%.c,$(BUILD)/tests/fuzz/%.o,$(FUZZ_SRCS) tests/fuzz/replay.c)
$(BUILD)/tests/fuzz/%: $(BUILD)/tests/fuzz/fuzz_%.o $(BUILD)/tests/fuzz/replay.o $(ALL_LIBS)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

unit: $(UNIT_BINS) $(FUZZ_REPLAY_BINS)
	@tests/unit/run.sh $(UNIT_BINS) $(FUZZ_REPLAY_BINS)

fuzz-replay: $(FUZZ_REPLAY_BINS)
	@tests/unit/run.sh $(FUZZ_REPLAY_BINS)

deps:
	@deploy/install-deps.sh

integration: deps all
	S3TEE_BUILD=$(abspath $(BUILD)) /usr/bin/python3 -m pytest -q -p no:cacheprovider tests/integration $(PYTEST_ARGS)

test: deps
	$(MAKE) unit
	$(MAKE) integration

demo: deps all
	@tests/bed/demo.sh

bench: deps all
	@S3TEE_BUILD=$(abspath $(BUILD)) tests/bench/run.sh

bench-repl: deps all
	@ulimit -n 65536 2>/dev/null || ulimit -n $$(ulimit -Hn); S3TEE_BUILD=$(abspath $(BUILD)) /usr/bin/python3 tests/bench/repl.py $(BENCH_ARGS)

bench-wan: deps all
	@ulimit -n 65536 2>/dev/null || ulimit -n $$(ulimit -Hn); S3TEE_BUILD=$(abspath $(BUILD)) /usr/bin/python3 tests/bench/wan.py $(BENCH_ARGS)

fuzz: deps
	@$(MAKE) -f tests/fuzz/Makefile FUZZ_SECONDS=$(or $(FUZZ_SECONDS),60)

format:
	clang-format -i $(foreach m,$(MODULES),$(wildcard $(m)/*.[ch]))

clean:
	rm -rf build build-asan build-fuzz

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
