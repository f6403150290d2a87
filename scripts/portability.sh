#!/usr/bin/env bash
# The profile and fit tests under two OpenBLAS kernels and two BLAS thread counts: what the suite regenerates
# (profiles, fits, reports) must not depend on the CPU. Prescott is a kernel every x86-64 CPU runs, whose rounding
# differs from the AVX2/AVX-512 kernels OpenBLAS picks by default; thread counts change the order of summation.
#   bash scripts/portability.sh            # all four combinations (about 4 x 4 minutes on 2 cores)
#   bash scripts/portability.sh -k ols     # extra pytest arguments narrow the run
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1
tests=(tests/test_profiles.py tests/test_ols.py tests/test_bayes.py tests/test_law.py tests/test_layers.py)
kernels=(default)
[ "$(uname -m)" = x86_64 ] && kernels+=(Prescott)
status=0
for kernel in "${kernels[@]}"; do
    for threads in 1 2; do
        echo "== OpenBLAS kernel ${kernel}, ${threads} BLAS thread(s)"
        env_args=(OPENBLAS_NUM_THREADS="$threads" OMP_NUM_THREADS="$threads")
        [ "$kernel" != default ] && env_args+=(OPENBLAS_CORETYPE="$kernel")
        env "${env_args[@]}" python -m pytest -q -p no:cacheprovider "${tests[@]}" "$@" || status=1
    done
done
exit $status
