#!/usr/bin/env bash
# Install configkd and its development tools into the active Python environment.
# A CPU machine without torch gets the pinned CPU build (torch==2.13.0) first, so that no
# requirement can pull a multi-GB CUDA build; a machine with a GPU, or with torch already
# installed (Colab), keeps its own torch.
set -euo pipefail
cd "$(dirname "$0")/.."
py=${PYTHON:-python}
if ! "$py" -c "import torch" 2>/dev/null; then
  if command -v nvidia-smi >/dev/null 2>&1; then
    echo "install: GPU found and no torch: installing torch (CUDA build)"
    "$py" -m pip install --quiet "torch>=2.1"
  else
    echo "install: no GPU and no torch: installing the CPU build torch==2.13.0"
    "$py" -m pip install --quiet "torch==2.13.0"
  fi
fi
"$py" -m pip install --quiet -e ".[dev]"
"$py" -c "import torch, configkd; print(f'install: configkd {configkd.__version__}, torch {torch.__version__}, cuda={torch.cuda.is_available()}')"
