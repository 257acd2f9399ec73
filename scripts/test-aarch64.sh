#!/usr/bin/env bash
# Builds the kernels for aarch64 and runs their tests under qemu-user: once on the default
# emulated CPU (NEON + dotprod) and once as a Cortex-A53 (no dotprod) for the fallback path.
# Skips with a message, exit 0, only when the toolchain pieces cannot be installed here.
set -euo pipefail
cd "$(dirname "$0")/.."
TARGET=aarch64-unknown-linux-gnu

skip() { echo "test-aarch64: SKIPPED: $*" >&2; exit 0; }

if ! rustup target list --installed 2>/dev/null | grep -qx "$TARGET"; then
  rustup target add "$TARGET" >&2 || skip "rustup could not install the $TARGET target"
fi
if ! command -v aarch64-linux-gnu-gcc >/dev/null || ! command -v qemu-aarch64 >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
      gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user) >&2 \
      || skip "apt-get could not install gcc-aarch64-linux-gnu / qemu-user"
  else
    skip "aarch64-linux-gnu-gcc or qemu-aarch64 missing and cannot be installed (not root or no apt-get)"
  fi
fi

echo "test-aarch64: kernels on the default emulated CPU (neon + dotprod)" >&2
cargo test --release --target "$TARGET" -p kernels
echo "test-aarch64: kernels as a Cortex-A53 (neon, no dotprod)" >&2
QEMU_CPU=cortex-a53 cargo test --release --target "$TARGET" -p kernels
