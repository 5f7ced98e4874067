# iotsafe-dane — `make demo` runs the end-to-end demo, `make test` the tests.
# Both install the Debian packages they need first (as root), then build.

CARGO   ?= cargo
PREFIX  ?= /usr/local

# What the tests and the demo run for real: pcscd with the vpcd reader driver, knotd, named,
# mosquitto, OpenSSL 3 and its headers, and the DNS/DANE peers used to cross-check.
APT_PACKAGES = pcscd libpcsclite-dev vsmartcard-vpcd pcsc-tools \
               knot knot-dnsutils ldnsutils hash-slinger unbound bind9 \
               mosquitto mosquitto-clients libmosquitto-dev mosquitto-dev libpaho-mqtt-dev \
               libssl-dev openssl pkg-config gcc make cbindgen

.PHONY: mosquitto-plugin preload all deps build demo test lint unit bench clean provider install fuzz fuzz-long leaks

all: build

deps:
	@scripts/install-deps.sh $(APT_PACKAGES)

build: deps
	$(CARGO) build --workspace --all-targets
	@$(MAKE) --no-print-directory provider PROFILE=debug
	@$(MAKE) --no-print-directory mosquitto-plugin PROFILE=debug
	@$(MAKE) --no-print-directory preload PROFILE=debug

# The provider under the name openssl.cnf uses (`iotsafe`): iotsafe.so beside the library,
# so that OPENSSL_MODULES=target/<profile> finds it.
PROFILE ?= debug
# libiotsafe_dane.so.0 is the SONAME programs linked with -liotsafe_dane ask for. The touch
# records that cargo, just run, found the library up to date: the tests refuse a library older
# than the sources, and cargo does not relink it for a source only tests compile.
provider:
	touch target/$(PROFILE)/libiotsafe_dane.so
	ln -sf libiotsafe_dane.so target/$(PROFILE)/iotsafe.so
	ln -sf libiotsafe_dane.so target/$(PROFILE)/libiotsafe_dane.so.$(SOMAJOR)

# The mosquitto broker plugin (plugins/mosquitto/): a thin C adapter that links the core library
# by its C API, so the broker process holds one resolver and cache. No rpath: the installed
# plugin finds libiotsafe_dane.so.0 where ldconfig put it (the tests set LD_LIBRARY_PATH).
PLUGIN_SRC = plugins/mosquitto/iotsafe_mosquitto.c
mosquitto-plugin: target/$(PROFILE)/iotsafe_mosquitto.so
target/$(PROFILE)/iotsafe_mosquitto.so: $(PLUGIN_SRC) include/iotsafe_dane.h target/$(PROFILE)/libiotsafe_dane.so
	gcc -std=c11 -Wall -Wextra -Werror -O2 -g -fPIC -shared -Iinclude -o $@ $(PLUGIN_SRC) \
	    -Ltarget/$(PROFILE) -liotsafe_dane -lssl -lcrypto -lpthread

# The preload shim and the `iotsafe-run` launcher (preload/): thin C adapters over the core
# library's C API, beside it in target/<profile>. The shim finds libiotsafe_dane.so.0 beside
# itself ($$ORIGIN), in the build directory as where `make install` puts both. The launcher
# finds the shim beside itself, in ../lib or in LIBDIR; its default openssl.cnf is the
# installed one, else this tree's c-examples/openssl.cnf.
PRELOAD_CFLAGS = -O2 -g -std=gnu11 -Wall -Wextra -Werror -Iinclude
# The version the C library gives `connect` (GLIBC_2.2.5 on x86-64), which the shim's must carry.
LIBC_CONNECT_VERSION = $(shell objdump -T $$(gcc -print-file-name=libc.so.6) | \
    sed -n 's/.*[[:space:]]\(GLIBC_[0-9.]*\)[[:space:]]*connect$$/\1/p' | head -1)
preload:
	sed 's/@LIBC_CONNECT_VERSION@/$(LIBC_CONNECT_VERSION)/' preload/iotsafe_preload.map.in \
	    > target/$(PROFILE)/iotsafe_preload.map
	gcc $(PRELOAD_CFLAGS) -fPIC -shared -o target/$(PROFILE)/libiotsafe_preload.so \
	    preload/iotsafe_preload.c -Wl,--version-script=target/$(PROFILE)/iotsafe_preload.map \
	    -Ltarget/$(PROFILE) -liotsafe_dane -lssl -lcrypto -ldl -lpthread -Wl,-rpath,'$$ORIGIN'
	gcc $(PRELOAD_CFLAGS) -o target/$(PROFILE)/iotsafe-run preload/iotsafe_run.c \
	    -DIOTSAFE_OPENSSL_CNF='"$(CURDIR)/c-examples/openssl.cnf"' -DIOTSAFE_LIBDIR='"$(LIBDIR)"'

# Where OpenSSL looks for provider modules (`openssl version -m`).
MODULESDIR ?= $(shell openssl version -m | sed -n 's/^MODULESDIR: "\(.*\)"/\1/p')
LIBDIR     ?= $(PREFIX)/lib
INCLUDEDIR ?= $(PREFIX)/include
VERSION    := $(shell sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
SOMAJOR    := $(firstword $(subst ., ,$(VERSION)))

# The library once, under its SONAME, the provider as iotsafe.so where OpenSSL finds modules (a
# symlink to that one file: one copy per process however it is loaded), the tools, the
# header(s), a pkg-config file and the example openssl.cnf.
# INSTALL_PROFILE=debug installs the debug build as `make build` left it, without building (the
# tests do that, into a DESTDIR, while other tests run the same binaries).
INSTALL_PROFILE ?= release
install: deps
	$(if $(filter release,$(INSTALL_PROFILE)),$(CARGO) build --release --workspace)
	install -D -m 0755 target/$(INSTALL_PROFILE)/libiotsafe_dane.so $(DESTDIR)$(LIBDIR)/libiotsafe_dane.so.$(VERSION)
	ln -sf libiotsafe_dane.so.$(VERSION) $(DESTDIR)$(LIBDIR)/libiotsafe_dane.so.$(SOMAJOR)
	ln -sf libiotsafe_dane.so.$(SOMAJOR) $(DESTDIR)$(LIBDIR)/libiotsafe_dane.so
	install -d $(DESTDIR)$(MODULESDIR)
	ln -sfr $(DESTDIR)$(LIBDIR)/libiotsafe_dane.so.$(SOMAJOR) $(DESTDIR)$(MODULESDIR)/iotsafe.so
	install -D -m 0755 target/$(INSTALL_PROFILE)/iotsafe $(DESTDIR)$(PREFIX)/bin/iotsafe
	install -D -m 0755 target/$(INSTALL_PROFILE)/iotsafe-sim $(DESTDIR)$(PREFIX)/bin/iotsafe-sim
	$(if $(filter release,$(INSTALL_PROFILE)),@$(MAKE) --no-print-directory preload PROFILE=release)
	install -D -m 0755 target/$(INSTALL_PROFILE)/libiotsafe_preload.so $(DESTDIR)$(LIBDIR)/libiotsafe_preload.so
	install -D -m 0755 target/$(INSTALL_PROFILE)/iotsafe-run $(DESTDIR)$(PREFIX)/bin/iotsafe-run
	for h in include/*.h; do [ -f "$$h" ] && install -D -m 0644 "$$h" $(DESTDIR)$(INCLUDEDIR)/$$(basename "$$h"); done; true
	install -d $(DESTDIR)$(LIBDIR)/pkgconfig
	sed -e 's|@LIBDIR@|$(LIBDIR)|' -e 's|@INCLUDEDIR@|$(INCLUDEDIR)|' -e 's|@PREFIX@|$(PREFIX)|' \
	    -e 's|@MODULESDIR@|$(MODULESDIR)|' -e 's|@VERSION@|$(VERSION)|' \
	    iotsafe-dane.pc.in > $(DESTDIR)$(LIBDIR)/pkgconfig/iotsafe-dane.pc
	@$(MAKE) --no-print-directory mosquitto-plugin PROFILE=$(INSTALL_PROFILE)
	install -D -m 0755 target/$(INSTALL_PROFILE)/iotsafe_mosquitto.so $(DESTDIR)$(LIBDIR)/mosquitto/iotsafe_mosquitto.so
	install -D -m 0644 c-examples/openssl.cnf $(DESTDIR)$(PREFIX)/share/iotsafe-dane/openssl.cnf
	@# Programs linked with -liotsafe_dane find libiotsafe_dane.so.0 at once (not into a DESTDIR).
	$(if $(DESTDIR),,-ldconfig)

demo: build
	$(CARGO) run --quiet --example demo

lint: deps
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

test: build lint
	scripts/run-tests.sh

# The tests that need no root and start no daemon (no pcscd, knotd, unbound or mosquitto):
# the unit tests of the library and the simulator (the provider's card logic on a scripted
# card, parsers, the DNSSEC proof rules), the fuzz regressions and the README citation check.
# Seconds, not minutes; `make test` runs everything.
UNIT_TESTS = --lib --bins --test fuzz_regressions --test readme_claims
unit:
	scripts/run-tests.sh $(UNIT_TESTS)

# Figures as `BENCH <name> <value>` lines, each with its baseline measured in the same run.
bench: build
	$(CARGO) bench --bench dane
	$(CARGO) bench --bench registry
	$(CARGO) build --release --workspace
	@$(MAKE) --no-print-directory provider PROFILE=release
	@$(MAKE) --no-print-directory mosquitto-plugin PROFILE=release
	@$(MAKE) --no-print-directory preload PROFILE=release
	$(CARGO) bench --bench provider
	$(CARGO) bench --bench broker
	$(CARGO) bench --bench shim

# Fuzzing (README "Fuzzing and leaks"; nightly toolchain, cargo-fuzz installed when missing):
# every target for FUZZ_SECONDS each (default 30), or until FUZZ_RUNS executions each.
fuzz:
	scripts/fuzz.sh

fuzz-long:
	FUZZ_RUNS=$${FUZZ_RUNS:-10000000} scripts/fuzz.sh

# Card handshakes and verify_client calls under valgrind at LEAK_COUNT/10 and LEAK_COUNT
# (default 10000): fails when lost bytes grow with the count. About an hour; not run by CI.
leaks: build
	scripts/leak-check.sh

clean:
	$(CARGO) clean
