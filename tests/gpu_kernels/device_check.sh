#!/usr/bin/env bash
# The whole GPU check of the CUDA kernels on a machine with a GPU, nvcc, CMake, ninja, pybind11,
# numpy, ml_dtypes, pytest, torch and compute-sanitizer, no TensorFlow and no network: builds the
# TF-free harness, runs its tests, compute-sanitizer (memcheck, racecheck) over a small case of
# every kernel, and the GPU benchmark; writes the logs, gpu_bench.json and gpu_bench.png into
# OUTDIR and ends with one verdict line. Under 8 minutes on an H200 (QUICK=1: well under 2).
#
#   tests/gpu_kernels/device_check.sh OUTDIR
#   QUICK=1 tests/gpu_kernels/device_check.sh OUTDIR     # smaller benchmark, no > 2^31 test
#   CUDA_ARCH=90 (default; the H200's), PYTHON=python3
set -uo pipefail
out=${1:?usage: device_check.sh OUTDIR}
mkdir -p "$out"
out=$(cd "$out" && pwd)
cd "$(dirname "$0")/../.."
PYTHON=${PYTHON:-python3}
build=build/gpu_kernels
failed=()
step() { printf '\n=== %s (%s)\n' "$1" "$(date -u +%H:%M:%S)"; }

step "GPU and tools"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$out/gpu.txt"
nvcc --version | tail -1

step "build the harness"
if cmake -S tests/gpu_kernels -B "$build" -G Ninja -DCMAKE_CUDA_ARCHITECTURES="${CUDA_ARCH:-90}" \
     -Dpybind11_DIR="$("$PYTHON" -m pybind11 --cmakedir)" -DPython_EXECUTABLE="$(command -v "$PYTHON")" \
     >"$out/build.log" 2>&1 && cmake --build "$build" >>"$out/build.log" 2>&1; then
  echo "built: $(ls "$build"/adam_gpu_harness*.so)"
else
  tail -30 "$out/build.log"
  echo "device check: FAIL (the harness did not build; $out/build.log)"
  exit 1
fi
export HARNESS_DIR="$PWD/$build"

step "tests"
select=()
[[ -n "${QUICK:-}" ]] && select=(-k "not 2_31")
"$PYTHON" -m pytest -c tests/gpu_kernels/pytest.ini tests/gpu_kernels -q "${select[@]}" \
  --junitxml="$out/tests.xml" 2>&1 | tee "$out/tests.log" | tail -15
[[ ${PIPESTATUS[0]} -eq 0 ]] || failed+=(tests)

for tool in memcheck racecheck; do
  step "compute-sanitizer --tool $tool"
  if compute-sanitizer --tool "$tool" --error-exitcode 3 "$PYTHON" tests/gpu_kernels/sanitize_cases.py \
       >"$out/sanitizer-$tool.log" 2>&1; then
    tail -2 "$out/sanitizer-$tool.log"
  else
    tail -20 "$out/sanitizer-$tool.log"
    failed+=("$tool")
  fi
done

step "benchmark"
"$PYTHON" tests/gpu_kernels/bench.py --out "$out" ${QUICK:+--quick} 2>&1 | tee "$out/bench.log"
[[ ${PIPESTATUS[0]} -eq 0 ]] || failed+=(benchmark)
missed=$(grep -c "MISSED:" "$out/bench.log" || true)

passed=$(grep -Eo "[0-9]+ passed" "$out/tests.log" | tail -1)
if [[ ${#failed[@]} -eq 0 ]]; then
  echo "device check: PASS ($passed; memcheck and racecheck clean; $missed benchmark target(s) missed; $out)"
else
  echo "device check: FAIL (${failed[*]}; $passed; $missed benchmark target(s) missed; $out)"
  exit 1
fi
