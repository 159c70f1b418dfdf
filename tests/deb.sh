#!/usr/bin/env bash
# The Debian package, for real (run by `make test`): builds it with scripts/deb.sh, checks it
# with lintian (no errors), installs it with dpkg on this machine, runs the installed
# `rbdcp --version` and `man -w rbdcp` (and a completion script's presence), then removes it.
# Needs root; in CI (CI=true) a machine without root fails instead of skipping.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { echo "deb.sh: $*" >&2; }
if [[ $(id -u) != 0 ]]; then
    [[ ${CI:-} == true ]] && { say "CI=true but not root: cannot install the package"; exit 1; }
    say "skipped: installing a package needs root"
    exit 0
fi
if dpkg-query -W -f='${db:Status-Status}' rbdcp 2>/dev/null | grep -qx installed; then
    [[ ${CI:-} == true ]] && { say "an rbdcp package is installed already; refusing to replace it"; exit 1; }
    say "skipped: an rbdcp package is installed already (not replacing it)"
    exit 0
fi

deb=$(bash scripts/deb.sh | tail -n 1)
[[ -f $deb ]] || { say "scripts/deb.sh made no package"; exit 1; }
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)
[[ $(basename "$deb") == "rbdcp_${version}_$(dpkg --print-architecture).deb" ]] || { say "unexpected name $deb"; exit 1; }

lint=$(lintian --allow-root "$deb" 2>&1 || true)
if grep -q '^E: ' <<<"$lint"; then
    say "lintian found errors:"; echo "$lint" >&2; exit 1
fi

cleanup() { dpkg -r rbdcp > /dev/null 2>&1 || true; }
trap cleanup EXIT
dpkg -i "$deb" > /dev/null
got=$(/usr/bin/rbdcp --version)
[[ $got == "rbdcp $version ("*"), librbd "*", librados "* ]] || { say "installed --version says: $got"; exit 1; }
page=$(man -w rbdcp)
[[ $page == /usr/share/man/man1/rbdcp.1.gz ]] || { say "man -w rbdcp: $page"; exit 1; }
man -w rbdcp-copy > /dev/null
for f in /usr/share/bash-completion/completions/rbdcp /usr/share/zsh/vendor-completions/_rbdcp \
    /usr/share/fish/vendor_completions.d/rbdcp.fish /usr/share/doc/rbdcp/README.md; do
    [[ -s $f ]] || { say "$f missing"; exit 1; }
done
dpkg -r rbdcp > /dev/null
[[ ! -e /usr/bin/rbdcp ]] || { say "/usr/bin/rbdcp left after dpkg -r"; exit 1; }
trap - EXIT
say "ok: $(basename "$deb") built, lintian clean, installed ($got), man -w rbdcp = $page, removed"

# The container recipe installs exactly this package and runs what it installs.
want="COPY $deb /tmp/rbdcp.deb"
grep -qxF "$want" Containerfile || { say "Containerfile does not copy $deb (want: $want)"; exit 1; }
entry=$(sed -n 's/^ENTRYPOINT \["\([^"]*\)"\]$/\1/p' Containerfile)
dpkg-deb -c "$deb" | awk '{print $6}' | grep -qx ".$entry" || { say "Containerfile runs $entry, which the package lacks"; exit 1; }
grep -qx 'FROM debian:12' Containerfile || { say "Containerfile is not based on Debian 12"; exit 1; }
say "ok: Containerfile installs $(basename "$deb") and runs $entry"

# The examples run what the package and the image provide.
for unit in examples/systemd/*.service; do
    exe=$(sed -n -e 's/.*exec \(\/usr\/bin\/[a-z]*\).*/\1/p' -e 's/^ExecStart=\(\/usr\/bin\/[a-z]*\) .*/\1/p' "$unit")
    [[ -n $exe ]] && dpkg-deb -c "$deb" | awk '{print $6}' | grep -qx ".$exe" \
        || { say "$unit runs '$exe', which the package lacks"; exit 1; }
done
for job in examples/kubernetes/*.yaml; do
    image=$(sed -n 's/^ *image: //p' "$job")
    [[ $image == *":$version" ]] || { say "$job: the image $image is not version $version"; exit 1; }
done
say "ok: the systemd and Kubernetes examples use the package's $entry and version $version"
