#!/usr/bin/env bash
# Installs what building and testing ssmc needs, when it is missing. Safe to run again.
# Sourced by scripts/ssmc and scripts/test.
set -euo pipefail

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"
  elif command -v sudo >/dev/null 2>&1; then sudo "$@"
  else echo "error: '$*' needs root; run it as root or install the packages by hand" >&2; return 1
  fi
}

if ! command -v cargo >/dev/null 2>&1; then
  echo "error: cargo not found. Install Rust (https://rustup.rs), then run this again." >&2
  exit 1
fi

missing=()
# A C toolchain links the generated libraries (cc, ar) and the examples.
command -v cc >/dev/null 2>&1 || missing+=(gcc)
command -v ar >/dev/null 2>&1 || missing+=(binutils)
# LLVM 19 generates the native code (x86-64 and PTX).
[ -x /usr/lib/llvm-19/bin/llvm-config ] || missing+=(llvm-19-dev libpolly-19-dev)
[ -e /usr/include/zstd.h ] || missing+=(libzstd-dev)
[ -e /usr/include/zlib.h ] || missing+=(zlib1g-dev)
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]} (Debian packages)" >&2
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "${missing[@]}" >/dev/null
fi
export LLVM_SYS_191_PREFIX=/usr/lib/llvm-19

# ptxas, CUDA's PTX assembler (PyPI nvidia-cuda-nvcc-cu12), checks in tests/ptx.rs that the
# PTX of every stdlib layer assembles for sm_90. Nothing else needs CUDA; it lives in the
# ignored .venv-ptxas/ of the repository.
ptxas_venv="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/.venv-ptxas"
if ! compgen -G "$ptxas_venv/lib/python3*/site-packages/nvidia/cuda_nvcc/bin/ptxas" >/dev/null; then
  if ! command -v python3 >/dev/null 2>&1 || ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
    echo "setup: installing python3-venv (Debian package) for ptxas" >&2
    as_root apt-get update -qq
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq python3-venv >/dev/null
  fi
  echo "setup: installing ptxas (PyPI nvidia-cuda-nvcc-cu12) into $ptxas_venv" >&2
  rm -rf "$ptxas_venv"
  python3 -m venv "$ptxas_venv"
  "$ptxas_venv/bin/pip" install -q --disable-pip-version-check nvidia-cuda-nvcc-cu12==12.9.86
fi
