#!/usr/bin/env bash
# Installs what scripts/test-aarch64.sh needs, where it can: the Rust target
# aarch64-unknown-linux-gnu (rustup) and, on Debian or Ubuntu, qemu-user and
# the aarch64 cross linker and C library. Each step is best effort with a
# time limit: on a machine that cannot install them, test-aarch64.sh then
# says what is missing and skips.
set -uo pipefail
target=aarch64-unknown-linux-gnu
if ! rustup target list --installed 2>/dev/null | grep -qx "$target"; then
    timeout 300 rustup target add "$target" || echo "setup-aarch64: rustup target add $target failed"
fi
pkgs=()
command -v qemu-aarch64 >/dev/null 2>&1 || pkgs+=(qemu-user)
command -v aarch64-linux-gnu-gcc >/dev/null 2>&1 || pkgs+=(gcc-aarch64-linux-gnu)
[ -d /usr/aarch64-linux-gnu/lib ] || pkgs+=(libc6-dev-arm64-cross)
if [ ${#pkgs[@]} -gt 0 ] && command -v apt-get >/dev/null 2>&1; then
    sudo=()
    [ "$(id -u)" -eq 0 ] || sudo=(sudo -n)
    export DEBIAN_FRONTEND=noninteractive
    timeout 600 "${sudo[@]}" apt-get install -y --no-install-recommends "${pkgs[@]}" \
        || echo "setup-aarch64: apt-get install ${pkgs[*]} failed"
fi
exit 0
