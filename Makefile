# The two commands a new machine needs: `make run` and `make test`.
SHELL := /bin/bash
APT_PACKAGES := nginx libfcgi-dev libfcgi-bin spawn-fcgi libssl-dev libsqlite3-dev \
                postfix python3-aiosmtpd python3-jwt wrk openssl curl procps apache2 \
                libapache2-mod-fcgid systemd gdb spamassassin python3-prometheus-client python3-venv \
                dpkg-dev help2man lintian jq stunnel4 libcurl4-openssl-dev \
                libpq-dev postgresql
SWIFT_FLAGS ?=

.PHONY: run test bench deps build release deb commit-header clean

# Installs only what is missing; as root on Debian (CI runs as root).
deps:
	@missing=$$(for p in $(APT_PACKAGES); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q 'ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	    echo "installing:" $$missing; \
	    SUDO=; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
	    $$SUDO apt-get update && \
	    DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y --no-install-recommends $$missing; \
	fi

# The commit `mailgate --version` prints, baked in by every build below
# (Sources/CBuildInfo/commit.generated.h; rewritten only when it changes).
commit-header:
	@deploy/commit-header.sh

build: deps commit-header
	swift build $(SWIFT_FLAGS)

release: deps commit-header
	swift build -c release $(SWIFT_FLAGS)

# .build/deb/mailgate_VERSION_ARCH.deb (deploy/debian/build.sh): the Swift
# standard library and Foundation linked in, so the binary needs only
# Debian's libraries. Its own scratch path, so that it and `make release`
# (dynamic, for run and bench) do not rebuild each other. No $ORIGIN
# rpath (nothing is loaded from beside /usr/bin/mailgate); relocations
# read-only after start (-z now, with the default relro), as Debian's
# hardening flags do. Linked with the toolchain's lld: gold warns about the
# mktemp(3) that the static Foundation (FoundationEssentials' temporary
# files) references.
DEB_SCRATCH := .build-deb
DEB_XZ_LEVEL ?= 6
DEB_SWIFT_FLAGS := -c release --static-swift-stdlib --disable-local-rpath -Xswiftc -use-ld=lld \
                   -Xlinker -z -Xlinker now
deb: deps commit-header
	swift build $(DEB_SWIFT_FLAGS) --scratch-path $(DEB_SCRATCH) --product mailgate $(SWIFT_FLAGS)
	DEB_XZ_LEVEL=$(DEB_XZ_LEVEL) deploy/debian/build.sh $(DEB_SCRATCH)/release/mailgate .build/deb

run: release
	nginx/local/run.sh

# schemathesis (from PyPI, pinned) for SchemathesisTests: the live service
# checked against its OpenAPI document. In a venv of Debian's python3, kept
# in .build (make clean removes it); a new version installs over it.
SCHEMATHESIS_VERSION := 4.32.5
VENV := .build/venv
SCHEMATHESIS_STAMP := $(VENV)/schemathesis-$(SCHEMATHESIS_VERSION).installed

$(SCHEMATHESIS_STAMP): | deps
	/usr/bin/python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check 'schemathesis==$(SCHEMATHESIS_VERSION)'
	touch $@

# Three `swift test` runs, each under Tests/watchdog (a run that outlives
# its bound is killed after a dump of its threads, not left to hang CI):
# 1. everything in-process (units, the SMTP client against local servers,
#    the FastCGI server in-process): their synchronous tests would hold
#    Swift's 2-thread cooperative pool for seconds at a time, under the
#    end-to-end tests' awaits;
# 2. the end-to-end suites, through nginx to `mailgate serve`;
# 3. the load-generating end-to-end suites (4 MiB bodies 3,600 times,
#    1 MiB hostile bodies, a 40-send flood), which would starve the others.
# The .deb is built first: PackageTests (in run 2) check it.
HEAVY_TESTS := TransportTests|HostileKeyTests|FairnessTests
WATCHDOG_SECONDS ?= 600
SWIFT_TEST = Tests/watchdog $(WATCHDOG_SECONDS) swift test $(SWIFT_FLAGS)

# The package under test needs no release-grade compression (xz -1: 40 s less).
test: DEB_XZ_LEVEL := 1
test: build deb $(SCHEMATHESIS_STAMP)
	$(SWIFT_TEST) --skip EndToEndTests
	$(SWIFT_TEST) --skip-build --filter EndToEndTests --skip '$(HEAVY_TESTS)'
	$(SWIFT_TEST) --skip-build --filter '$(HEAVY_TESTS)'

bench: release
	Benchmarks/run.sh

clean:
	rm -rf .build $(DEB_SCRATCH) var
