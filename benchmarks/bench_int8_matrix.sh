#!/bin/sh
# One model's row set of the INT8 matrix (issue #10): bench_int8.py (PyTorch / ORT FP32, ORT INT8 default,
# x86-avx2, tensorrt ORT-optimised and simulated-qdq, gated; qemu-x86_64 -cpu Haswell agreement) then
# bench_int8_openvino.py on the same QDQ files (OpenVINO FP32, NNCF INT8, INT8 from the u8 and s8 QDQ graphs).
# Each script times its rows round-robin against PyTorch eager FP32 in its own process, 1 thread.
#   [QEMU_N=100 QEMU_S8_N=30] sh benchmarks/bench_int8_matrix.sh MODEL_FOLDER DATA OUT
set -e
model=$1 data=$2 out=$3
here=$(cd "$(dirname "$0")" && pwd)
py=${PYTHON:-python}
mkdir -p "$out"
export OMP_NUM_THREADS=1 PYTHONPATH="$here/../toolkit:$here${PYTHONPATH:+:$PYTHONPATH}"
flags() { echo "$(date -u +%FT%TZ) flags: $(grep -o -w -E 'avx2|avx512f|avx512_vnni|avx_vnni|amx_tile' /proc/cpuinfo | sort -u | tr '\n' ' ')| $(uptime)"; }
flags | tee "$out/machine.txt"
nice -n 5 "$py" "$here/bench_int8.py" "$model" "$data" --out "$out/bi8" --qemu-n "${QEMU_N:-100}" --qemu-s8-n "${QEMU_S8_N:-30}" 2>&1 | tee "$out/bench_int8.log"
flags | tee -a "$out/machine.txt"
nice -n 5 "$py" "$here/bench_int8_openvino.py" "$model" "$data" --q "$out/bi8" 2>&1 | tee "$out/bench_int8_openvino.log"
flags | tee -a "$out/machine.txt"
