#!/usr/bin/env bash
# Creates the DeepLabCut 3 (PyTorch engine, no GUI) virtualenv of the peer benchmark, apart from kpreg's.
#   benchmarks/peers/deeplabcut/setup.sh [VENV]
# VENV defaults to $DLC_VENV, else benchmarks/peers/deeplabcut/.venv (git-ignored by the repo's `.venv/` rule).
# Python: $PYTHON (default python3.11; DeepLabCut 3.0 needs >= 3.10). Versions: $DLC_SPEC (default deeplabcut 3.0.x),
# $TORCH_SPEC / $TORCHVISION_SPEC (default the torch 2.14.1 / torchvision 0.29.1 kpreg is tested with).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="${1:-${DLC_VENV:-$here/.venv}}"
python="${PYTHON:-python3.11}"
dlc_spec="${DLC_SPEC:-deeplabcut>=3.0,<3.1}"
torch_spec="${TORCH_SPEC:-torch==2.14.1}"
torchvision_spec="${TORCHVISION_SPEC:-torchvision==0.29.1}"

if [ ! -x "$venv/bin/python" ]; then
  "$python" -m venv "$venv"
fi
"$venv/bin/python" -m pip install --upgrade pip
# No extras: the `gui` extra (napari, PySide6) and the TensorFlow extras are not needed to train, evaluate and
# analyse videos with the PyTorch engine.
"$venv/bin/python" -m pip install "$dlc_spec" "$torch_spec" "$torchvision_spec"
"$venv/bin/python" - <<'PY'
import deeplabcut, torch, torchvision, timm
print(f"deeplabcut {deeplabcut.__version__}, torch {torch.__version__}, torchvision {torchvision.__version__}, "
      f"timm {timm.__version__}")
PY
echo "DeepLabCut venv ready: $venv"
