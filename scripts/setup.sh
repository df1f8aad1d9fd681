#!/usr/bin/env bash
# Installs what building and testing ssmc needs, when it is missing. Safe to run again.
# Sourced by scripts/ssmc and scripts/test.
set -euo pipefail

need_root() {
  if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then sudo "$@"; else
      echo "error: '$*' needs root; run it as root or install the package by hand" >&2; return 1
    fi
  else "$@"; fi
}

if ! command -v cargo >/dev/null 2>&1; then
  echo "error: cargo not found. Install Rust (https://rustup.rs), then run this again." >&2
  exit 1
fi

# A C compiler links the Rust binaries.
if ! command -v cc >/dev/null 2>&1; then
  echo "setup: installing a C toolchain (gcc)" >&2
  need_root apt-get update -qq && need_root apt-get install -y -qq gcc
fi
