#include "python/bandwidth_probe.h"

#include <algorithm>
#include <chrono>
#include <thread>

namespace tf_adam_op {
namespace {

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
// Compiled for the same ISAs as the Adam loop, so the probe is never the slower vector code.
__attribute__((target_clones("avx512f", "avx2", "default")))
#endif
void StreamRange(float* __restrict__ var, float* __restrict__ m, float* __restrict__ v,
                 const float* __restrict__ grad, int64_t begin, int64_t end) {
  for (int64_t i = begin; i < end; ++i) {
    const float g = grad[i];
    var[i] += g;
    m[i] += g;
    v[i] += g;
  }
}

}  // namespace

std::vector<double> BandwidthProbe(int64_t num_elements, int threads, int repeats) {
  threads = std::max(threads, 1);
  std::vector<float> var(num_elements, 1.0f), m(num_elements, 0.0f), v(num_elements, 0.0f),
      grad(num_elements, 1e-3f);
  std::vector<double> seconds;
  for (int r = 0; r < repeats; ++r) {
    const auto start = std::chrono::steady_clock::now();
    std::vector<std::thread> workers;
    const int64_t chunk = (num_elements + threads - 1) / threads;
    for (int t = 0; t < threads; ++t) {
      const int64_t begin = std::min<int64_t>(num_elements, t * chunk);
      const int64_t end = std::min<int64_t>(num_elements, begin + chunk);
      workers.emplace_back(StreamRange, var.data(), m.data(), v.data(), grad.data(), begin, end);
    }
    for (auto& worker : workers) worker.join();
    seconds.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - start)
                          .count());
  }
  return seconds;
}

}  // namespace tf_adam_op
