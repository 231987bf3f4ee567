# Sourced on the CUDA machine: install what prepare.sh carried into /tmp/site and put it first on the path.
# Without the carry folder (a machine with our venv): only the variables and the repository on the path.
GPU_CARRY=${GPU_CARRY:-.gpu}
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false MAX_JOBS=${MAX_JOBS:-16}
if [ -d "$GPU_CARRY/whl" ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
    "$GPU_CARRY"/whl/*.whl 2>&1 | tail -3
  cp -r "$GPU_CARRY"/site/* /tmp/site/
  export PYTHONPATH=/tmp/site:$PWD
else
  export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
fi
NVCC=$(command -v nvcc || ls /usr/local/cuda*/bin/nvcc 2>/dev/null | head -1)
[ -n "$NVCC" ] && export CUDA_HOME=${CUDA_HOME:-$(dirname "$(dirname "$NVCC")")}  # DeepSpeed's CPU Adam build
