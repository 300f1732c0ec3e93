#!/usr/bin/env bash
# The GPU check, for a machine with CUDA and no network:
#
#   bash benchmarks/gpu.sh DATA_DIR WHEEL_DIR
#
# DATA_DIR holds ml-100k/ and ml-1m/ (as ../shared/datasets does); WHEEL_DIR holds wheels of
# what the machine's image lacks (the README's "GPU check" says how to fill it with
# `pip download`). It installs those (no index, no network), puts neucf's source on PYTHONPATH,
# runs `benchmarks/scale.py` on CUDA (u1 and ML-1M to early stop, one ML-25M-sized epoch), then
# the test suite with CUDA as the default device, and prints one table. Each part has its own
# time limit, so one part's failure still leaves the others' results. Results and logs go to
# $OUT (or benchmarks/results). Budget: about 6 minutes (H200: benchmarks 214 s, tests 87 s).
set -uo pipefail
if [ $# -ne 2 ]; then
  echo "usage: bash benchmarks/gpu.sh DATA_DIR WHEEL_DIR" >&2
  exit 2
fi
DATA=$(cd "$1" && pwd) || exit 2
WHEELS=$(cd "$2" && pwd) || exit 2
cd "$(dirname "$0")/.."
OUT_DIR=${OUT:-benchmarks/results}
PY=${PYTHON:-python3}
mkdir -p "$OUT_DIR"

$PY -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'no CUDA device: this is the GPU check')" || exit 1
$PY -c "import torch; print('torch', torch.__version__, 'on', torch.cuda.get_device_name(0))"

# what the image lacks, from the wheel folder only; dependencies the image already has are kept
missing=$($PY - <<'PY'
import importlib.util
need = {"pooch": "pooch", "optuna": "optuna", "fastapi": "fastapi", "uvicorn": "uvicorn",
        "fastapi_offline": "fastapi-offline", "httpx2": "httpx2", "schemathesis": "schemathesis",
        "hypothesis": "hypothesis", "pytest": "pytest", "torchmetrics": "torchmetrics"}
print(" ".join(pkg for module, pkg in need.items() if importlib.util.find_spec(module) is None))
PY
)
if [ -n "$missing" ]; then
  echo "installing from $WHEELS: $missing"
  if ! $PY -m pip install -q --no-index --find-links "$WHEELS" $missing; then
    # an image whose environment cannot be written to: the wheels into a folder of their own
    $PY -m pip install -q --no-index --no-deps --target /tmp/neucf-site "$WHEELS"/*.whl || exit 1
    export PYTHONPATH="/tmp/neucf-site${PYTHONPATH:+:$PYTHONPATH}"
  fi
fi
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
export NEUCF_ML100K="$DATA/ml-100k" NEUCF_ML1M="$DATA/ml-1m" MPLBACKEND=Agg PYTHONUNBUFFERED=1

start=$(date +%s)
timeout "${SCALE_SECONDS:-330}" $PY benchmarks/scale.py --datasets u1,ml1m,syn-25M --epochs 3 --svd-up-to 0 \
  --out "$OUT_DIR/scale_gpu.json" 2>&1 | tee "$OUT_DIR/scale_gpu.txt"
echo "scale: $(( $(date +%s) - start )) s"

# device "auto" is CUDA here: every fit in the suite runs on the GPU (the browser test skips
# without Chromium, saying so)
start=$(date +%s)
# in 8 processes where pytest-xdist is there (the image we expect has it)
workers=$($PY -c "import importlib.util as u; print('-n 8' if u.find_spec('xdist') else '')")
timeout "${TEST_SECONDS:-200}" $PY -m pytest -p no:cacheprovider $workers > "$OUT_DIR/gpu_tests.txt" 2>&1
echo "tests (exit $?): $(( $(date +%s) - start )) s"
grep -E "passed|failed|error" "$OUT_DIR/gpu_tests.txt" | tail -15

echo
echo "== on $($PY -c "import torch; print(torch.cuda.get_device_name(0))") =="
sed -n '/^data /,/peak GPU memory/p' "$OUT_DIR/scale_gpu.txt"
tail -1 "$OUT_DIR/gpu_tests.txt"
