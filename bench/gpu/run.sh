#!/usr/bin/env bash
# The fast-path GPU bench (issue 12): the anchor and our text and image benches in ONE device call,
# every figure of one machine and one run, JSON under $OUT. Runs from the repository root:
#
#   bash bench/gpu/run.sh                       # on the GPU machine: about 5 minutes
#   DEVICE=cpu bash bench/gpu/run.sh            # here, on tiny shapes: checks the script end to end
#
# Environment: OUT (default /tmp/pureinfer-gpu), DEVICE (cuda | cpu), ANCHOR_DIR (the folder holding
# gpu_anchor.py and clip-tok/; default .gpu/anchor, then shared/bench, then ../shared/bench),
# INSTALL (1: `pip install --no-deps -e .`; default 1 on cuda, 0 on cpu), SKIP_ANCHOR=1.
# bench/README.md gives the device call (carry list, wheels) and what each JSON holds.
set -uo pipefail
export PYTHONUNBUFFERED=1
DEVICE=${DEVICE:-cuda}
OUT=${OUT:-/tmp/pureinfer-gpu}
mkdir -p "$OUT"
t0=$(date +%s)
say() { echo "[gpu bench +$(( $(date +%s) - t0 ))s] $*" >&2; }

# 1. Packages. The GPU image has torch, transformers and accelerate; diffusers and the web stack
#    (FastAPI, pydantic, uvicorn, ...) travel as wheels in .whl/. The project goes in without its
#    pins (--no-deps): the image's torch stays.
if compgen -G ".whl/*.whl" >/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
if [ "${INSTALL:-$([ "$DEVICE" = cuda ] && echo 1 || echo 0)}" = 1 ]; then
  python3 -m pip install -q --no-deps --no-build-isolation --no-index -e . >&2 || say "pip install -e . failed; using src/"
fi
export PYTHONPATH=$PWD/src${PYTHONPATH:+:$PYTHONPATH}
{ nvidia-smi -L 2>/dev/null || echo "no nvidia-smi"; python3 -c 'import torch, transformers; print("torch", torch.__version__, "transformers", transformers.__version__, "cuda", torch.cuda.is_available())'; } > "$OUT/env.txt" 2>&1
cat "$OUT/env.txt" >&2

if [ "$DEVICE" = cuda ]; then
  TEXT=(--shape qwen2.5-7b --in-memory --dtype bfloat16 --prompt-tokens 64 --max-tokens 256 --decode-tokens 256
        --concurrency 16,64 --max-running 64 --no-baselines)
  IMAGE=(--shape sdxl --size 1024 --steps 20 --batch 4 --requests 4 --modes sequential,batched_fast)
  TINY=0; T_ANCHOR=170; T_TEXT=170; T_IMAGE=150
else
  TEXT=(--shape tiny --prompt-tokens 16 --max-tokens 8 --decode-tokens 16 --concurrency 4,16 --max-running 16
        --no-baselines --cache-dir "$OUT/models")
  IMAGE=(--size 64 --steps 2 --batch 4 --requests 4 --modes sequential,batched_fast)
  TINY=1; T_ANCHOR=300; T_TEXT=300; T_IMAGE=300
fi

# 2. The anchor of this run: transformers' continuous batching (A3) and plain SDXL (B1, B2). The
#    generate() anchors A1/A2 are skipped to fit the call (SKIP_GENERATE=1): no target uses them.
anchor_dir=${ANCHOR_DIR:-}
for d in .gpu/anchor shared/bench ../shared/bench; do
  [ -z "$anchor_dir" ] && [ -f "$d/gpu_anchor.py" ] && anchor_dir=$d
done
if [ "${SKIP_ANCHOR:-0}" != 1 ] && [ -n "$anchor_dir" ]; then
  say "anchor ($anchor_dir/gpu_anchor.py)"
  OUT=$OUT TINY=$TINY SKIP_GENERATE=1 CLIP_TOK=$anchor_dir/clip-tok timeout "$T_ANCHOR" \
    python3 "$anchor_dir/gpu_anchor.py" llm sdxl > "$OUT/anchor.log" 2>&1 || say "anchor: exit $? (see anchor.log)"
else
  say "anchor skipped (no gpu_anchor.py found or SKIP_ANCHOR=1)"
fi

# 3. Text: batch-1 decode vs the copy bandwidth, 16 and 64 concurrent (engine and HTTP).
say "text bench"
timeout "$T_TEXT" python3 -m pureinfer.cli bench text --device "$DEVICE" "${TEXT[@]}" --anchor "$OUT/anchor.json" \
  --out "$OUT/text.json" > /dev/null 2> "$OUT/text.log" || say "text bench: exit $? (see text.log)"

# 4. Image: SDXL 1024², 20 steps, one at a time and batched (one UNet call), peak memory, pixels.
say "image bench"
timeout "$T_IMAGE" python3 -m pureinfer.cli bench image --device "$DEVICE" "${IMAGE[@]}" \
  --out "$OUT/image.json" > /dev/null 2> "$OUT/image.log" || say "image bench: exit $? (see image.log)"

# 5. One summary: our figures, the anchor's, their ratios, the GPU's name.
python3 - "$OUT" <<'PY'
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
def load(name):
    p = out / name
    return json.loads(p.read_text()) if p.exists() else None
anchor, text, image = load("anchor.json"), load("text.json"), load("image.json")
summary = {"device": (anchor or {}).get("device") or (text or {}).get("config", {}).get("device_name"),
           "anchor": anchor, "text_gpu_targets": (text or {}).get("gpu_targets"),
           "text_decode_b1": (text or {}).get("decode_b1"),
           "text_runs": (text or {}).get("runs"), "image_targets": (image or {}).get("targets")}
if anchor and image:
    seq = image["modes"].get("sequential", {}).get("seconds_per_image")
    fast = image["modes"].get("batched_fast", {}).get("seconds_per_image")
    b1, b4 = anchor.get("B1_sdxl_b1_s_per_image"), anchor.get("B2_sdxl_b4_s_per_image")
    summary["image_vs_anchor"] = {"b1_speedup": round(b1 / seq, 2) if b1 and seq else None,
                                  "b4_speedup": round(b4 / fast, 2) if b4 and fast else None}
(out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
t = summary["text_gpu_targets"] or {}
i = summary["image_targets"] or {}
print("device:", summary["device"])
for k in ("decode_b1_bandwidth_fraction", "http_64_tokens_per_s", "http_64_vs_cb_anchor", "ttft_p50_at_16_s"):
    print(f"text  {k:32} {t.get(k)!s:>10}  pass={t.get(k + '_pass')}")
for k in ("sequential_s_per_image", "batched_s_per_image", "peak_memory_gb", "max_abs_diff_uint8", "mean_abs_diff_uint8"):
    print(f"image {k:32} {i.get(k)!s:>10}  pass={i.get(k + '_pass')}")
print("anchor:", {k: v for k, v in (anchor or {}).items() if k[:2] in ("A3", "B1", "B2") or "error" in k})
PY
say "done"
