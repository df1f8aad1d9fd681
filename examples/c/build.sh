#!/bin/sh
# Compiles the two C examples; prints each cc line as it runs it.
#
#   examples/c/build.sh ARTIFACT_DIR RUNTIME_LIB_DIR OUT_DIR
#
# ARTIFACT_DIR: what `ssmc build stdlib/mamba1.ssm -o ARTIFACT_DIR` wrote (mamba1.h,
# libmamba1.a); RUNTIME_LIB_DIR: where `cargo build -p ssmc-runtime` put
# libssmc_runtime.a (target/debug, or target/release with --release). CFLAGS overrides
# the compiler flags.
set -eu
if [ $# -ne 3 ]; then
    echo "usage: $0 ARTIFACT_DIR RUNTIME_LIB_DIR OUT_DIR" >&2
    exit 2
fi
art=$1 rt=$2 out=$3
src=$(dirname "$0")
CC=${CC:-cc}
CFLAGS=${CFLAGS:--O2 -std=c11 -Wall -Wextra}
mkdir -p "$out"
set -x
# main: the generated header and static library only (the library needs no libc or libm).
$CC $CFLAGS -I "$art" "$src/main.c" "$src/safetensors.c" "$art/libmamba1.a" -lm -o "$out/main"
# checked: ssmc-runtime's C ABI, which loads the artifact's shared library at run time.
$CC $CFLAGS -I "$src/../../runtime/include" "$src/checked.c" "$src/safetensors.c" "$rt/libssmc_runtime.a" -lpthread -ldl -lm -o "$out/checked"
