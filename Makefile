# rbdcp: build, test (with local Ceph clusters), benchmark and demo.
CARGO ?= cargo
export PATH := $(HOME)/.cargo/bin:$(PATH)

.PHONY: all build deps test unit lint bench demo clean deb

all: build

# Installs what is missing: Debian's Ceph packages (librbd, librados, mon, osd) and the tools the benches use.
deps:
	bash scripts/ceph-local.sh install

build: deps
	$(CARGO) build --release

# The whole suite: unit, property, CLI and RBD tests, against two local Ceph clusters
# started for the run and stopped afterwards, even when a test fails; then the Debian
# package, built, installed, run and removed (tests/deb.sh).
test: deps
	bash scripts/with-clusters.sh $(CARGO) test --workspace --all-targets
	bash tests/deb.sh

# target/debian/rbdcp_VERSION_ARCH.deb: the binary, man pages, completions and README.
deb: deps
	bash scripts/deb.sh

# Only what needs no cluster.
unit:
	$(CARGO) test --workspace --all-targets

lint:
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

# Writes BENCHMARKS.md: rbdcp against cp and qemu-img on local images, then (with two local
# clusters, started for the run and stopped afterwards) against rbd cp, rbd export | import,
# rbd export-diff | import-diff, qemu-img and rados bench; then (fresh clusters again) diff streams:
# rbdcp import-diff/export-diff against rbd import-diff/export-diff and rbd bench; all timed side by side.
bench: build
	bash bench/local.sh
	bash scripts/with-clusters.sh python3 bench/rbd.py
	bash scripts/with-clusters.sh python3 bench/diff.py
	bash scripts/with-clusters.sh python3 bench/thin.py
	bash scripts/with-clusters.sh python3 bench/history.py

# A real copy with a progress bar, then the result.
demo: build
	bash scripts/demo.sh

clean:
	$(CARGO) clean
