# Two commands for users (README): `make demo` and `make test`. `make` builds into _output/.
BUILD_DIR ?= _build
JOBS ?= $(shell nproc)
CMAKE_FLAGS ?=
# ccache: paths relative to the checkout and no cwd in the hash, so any clone or
# worktree of the project reuses the same cached objects.
export CCACHE_BASEDIR := $(CURDIR)
export CCACHE_NOHASHDIR := true

.PHONY: all build setup test demo clean format

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

demo: setup
	$(MAKE) build
	./scripts/demo.sh

format:
	git ls-files '*.cc' '*.h' | xargs clang-format -i

clean:
	rm -rf $(BUILD_DIR) _output
