#!/usr/bin/env bash
# Runs on a GPU machine, in a bundle made by build-cuda.sh:
#   run-bench.sh          what the bundle holds: the motion pass's unit tests (--tests
#                         bundle); the real clip (if bundled) with the GPU and with it
#                         hidden, in turns, then the worker benchmark (--bundle bundle)
#   run-bench.sh jit      where a fresh process's first GPU seconds go (the driver
#                         compiling candle's PTX, cached in CUDA_CACHE_PATH)
# Needs the NVIDIA driver, the CUDA 13 cuBLAS and cuRAND libraries (found under
# /opt, /usr/local or /usr/lib, e.g. PyTorch's nvidia wheels) and python3.
set -u
cd "$(dirname "$0")"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
echo "cpus: $(nproc)"
W=${TMPDIR:-/tmp}/golftracker-gpu
# A fresh directory each run: a warm machine keeps /tmp, and a previous bundle's
# worker-tests (or driver cache) would change what this run does and measures.
rm -rf "$W"
mkdir -p "$W/lib"
unxz() { python3 -c "import lzma,shutil,sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2],'wb'))" "$@"; }
python3 -c "import tarfile,sys; tarfile.open(sys.argv[1]).extractall(sys.argv[2])" libs.tar.xz "$W/lib"
for packed in *.xz; do
  [ "$packed" = libs.tar.xz ] || unxz "$packed" "$W/${packed%.xz}"
done
chmod +x "$W"/golftracker-worker "$W"/worker-* 2>/dev/null
dir_of() { dirname "$(find /opt /usr/local /usr/lib -name "$1" 2>/dev/null | head -1)"; }
export LD_LIBRARY_PATH="$W/lib:$(dir_of libcublas.so.13):$(dir_of libcurand.so.10):${LD_LIBRARY_PATH:-}"
if [ -f "$W/worker-tests" ]; then
  ldd "$W/worker-tests" | grep -E 'not found|libcuda|cublas|curand'
  "$W/worker-tests" motion:: --nocapture
  exit $?
fi
ldd "$W/golftracker-worker" | grep -E 'not found|libcuda|cublas|curand'
model="$W/blazepose_full.safetensors"

# label, then env assignments or a wrapper command for the worker
analyze() {
  local label=$1; shift
  local t0; t0=$(date +%s.%N)
  env "$@" "$W/golftracker-worker" analyze golf-swing-dtl.mp4 --json "$W/$label.json" \
    --plot "$W/$label.png" --model "$model" 2> "$W/$label.err"
  local rc=$? t1; t1=$(date +%s.%N)
  echo "$label: exit $rc, $(awk "BEGIN { print $t1 - $t0 }") s"
  grep -E 'motion pass|pose model|done|error' "$W/$label.err"
}

if [ "${1:-}" = jit ]; then
  for i in 1 2; do analyze "no-cache-$i" CUDA_CACHE_DISABLE=1; done
  analyze cold-cache CUDA_CACHE_PATH="$W/cache"
  analyze warm-cache CUDA_CACHE_PATH="$W/cache"
  du -sh "$W/cache"
  analyze cpu CUDA_VISIBLE_DEVICES=
  exit 0
fi

if [ -f golf-swing-dtl.mp4 ]; then
  analyze warm-up
  for i in 1 2 3; do analyze "gpu-$i"; analyze "cpu-$i" CUDA_VISIBLE_DEVICES=; done
  for i in 1 2; do
    analyze "gpu-2-cores-$i" taskset -c 0,1 env RAYON_NUM_THREADS=2
    analyze "cpu-2-cores-$i" taskset -c 0,1 env RAYON_NUM_THREADS=2 CUDA_VISIBLE_DEVICES=
  done
  python3 - "$W" <<'PY'
import json, sys
for label in ["gpu-1", "cpu-1", "gpu-2-cores-1", "cpu-2-cores-1"]:
    r = json.load(open(f"{sys.argv[1]}/{label}.json"))
    print(label, {k: v["frame"] for k, v in r["events"].items()}, "tempo", round(r["tempo_ratio"], 2))
PY
  cp "$W/gpu-1.json" "$W/gpu-1.png" "${OUT:-$W}/" 2>/dev/null
fi
GOLFTRACKER_BENCH_MODEL="$model" GOLFTRACKER_BENCH_WORKER="$W/golftracker-worker" "$W/worker-bench" --bench
