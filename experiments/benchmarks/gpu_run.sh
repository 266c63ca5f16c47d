#!/usr/bin/env bash
# One prepared accelerator session (at most about 9 minutes in all): the GPU test subset, the
# pixel-map throughput at 32x32 with the paper's protocol (posterior-mean responses, 24 levels x 50
# samples) and with our default posterior sampler, the stimulus-gradient step, and a short
# paper-scale training (Fig. 4 at 32x32, --full settings with fewer steps) with its edge finding.
# Usage: OUT=dir bash experiments/benchmarks/gpu_run.sh
# Runs from the repository root with the machine's own jax/flax (no install). Tests run in one
# process (-n 0): pytest-xdist workers would each claim the GPU's memory.
set -u
OUT=${OUT:-experiments/out/gpu}
mkdir -p "$OUT"
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1 JAX_PLATFORMS=cuda
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
python -c "import jax, flax; print('jax', jax.__version__, 'flax', flax.__version__, jax.devices())" | tee -a "$OUT/gpu.txt"
timeout 100 python -m pytest -q -n 0 -p no:cacheprovider tests/estimate/test_estimate.py tests/diffusion/test_zeroshot.py \
  -k "fisher_form or completeness or population_mi or compose or particles_ilocal_matches_exact_mixture" 2>&1 \
  | tail -3 | tee "$OUT/gpu_tests.txt"
timeout 170 python -m experiments.benchmarks.pixel_map_throughput --out "$OUT" --sizes 32 --batch 64 \
  --chunk 32768 --train-batch 256 2>&1 | grep -v Warn | tee "$OUT/pixel_maps.txt"
timeout 60 python -m experiments.benchmarks.gradient_step --out "$OUT" 2>&1 | grep -v Warn | tee "$OUT/gradient_step.txt"
timeout 200 python -m experiments.fig4_digits --full --steps 4000 --out "$OUT/fig4_full" 2>&1 | grep -v Warn \
  | tail -20 | tee "$OUT/fig4_full.txt"
