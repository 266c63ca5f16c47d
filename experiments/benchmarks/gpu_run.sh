#!/usr/bin/env bash
# One prepared accelerator session: GPU correctness checks, then the pixel-map throughput
# (paper protocol, 32x32), the gradient step, and the denoiser throughput in bf16.
# Usage: OUT=dir bash experiments/benchmarks/gpu_run.sh   (about 9 minutes in all)
# Runs from the repository root with the machine's own jax/flax (no install).
set -u
OUT=${OUT:-experiments/out/gpu}
mkdir -p "$OUT"
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1 JAX_PLATFORMS=cuda
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
python -c "import jax, flax; print('jax', jax.__version__, 'flax', flax.__version__, jax.devices())" | tee -a "$OUT/gpu.txt"
timeout 120 python -m pytest -q -p no:cacheprovider tests/test_estimate.py \
  -k "fisher_form or completeness or population_mi or compose" 2>&1 | tail -3 | tee "$OUT/gpu_tests.txt"
timeout 180 python -m experiments.benchmarks.pixel_map_throughput --out "$OUT" --sizes 32 --batch 64 \
  --chunk 32768 --train-batch 256 2>&1 | grep -v Warn | tee "$OUT/pixel_maps.txt"
timeout 90 python -m experiments.benchmarks.gradient_step --out "$OUT" 2>&1 | grep -v Warn | tee "$OUT/gradient_step.txt"
timeout 150 python -m experiments.benchmarks.estimator_throughput --out "$OUT" --dtype bfloat16 --large \
  --batches 256,2048,8192 --train-models unet_32x32 --train-batch 256 2>&1 | grep -v Warn | tee "$OUT/bench_bf16.txt"
