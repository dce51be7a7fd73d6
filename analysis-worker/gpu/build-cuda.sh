#!/usr/bin/env bash
# Builds the worker with the `cuda` feature on a machine without a GPU or a CUDA
# toolkit (this project's CI and dev machines), for running on a GPU machine:
#   build-cuda.sh                 build golftracker-worker, the worker bench and the lib tests
#   build-cuda.sh --bundle DIR    also pack the worker, bench and model for a GPU machine
#   build-cuda.sh --tests DIR     also pack the lib tests (what run-bench.sh runs is what
#                                 the directory holds; one bundle alone fits a 64 MiB copy)
# What it needs, cached outside the clone ($GOLFTRACKER_CACHE, default ~/.cache/golftracker):
# - nvcc and the CUDA headers from NVIDIA's PyPI wheels (cuda-toolchain.txt, hash-checked);
# - link stubs for the CUDA libraries candle links (driver, cuBLAS, cuRAND, NVRTC), as
#   the toolkit's lib64/stubs are: a shared library per soname that defines every
#   function cudarc declares. At run time the GPU machine's real libraries are loaded.
# CUDA_COMPUTE_CAP picks the GPU generation the kernels are compiled for (default 90:
# H100/H200). Needs python3 (pip), a C compiler, cargo; and xz for --bundle.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
cache=${GOLFTRACKER_CACHE:-$HOME/.cache/golftracker}
toolkit="$cache/cuda/13.0.88"
cu="$toolkit/nvidia/cu13"
bundle="" tests=""
while [ $# -gt 0 ]; do
  case "$1" in
    --bundle) bundle=$2; shift 2 ;;
    --tests) tests=$2; shift 2 ;;
    *) echo "usage: $0 [--bundle DIR] [--tests DIR]" >&2; exit 2 ;;
  esac
done

if [ ! -x "$cu/bin/nvcc" ]; then
  echo "[cuda] installing nvcc 13.0 from PyPI into $toolkit"
  tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
  python=python3
  if ! python3 -m pip --version >/dev/null 2>&1; then
    python3 -m venv "$tmp/venv"; python="$tmp/venv/bin/python"
  fi
  "$python" -m pip download --quiet --no-deps --require-hashes --only-binary=:all: \
    --platform manylinux2014_x86_64 --platform manylinux_2_12_x86_64 --python-version 3.11 \
    -r "$here/cuda-toolchain.txt" -d "$tmp/wheels"
  mkdir -p "$toolkit.partial"
  for wheel in "$tmp"/wheels/*.whl; do "$python" -m zipfile -e "$wheel" "$toolkit.partial"; done
  # zipfile drops the executable bits.
  chmod +x "$toolkit.partial"/nvidia/cu13/bin/* "$toolkit.partial"/nvidia/cu13/nvvm/bin/*
  rm -rf "$toolkit"; mv "$toolkit.partial" "$toolkit"
fi

# cudarc's sources (for the stubs) and cargo's target directory, from one metadata call.
{ read -r cudarc_src; read -r target; } < <(cd "$root" &&
  cargo metadata --format-version 1 --locked --features golftracker-worker/cuda |
  python3 -c 'import json,sys,os; m=json.load(sys.stdin)
print(next(os.path.dirname(p["manifest_path"]) for p in m["packages"] if p["name"] == "cudarc"))
print(m["target_directory"])')
# Link stubs, regenerated when cudarc (and so the declared functions) changes.
stubs="$cu/lib/stubs"
if [ "$(cat "$stubs/.cudarc" 2>/dev/null)" != "$cudarc_src" ]; then
  echo "[cuda] link stubs from $cudarc_src"
  rm -rf "$stubs"; mkdir -p "$stubs"
  # module  soname (CUDA 13)
  for pair in "driver libcuda.so.1" "cublas libcublas.so.13" "cublaslt libcublasLt.so.13" \
              "curand libcurand.so.10" "nvrtc libnvrtc.so.13"; do
    read -r module soname <<<"$pair"
    # Every `fn name(` inside an `extern "C" { ... }` block of cudarc's bindings.
    awk '/extern "C" \{/ { inside = 1; next }
         inside && match($0, /^ *fn [A-Za-z0-9_]+\(/) { name = substr($0, RSTART, RLENGTH - 1); sub(/^ *fn /, "", name); print name }
         /^ *\}/ { inside = 0 }' "$cudarc_src/src/$module/sys/mod.rs" |
      sort -u | sed 's/.*/void &(void) {}/' > "$stubs/$module.c"
    [ -s "$stubs/$module.c" ] || { echo "no functions found in cudarc's $module bindings" >&2; exit 1; }
    cc -shared -fPIC -Wl,-soname,"$soname" -o "$stubs/$soname" "$stubs/$module.c"
    ln -sf "$soname" "$stubs/${soname%.so.*}.so"
    ln -sf "stubs/${soname%.so.*}.so" "$cu/lib/${soname%.so.*}.so"
  done
  ln -sf libcudart.so.13 "$cu/lib/libcudart.so"
  echo "$cudarc_src" > "$stubs/.cudarc"
fi

export PATH="$cu/bin:$PATH" CUDA_ROOT="$cu" CUDA_COMPUTE_CAP=${CUDA_COMPUTE_CAP:-90}
cd "$root"
cargo build --release --locked -p golftracker-worker --features cuda --bin golftracker-worker
# The executable cargo built for a target of this kind ("bench", or "lib" built as a test).
executable() {
  python3 -c 'import json,sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m["target"]["kind"] == [sys.argv[1]] and m.get("executable"): print(m["executable"])' "$1"
}
bench=$(cargo bench --locked --no-run -p golftracker-worker --features cuda --bench worker \
  --message-format=json | executable bench)
lib_tests=$(cargo test --release --locked --no-run -p golftracker-worker --features cuda --lib \
  --message-format=json | executable lib)
worker="$target/release/golftracker-worker"
echo "[cuda] built (compute capability $CUDA_COMPUTE_CAP) $worker, $bench and $lib_tests"

# A bundle: the binaries, their FFmpeg libraries (GPU machines rarely have Debian 12's
# FFmpeg 5.1) and the run script, xz-compressed. The C/C++ runtime and the CUDA
# libraries come from the GPU machine.
pack() { # DIR BINARY...
  local dir=$1 libs; shift
  mkdir -p "$dir"
  libs=$(mktemp -d)
  ldd "${1%%=*}" | awk '$3 ~ /^\// { print $3 }' |
    grep -v -E '/(libc|libm|libpthread|libdl|librt|libresolv|libgcc_s|libstdc\+\+|ld-linux-x86-64)\.so' |
    while read -r lib; do cp -L "$lib" "$libs/"; done
  tar cf - -C "$libs" . | xz -T0 -9 > "$dir/libs.tar.xz"
  rm -rf "$libs"
  for binary in "$@"; do xz -T0 -9 -c "${binary%%=*}" > "$dir/${binary#*=}.xz"; done
  cp "$here/run-bench.sh" "$dir/"
}
if [ -n "$tests" ]; then
  pack "$tests" "$lib_tests=worker-tests"
  du -sh "$tests"
fi
if [ -n "$bundle" ]; then
  model=$(ls "$cache"/models/*/blazepose_full.safetensors 2>/dev/null | tail -1)
  [ -n "$model" ] || { echo "no pose model in $cache/models: run cargo xtask models" >&2; exit 1; }
  pack "$bundle" "$worker=golftracker-worker" "$bench=worker-bench" "$model=blazepose_full.safetensors"
  clip="$root/../shared/data/golf-swing-dtl.mp4"
  if [ -f "$clip" ]; then cp "$clip" "$bundle/"; fi
  du -sh "$bundle"
fi
