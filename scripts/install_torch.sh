#!/bin/sh
# Install the pinned torch as the right build for this machine (called by `make install` / `make install-dev`).
#   usage: scripts/install_torch.sh PIP REQUIREMENT        e.g. scripts/install_torch.sh .venv/bin/pip torch==2.13.0
# Which index:
#   TORCH_INDEX_URL set (even to nothing)  -> exactly that extra index (empty: pip's configured index only)
#   an NVIDIA GPU (nvidia-smi on PATH)      -> pip's configured index (PyPI: the CUDA build on Linux)
#   no NVIDIA GPU                           -> PyTorch's CPU wheel index as an extra index, so pip picks the
#                                              +cpu wheel instead of PyPI's Linux build with multi-GB CUDA
#                                              libraries; if that index does not answer within 5 s (a machine
#                                              that reaches only PyPI or a local mirror), pip's configured index.
set -eu
PIP=$1
REQ=$2
CPU_INDEX=https://download.pytorch.org/whl/cpu

if [ "${TORCH_INDEX_URL+set}" = set ]; then
    index=$TORCH_INDEX_URL
    why="TORCH_INDEX_URL"
elif command -v nvidia-smi >/dev/null 2>&1; then
    index=
    why="NVIDIA GPU found (nvidia-smi): CUDA build from the configured index"
elif python3 -c "import sys, urllib.request; urllib.request.urlopen(sys.argv[1] + '/torch/', timeout=5)" "$CPU_INDEX" >/dev/null 2>&1; then
    index=$CPU_INDEX
    why="no NVIDIA GPU: CPU wheel"
else
    index=
    why="no NVIDIA GPU, and $CPU_INDEX does not answer: pip's configured index as is"
fi

if [ -n "$index" ]; then
    echo "torch: $REQ from $index ($why)"
    "$PIP" install -q "$REQ" --extra-index-url "$index"
else
    echo "torch: $REQ ($why)"
    "$PIP" install -q "$REQ"
fi
