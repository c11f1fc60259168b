#!/usr/bin/env bash
# The GPU measurements this repository has prepared, one device call each, most useful first. A
# lent GPU has 15 minutes of device time in all (its start counts): pick. docs/jpeg-penalty.md,
# docs/recipe-candidates.md and docs/performance.md say what each costs.
#
# Before the first device call, on the session's own machine (../shared does not travel; the
# zip takes most of the 64 MiB that `carry` takes; never commit it):
#     mkdir -p data/shared && cp ../shared/data/cifar10-jpeg-train.zip ../shared/data/cifar10_jpeg.py data/shared/
# then run, with carry ["data/shared"]:
#     bash experiments/gpu_session.sh jpeg          # the JPEG penalty at full scale: 25 runs
#     bash experiments/gpu_session.sh candidates    # the recipe candidates, 5 seeds each: 25 runs
#     bash experiments/gpu_session.sh speed         # the profile and bench.py --variants
# and copy what comes back under $OUT into experiments/measurements/.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-runs/out}
mkdir -p "$OUT"
jpeg_split() {                  # the 40,000 / 10,000 validation split of the JPEG copies
    [ -e data/cifar-jpeg/cifar-10-batches-py/test_batch ] || python data/shared/cifar10_jpeg.py data/cifar-jpeg
}
case "${1:-}" in
  jpeg)        # docs/jpeg-penalty.md: the degraded points at full scale, extrapolated to error 0
    python -m experiments.jpeg_penalty --scale full --shared data/shared --out runs/jpeg_full \
        --errors-from experiments/measurements/jpeg_penalty_small_width32.json
    cp runs/jpeg_full/jpeg_penalty.json "$OUT/jpeg_penalty_full.json"
    cp runs/jpeg_full/jpeg_penalty.png "$OUT/jpeg_penalty_full.png" ;;
  candidates)  # docs/recipe-candidates.md: each candidate against the default, paired by seed
    jpeg_split
    # A series (series.py): stopped by the timeout (SIGTERM), the finished runs are in summary.json
    # and the same command continues it. More than one GPU: torchrun --nproc-per-node=N -m ...
    timeout --signal=TERM 420 python -m experiments.gpu_jpeg_recipe --data-dir data/cifar-jpeg --plan candidates \
        --out runs/candidates || echo "the plan stopped (exit $?): summary.json holds the finished runs"
    cp runs/candidates/summary.json "$OUT/candidates_summary.json"
    (cd runs/candidates && find . -name metrics.json | tar -czf "$OUT/candidates_metrics.tar.gz" -T -) ;;
  speed)       # docs/performance.md: where the time goes, and the fixes side by side
    python -m experiments.profile_gpu --out "$OUT"
    python bench.py --variants --json "$OUT/bench_variants_{gpu}.json" ;;
  *) echo "usage: bash experiments/gpu_session.sh jpeg|candidates|speed" >&2; exit 2 ;;
esac
