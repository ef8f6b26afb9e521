#!/usr/bin/env bash
# Create or update the project's virtual environment with the pinned stack.
#
# Usage: bash tools/setup_env.sh
#
# Safe to rerun: a stamp file records a hash of the requirement files and the
# package sources, so a second run with nothing changed returns in seconds.
# VENV_DIR (default: .venv in the repository root) and PYTHON (default:
# python3.11, then python3) select where and from which interpreter.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv=${VENV_DIR:-$root/.venv}
python_bin=${PYTHON:-$(command -v python3.11 || command -v python3)}
stamp=$venv/.mmtvmamba-stamp

log() { printf '[setup_env] %s\n' "$*"; }

fingerprint() {
  cat "$root"/requirements/*.txt "$root/setup.py" \
      $(find "$root/mmtvmamba/ops/csrc" -type f 2>/dev/null | sort) \
    | sha256sum | cut -d' ' -f1
}

want=$(fingerprint)
if [[ -f $stamp && $(cat "$stamp") == "$want" ]]; then
  log "environment at $venv is up to date"
  exit 0
fi

if [[ ! -x $venv/bin/python ]]; then
  log "creating virtual environment at $venv with $python_bin"
  "$python_bin" -m venv "$venv"
fi
pip=("$venv/bin/python" -m pip install --disable-pip-version-check)

# torch first: it pulls the newest setuptools, which build.txt then pins
# back to a release that still ships pkg_resources for mmcv's setup.py.
log "installing torch and torchvision"
"${pip[@]}" -r "$root/requirements/torch.txt"

log "installing build tools"
"${pip[@]}" -r "$root/requirements/build.txt"

# mmcv 2.1.0 has no wheel for this torch, so it is built from source. Its
# setup.py passes -std=c++17 but torch 2.14's headers need C++20; the
# compiler wrapper appends -std=c++20, and the last -std flag wins; it also
# drops debug info (-g0), which shortens the build. pip caches the wheel it
# builds, so only the first build on a machine takes long (about 25 minutes
# on 2 cores with debug info).
if ! "$venv/bin/python" -c 'import mmcv.ops' 2>/dev/null; then
  log "building mmcv with full ops from source (first time: 20-30 minutes)"
  cxx20=$venv/bin/cxx20
  printf '#!/bin/sh\nexec %s "$@" -std=c++20 -g0\n' "${CXX:-g++}" > "$cxx20"
  chmod +x "$cxx20"
  CC=$cxx20 CXX=$cxx20 MMCV_WITH_OPS=1 MAX_JOBS=${MAX_JOBS:-$(nproc)} \
    "${pip[@]}" --no-build-isolation -r "$root/requirements/mminstall.txt"
fi

log "installing OpenMMLab packages and test tools"
"${pip[@]}" -r "$root/requirements/runtime.txt" -r "$root/requirements/tests.txt"

log "installing mmtvmamba in editable mode (builds the C++ op)"
"${pip[@]}" --no-build-isolation --use-pep517 --no-deps -e "$root"

"$venv/bin/python" - <<'PY'
import mmcv.ops, mmdet, mmengine, mmpretrain, mmseg, torch, torchvision
import mmtvmamba
print(f'[setup_env] torch {torch.__version__}, torchvision {torchvision.__version__}, '
      f'mmengine {mmengine.__version__}, mmcv {mmcv.__version__}, mmdet {mmdet.__version__}, '
      f'mmpretrain {mmpretrain.__version__}, mmseg {mmseg.__version__}, '
      f'mmtvmamba {mmtvmamba.__version__}')
PY

printf '%s\n' "$want" > "$stamp"
log "environment ready at $venv"
