#!/usr/bin/env bash
# The GPU check, for a machine with CUDA and no network:
#
#   bash benchmarks/gpu.sh DATA_DIR WHEEL_DIR
#
# DATA_DIR holds ml-100k/ and ml-1m/ (as ../shared/datasets does); WHEEL_DIR holds wheels of
# what the machine's image lacks (the README's "GPU check" says how to fill it with
# `pip download`). It installs those and neucf (no index, no network), runs the test suite
# with CUDA as the default device, then the ML-1M and ML-25M-sized epoch benchmark on CUDA,
# and prints one table. Results go to $OUT (or benchmarks/results). Budget: about 6 minutes.
set -euo pipefail
if [ $# -ne 2 ]; then
  echo "usage: bash benchmarks/gpu.sh DATA_DIR WHEEL_DIR" >&2
  exit 2
fi
DATA=$(cd "$1" && pwd)
WHEELS=$(cd "$2" && pwd)
cd "$(dirname "$0")/.."
OUT_DIR=${OUT:-benchmarks/results}
PY=${PYTHON:-python3}

$PY -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'no CUDA device: this is the GPU check')"
$PY -c "import torch; print('torch', torch.__version__, 'on', torch.cuda.get_device_name(0))"

# what the image lacks, from the wheel folder only
missing=$($PY - <<'PY'
import importlib.util
need = {"pooch": "pooch", "optuna": "optuna", "fastapi": "fastapi", "uvicorn": "uvicorn",
        "fastapi_offline": "fastapi-offline", "httpx2": "httpx2", "schemathesis": "schemathesis",
        "hypothesis": "hypothesis", "pytest": "pytest"}
print(" ".join(pkg for module, pkg in need.items() if importlib.util.find_spec(module) is None))
PY
)
if [ -n "$missing" ]; then
  $PY -m pip install -q --no-index --find-links "$WHEELS" $missing
fi
$PY -m pip install -q --no-index --no-build-isolation --no-deps -e .

export NEUCF_ML100K="$DATA/ml-100k" NEUCF_ML1M="$DATA/ml-1m" MPLBACKEND=Agg
mkdir -p "$OUT_DIR"
# device "auto" is CUDA here: every fit in the suite runs on the GPU (the browser test skips
# without Chromium, saying so)
start=$(date +%s)
timeout 200 $PY -m pytest -q -p no:cacheprovider -x 2>&1 | tail -5 | tee "$OUT_DIR/gpu_tests.txt"
echo "tests: $(( $(date +%s) - start )) s"
timeout 200 $PY benchmarks/scale.py --datasets ml1m,syn-25M --epochs 1 --svd-up-to 0 --out "$OUT_DIR/scale_gpu.json"
