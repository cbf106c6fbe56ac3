#!/usr/bin/env bash
# CI machine setup, from the distribution's own archive: QEMU (runs the
# guests), Chromium (the HTML report test opens the page in a browser), rpm;
# and the musl target for the static guest payload (a static glibc build is
# the fallback). Everything else (payload, kernels, guest programs) is done
# by `cargo xtask setup`, which the test command runs first.
set -euo pipefail

sudo=""
if [ "$(id -u)" -ne 0 ]; then
    sudo="sudo"
fi
need=()
command -v qemu-system-x86_64 >/dev/null 2>&1 || need+=(qemu-system-x86)
command -v chromium >/dev/null 2>&1 || need+=(chromium)
# rpmbuild lets a test unpack a real RPM made around a fake kernel (without
# it that test says it skipped; the hand-made RPMs still run).
command -v rpmbuild >/dev/null 2>&1 || need+=(rpm)
if [ "${#need[@]}" -gt 0 ]; then
    $sudo apt-get update
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y --no-install-recommends "${need[@]}"
fi

rustup target add x86_64-unknown-linux-musl || true
