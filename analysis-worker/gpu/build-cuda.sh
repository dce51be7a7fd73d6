#!/usr/bin/env bash
# Builds the worker with the `cuda` feature on a machine without a GPU or a CUDA
# toolkit (this project's CI and dev machines), for running on a GPU machine:
#   build-cuda.sh                 build golftracker-worker and the worker bench
#   build-cuda.sh --bundle DIR    also pack them for a GPU machine (see run-bench.sh)
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
bundle=""
while [ $# -gt 0 ]; do
  case "$1" in
    --bundle) bundle=$2; shift 2 ;;
    *) echo "usage: $0 [--bundle DIR]" >&2; exit 2 ;;
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

# Link stubs, regenerated when cudarc (and so the declared functions) changes.
cudarc_src=$(cd "$root" && cargo metadata --format-version 1 --locked --features golftracker-worker/cuda |
  python3 -c 'import json,sys,os; m=json.load(sys.stdin); print(next(os.path.dirname(p["manifest_path"]) for p in m["packages"] if p["name"]=="cudarc"))')
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
bench=$(cargo bench --locked --no-run -p golftracker-worker --features cuda --bench worker \
  --message-format=json | python3 -c 'import json,sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m["target"]["kind"] == ["bench"]: print(m["executable"])')
target=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
worker="$target/release/golftracker-worker"
echo "[cuda] built $worker (compute capability $CUDA_COMPUTE_CAP) and $bench"
[ -n "$bundle" ] || exit 0

# The bundle: binaries, their FFmpeg libraries (GPU machines rarely have Debian 12's
# FFmpeg 5.1), the pose model and the run script, xz-compressed. The C/C++ runtime
# and the CUDA libraries come from the GPU machine.
mkdir -p "$bundle"
libs=$(mktemp -d)
ldd "$worker" | awk '$3 ~ /^\// { print $3 }' |
  grep -v -E '/(libc|libm|libpthread|libdl|librt|libresolv|libgcc_s|libstdc\+\+|ld-linux-x86-64)\.so' |
  while read -r lib; do cp -L "$lib" "$libs/"; done
tar cf - -C "$libs" . | xz -T0 -9 > "$bundle/libs.tar.xz"
rm -rf "$libs"
xz -T0 -9 -c "$worker" > "$bundle/golftracker-worker.xz"
xz -T0 -9 -c "$bench" > "$bundle/worker-bench.xz"
model=$(ls "$cache"/models/*/blazepose_full.safetensors 2>/dev/null | tail -1)
[ -n "$model" ] || { echo "no pose model in $cache/models: run cargo xtask models" >&2; exit 1; }
xz -T0 -9 -c "$model" > "$bundle/blazepose_full.safetensors.xz"
cp "$here/run-bench.sh" "$bundle/"
clip="$root/../shared/data/golf-swing-dtl.mp4"
if [ -f "$clip" ]; then cp "$clip" "$bundle/"; fi
du -sh "$bundle"
