# The two commands of the README: `make demo` and `make test`.
BUILD      ?= build
ASAN_BUILD ?= build-asan
JOBS       ?= $(shell nproc)
CMAKE_FLAGS ?=

.PHONY: all build deps test test-unit test-asan test-system demo bench fuzz clean format

all: build

deps:
	@bash scripts/install-deps.sh

build:
	cmake -S . -B $(BUILD) -DRAPROXY_WERROR=ON $(CMAKE_FLAGS) >/dev/null
	cmake --build $(BUILD) -j $(JOBS)

# All tests (unit, integration, end to end), then again under ASan+UBSan.
test: deps build
	bash scripts/run-tests.sh $(BUILD) tests
	$(MAKE) test-asan
	$(MAKE) test-system

test-asan:
	cmake -S . -B $(ASAN_BUILD) -DRAPROXY_WERROR=ON -DRAPROXY_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug $(CMAKE_FLAGS) >/dev/null
	cmake --build $(ASAN_BUILD) -j $(JOBS)
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	LSAN_OPTIONS=suppressions=$(CURDIR)/test/lsan.supp \
	  bash scripts/run-tests.sh $(ASAN_BUILD) asan-tests

# The unit tests against Debian's own wolfSSL (the default build links the fast one).
SYSTEM_BUILD ?= build-system
test-system:
	cmake -S . -B $(SYSTEM_BUILD) -DRAPROXY_WERROR=ON -DRAPROXY_WOLFSSL=system $(CMAKE_FLAGS) >/dev/null
	cmake --build $(SYSTEM_BUILD) -j $(JOBS)
	bash scripts/run-tests.sh $(SYSTEM_BUILD) system-unit -L unit

test-unit: build
	bash scripts/run-tests.sh $(BUILD) unit-tests -L unit

demo: deps build
	bash scripts/demo.sh $(BUILD)

fuzz:
	cmake -S . -B build-fuzz -DCMAKE_C_COMPILER=clang -DRAPROXY_FUZZ=ON -DRAPROXY_TESTS=OFF >/dev/null
	cmake --build build-fuzz -j $(JOBS)

format:
	find src include test bench -name '*.[ch]' | xargs clang-format -i

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) build-fuzz build-system
