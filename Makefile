# Two commands for users (README): `make demo` and `make test`. `make` builds into _output/.
BUILD_DIR ?= _build
JOBS ?= $(shell nproc)
CMAKE_FLAGS ?=
# ccache: paths relative to the checkout and no cwd in the hash, so any clone or
# worktree of the project reuses the same cached objects.
export CCACHE_BASEDIR := $(CURDIR)
export CCACHE_NOHASHDIR := true

.PHONY: all build setup test test-asan test-tsan fuzz demo clean format install deb test-packages test-critest

all: build

$(BUILD_DIR)/CMakeCache.txt:
	cmake -S . -B $(BUILD_DIR) $(CMAKE_FLAGS)

build: $(BUILD_DIR)/CMakeCache.txt
	cmake --build $(BUILD_DIR) -j $(JOBS)

setup:
	./scripts/setup.sh

test: setup
	$(MAKE) build
	cd $(BUILD_DIR) && ctest --output-on-failure -j 2 --timeout 900

# Sanitizer builds of everything but the guest, each in its own build and output
# dir; they run every test that needs no VM (ctest label e2e and vm excluded).
SANITIZER_CTEST = ctest --output-on-failure -j 2 --timeout 900 -LE 'e2e|vm'
ASAN_OPTIONS ?= detect_leaks=1:abort_on_error=1:strict_string_checks=1
UBSAN_OPTIONS ?= print_stacktrace=1:halt_on_error=1
TSAN_OPTIONS ?= halt_on_error=1:second_deadlock_stack=1
export ASAN_OPTIONS UBSAN_OPTIONS TSAN_OPTIONS

test-asan: setup
	cmake -S . -B _build-asan -DBEACONBOX_SANITIZE=address,undefined \
	  -DBEACONBOX_OUTPUT_DIR=$(CURDIR)/_build-asan/_output $(CMAKE_FLAGS)
	cmake --build _build-asan -j $(JOBS)
	cd _build-asan && $(SANITIZER_CTEST)

test-tsan: setup
	cmake -S . -B _build-tsan -DBEACONBOX_SANITIZE=thread \
	  -DBEACONBOX_OUTPUT_DIR=$(CURDIR)/_build-tsan/_output $(CMAKE_FLAGS)
	cmake --build _build-tsan -j $(JOBS)
	cd _build-tsan && $(SANITIZER_CTEST)

# libFuzzer (clang from Debian) on the ttrpc framing, the shim's handling of guest
# answers, the config loader and the OCI spec adapter (tests/fuzz/): each target runs
# FUZZ_SECONDS, new inputs are merged into tests/fuzz/corpus/. `make test` replays
# those corpora with g++ (ctest label fuzz). Not part of CI: it has no fixed end.
FUZZ_SECONDS ?= 60
FUZZ_TARGETS ?= ttrpc_server ttrpc_client guest_response config spec_adapter cni_result
fuzz: setup
	CC=clang CXX=clang++ cmake -S . -B _build-fuzz -DBEACONBOX_FUZZ=ON \
	  -DBEACONBOX_OUTPUT_DIR=$(CURDIR)/_build-fuzz/_output $(CMAKE_FLAGS)
	cmake --build _build-fuzz --target fuzz-targets -j $(JOBS)
	./scripts/fuzz.sh _build-fuzz $(FUZZ_SECONDS) $(FUZZ_TARGETS)

# Installs the build (README "Installing"): the shim and beaconbox-ctl in PREFIX/bin,
# plugins in PREFIX/lib/beaconbox/plugins, the guest kernel and initrd in
# PREFIX/share/beacon/kernel, the config in /etc/beaconbox (PREFIX=/usr) or
# PREFIX/etc/beaconbox, the plugin ABI for plugin authors. DESTDIR stages it.
# COMPONENTS limits it to some of: host guest plugin-<dir> plugin_abi.
PREFIX ?= /usr/local
DESTDIR ?=
COMPONENTS ?=
install: build
	$(if $(COMPONENTS),$(foreach c,$(COMPONENTS),DESTDIR="$(DESTDIR)" cmake --install $(BUILD_DIR) --prefix "$(PREFIX)" --component $(c) &&) true,DESTDIR="$(DESTDIR)" cmake --install $(BUILD_DIR) --prefix "$(PREFIX)")

# critest, the CRI validation suite of cri-tools v1.26.1, against containerd's CRI plugin
# with the runc and beaconbox handlers (tests/critest/run.sh). Neither Debian nor CI has
# cri-tools: give a checkout (CRI_TOOLS_SRC=DIR) or a git dir with the tag
# (CRI_TOOLS_GIT=DIR); without one build.sh says so and how to get it. Results in
# $(BUILD_DIR)/critest/.
CRI_TOOLS_SRC ?=
CRI_TOOLS_GIT ?=
export CRI_TOOLS_SRC CRI_TOOLS_GIT
test-critest:
	./tests/critest/build.sh $(BUILD_DIR)/critest --check
	./scripts/setup.sh --critest
	$(MAKE) build
	./tests/critest/build.sh $(BUILD_DIR)/critest
	nice ./tests/critest/run.sh $(BUILD_DIR)/critest

# Debian packages (debian/, debhelper): built out of tree under _build/deb/, written to
# _output/deb/. test-packages installs them into a scratch root (overlay of /) and runs
# containerd from the installed layout, a live plugin upgrade and removal/purge.
deb: setup
	nice -n 19 ./scripts/build-deb.sh $(CURDIR)/_output/deb

test-packages: deb
	nice -n 19 ./tests/packages/packages_test.sh $(CURDIR)/_output/deb

demo: setup
	$(MAKE) build
	./scripts/demo.sh

format:
	git ls-files '*.cc' '*.h' | xargs clang-format -i

clean:
	rm -rf $(BUILD_DIR) _build-asan _build-tsan _build-fuzz _output
