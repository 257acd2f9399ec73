#!/usr/bin/env bash
# The project's test command (README.md, "Set up"). Runs every crate's tests (the real-model
# ones included), each criterion bench once, and the kernel tests for aarch64 under qemu.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/fetch-model.sh
cargo test --release --workspace
cargo test --release --benches --workspace
scripts/test-aarch64.sh
