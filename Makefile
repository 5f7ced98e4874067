# iotsafe-dane — `make demo` runs the end-to-end demo, `make test` the tests.
# Both install the Debian packages they need first (as root), then build.

CARGO   ?= cargo
PREFIX  ?= /usr/local

# What the tests and the demo run for real: pcscd with the vpcd reader driver, knotd,
# mosquitto, OpenSSL 3 and its headers, and the DNS/DANE peers used to cross-check.
APT_PACKAGES = pcscd libpcsclite-dev vsmartcard-vpcd pcsc-tools \
               knot knot-dnsutils ldnsutils hash-slinger unbound \
               mosquitto mosquitto-clients libmosquitto-dev mosquitto-dev libpaho-mqtt-dev \
               libssl-dev openssl pkg-config gcc make cbindgen

.PHONY: all deps build demo test lint unit bench clean

all: build

deps:
	@scripts/install-deps.sh $(APT_PACKAGES)

build: deps
	$(CARGO) build --workspace --all-targets

demo: build
	$(CARGO) run --quiet --example demo

lint: deps
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

test: build lint
	scripts/run-tests.sh

# Figures as `BENCH <name> <value>` lines, each with its baseline measured in the same run.
bench: build
	$(CARGO) bench --bench dane

clean:
	$(CARGO) clean
