# The two commands a new machine needs: `make run` and `make test`.
SHELL := /bin/bash
APT_PACKAGES := nginx libfcgi-dev libfcgi-bin spawn-fcgi libssl-dev libsqlite3-dev \
                postfix python3-aiosmtpd python3-jwt wrk openssl curl procps apache2 \
                systemd
SWIFT_FLAGS ?=

.PHONY: run test bench deps build release clean

# Installs only what is missing; as root on Debian (CI runs as root).
deps:
	@missing=$$(for p in $(APT_PACKAGES); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q 'ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	    echo "installing:" $$missing; \
	    SUDO=; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
	    $$SUDO apt-get update && \
	    DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y --no-install-recommends $$missing; \
	fi

build: deps
	swift build $(SWIFT_FLAGS)

release: deps
	swift build -c release $(SWIFT_FLAGS)

run: release
	nginx/local/run.sh

# The load-generating end-to-end suites (4 MiB bodies 3,600 times, 1 MiB
# hostile bodies, a 40-send flood) run after the rest, not beside ~100
# tests whose logins (600,000 PBKDF2 rounds each) and Python SMTP servers
# they would starve on 2 cores.
HEAVY_TESTS := TransportTests|HostileKeyTests|FairnessTests

test: build
	swift test $(SWIFT_FLAGS) --skip '$(HEAVY_TESTS)'
	swift test $(SWIFT_FLAGS) --skip-build --filter '$(HEAVY_TESTS)'

bench: release
	Benchmarks/run.sh

clean:
	rm -rf .build var
