#!/usr/bin/env bash
# CI machine setup: QEMU from the distribution's own archive, plus the musl
# target for the static guest payload (optional: a static glibc build is the
# fallback). Everything else (payload, kernel) is done by `cargo xtask setup`.
set -euo pipefail

if ! command -v qemu-system-x86_64 >/dev/null 2>&1; then
    sudo=""
    if [ "$(id -u)" -ne 0 ]; then
        sudo="sudo"
    fi
    $sudo apt-get update
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y qemu-system-x86
fi

rustup target add x86_64-unknown-linux-musl || true

# Optional: rpmbuild lets a test unpack a real RPM made around a fake
# kernel (without it that test says it skipped; hand-made RPMs still run).
if ! command -v rpmbuild >/dev/null 2>&1; then
    sudo=""
    if [ "$(id -u)" -ne 0 ]; then
        sudo="sudo"
    fi
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y rpm >/dev/null 2>&1 || true
fi
