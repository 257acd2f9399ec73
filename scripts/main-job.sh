#!/usr/bin/env bash
# The main job (README "Set up", command 1): build agq and run `agq auto`, which fetches the
# model if missing, reuses this device's profile from device-profiles/ (or measures one with
# `agq profile`), tunes a plan for the budget, measures it against the presets on WikiText-2
# test and in one interleaved timing run, and writes reports-out/<device-slug>/.
# Usage: scripts/main-job.sh [agq auto flags...]   e.g. scripts/main-job.sh --budget 1%,3%,5%,10%
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q -p agq
exec "${CARGO_TARGET_DIR:-target}/release/agq" auto "$@"
