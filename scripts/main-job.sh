#!/usr/bin/env bash
# The main job (README "Set up", command 1): fetch the model if missing, describe this
# device, measure every kernel variant against f16 here, run the presets for quality
# (WikiText-2 test, first chunks) and speed (llama-bench style), and write a report folder.
# Profiling per layer, tuning and plotted reports replace parts of this as their issues land.
# Usage: scripts/main-job.sh [OUT_DIR]   (default reports-out/<device-slug>)
# Env: AGQ_CHUNKS (perplexity chunks of 512 tokens, default 8), AGQ_PLANS (default fp16,w4a16,w4a8,agile8).
set -euo pipefail
cd "$(dirname "$0")/.."

chunks=${AGQ_CHUNKS:-8}
plans=${AGQ_PLANS:-fp16,w4a16,w4a8,agile8}

scripts/fetch-model.sh
cargo build --release -q -p agq
agq=target/release/agq

slug=$($agq device --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["slug"])')
out=${1:-reports-out/$slug}
mkdir -p "$out"
echo "main-job: writing $out" >&2

$agq info > "$out/model.txt"
$agq device > "$out/device.txt"
$agq device --json > "$out/device.json"

echo "main-job: kernels (every variant vs f16 on the model's shapes)" >&2
$agq kernels --json > "$out/kernels.json.tmp" && mv "$out/kernels.json.tmp" "$out/kernels.json"
$agq kernels --quick > "$out/kernels-quick.txt"

echo "main-job: perplexity, first $chunks chunks of WikiText-2 test, plans $plans" >&2
: > "$out/eval.jsonl.tmp"
for p in ${plans//,/ }; do
  $agq eval --plan "$p" --text data/wikitext-2-raw-test.txt --chunks "$chunks" --json >> "$out/eval.jsonl.tmp"
done
mv "$out/eval.jsonl.tmp" "$out/eval.jsonl"

echo "main-job: bench pp512 / tg128, plans $plans" >&2
$agq bench -p 512 -n 128 -t 2 -r 3 --plan "$plans" -o md > "$out/bench.md.tmp"
mv "$out/bench.md.tmp" "$out/bench.md"

python3 - "$out" <<'PY'
import json, sys, os
out = sys.argv[1]
evals = [json.loads(l) for l in open(os.path.join(out, "eval.jsonl")) if l.strip()]
base = {e["plan"]: e["ppl"] for e in evals}
lines = ["# agq main job report", "", "Device: see `device.txt`. Model: see `model.txt`.", "",
         "## Perplexity (WikiText-2 raw test, ctx 512, second half of each chunk scored)", "",
         "| plan | ppl | ± | chunks | tokens scored | vs w4a16 |", "|---|---:|---:|---:|---:|---:|"]
for e in evals:
    rel = f'{e["ppl"] / base["w4a16"]:.3f}x' if "w4a16" in base else "—"
    lines.append(f'| {e["plan"]} | {e["ppl"]:.4f} | {e["ppl_stderr"]:.4f} | {e["chunks"]} | {e["tokens_scored"]} | {rel} |')
lines += ["", "## Throughput (`agq bench`)", "", open(os.path.join(out, "bench.md")).read(),
          "", "## Kernels (quick table; full records in `kernels.json`)", "", "```",
          open(os.path.join(out, "kernels-quick.txt")).read().rstrip(), "```", ""]
tmp = os.path.join(out, "index.md.tmp")
open(tmp, "w").write("\n".join(lines))
os.replace(tmp, os.path.join(out, "index.md"))
PY
echo "main-job: done: $out/index.md" >&2
