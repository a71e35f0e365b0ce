// The 8-bit states' block loop alone, no TensorFlow: nanoseconds per element of one thread, the
// AVX-512 codec (kernels/cpu_8bit_codec_avx512.h, as the CPU kernels run it on such a CPU) against
// the float32 states' rule (core/adam_update_rule.h) over the same arrays, compiled the same way.
// The figures docs/state_8bit.md ("Speed") gives per element come from this loop:
//
//   g++ -std=c++17 -O3 -ffp-contract=off -fno-math-errno -fno-trapping-math -Icc \
//       tests/scripts/state_8bit_block_loop.cc -o /tmp/block_loop
//   /tmp/block_loop 4096 20000      # elements, repetitions (4,096: the block loop in L1)
//   /tmp/block_loop 16777216 5      # the bench's `large`, from memory
//
// It prints the best repetition of each and their ratio. Needs a CPU with AVX-512 F, BW, DQ and
// VBMI (Ice Lake, Sapphire Rapids, AMD Zen 4 and later).
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <vector>

#include "core/blockwise_8bit.h"
#include "kernels/cpu_8bit_codec_avx512.h"

namespace {

using tf_adam_op::AdamStep;
using Rule = tf_adam_op::Rule<false, false, false, tf_adam_op::WeightDecay::kNone>;
namespace eight_bit = tf_adam_op::eight_bit;

TF_ADAM_OP_AVX512_8BIT __attribute__((noinline)) void EightBitLoop(
    float* var, const float* grad, const eight_bit::States8bit& s, int64_t size,
    const AdamStep<float>& step) {
  eight_bit::Adam8bitBlocks<Rule, float, eight_bit::Avx512Codec>(
      var, grad, s, size, 0, eight_bit::BlockCount(size), step);
}

TF_ADAM_OP_AVX512_8BIT __attribute__((noinline)) void Float32Loop(
    float* var, const float* grad, float* m, float* v, int64_t size, const AdamStep<float>& step) {
  eight_bit::AdamUpdateDecoded<Rule, float, float>(var, grad, m, v, nullptr, size, step);
}

template <typename Fn>
double BestSeconds(int repetitions, Fn&& fn) {
  double best = 1e30;
  for (int r = 0; r < repetitions; ++r) {
    const auto start = std::chrono::steady_clock::now();
    fn();
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (seconds < best) best = seconds;
  }
  return best;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: %s ELEMENTS REPETITIONS\n", argv[0]);
    return 2;
  }
  if (!eight_bit::CpuHasAvx512Codec()) {
    std::fprintf(stderr, "this CPU lacks AVX-512 F/BW/DQ/VBMI: the codec measured here\n");
    return 1;
  }
  const int64_t n = std::atoll(argv[1]);
  const int repetitions = std::atoi(argv[2]);
  std::vector<float> var(n), grad(n), m(n), v(n);
  std::vector<float> m_absmax(eight_bit::BlockCount(n)), v_absmax(eight_bit::BlockCount(n));
  std::vector<uint8_t> m_codes(n), v_codes(n);
  std::mt19937 random(1);
  std::normal_distribution<float> normal;
  for (int64_t i = 0; i < n; ++i) {
    var[i] = normal(random);
    grad[i] = normal(random) * 1e-2f;
  }
  const eight_bit::States8bit states{&eight_bit::SignedCodebook(), &eight_bit::UnsignedCodebook(),
                                     m_codes.data(), m_absmax.data(), v_codes.data(),
                                     v_absmax.data()};
  const AdamStep<float> step =
      tf_adam_op::MakeAdamStep<float>(0.9f, 0.999f, 1e-3f, 0.9f, 0.999f, 1e-7f);
  const double eight_bit_seconds = BestSeconds(
      repetitions, [&] { EightBitLoop(var.data(), grad.data(), states, n, step); });
  const double float32_seconds = BestSeconds(
      repetitions, [&] { Float32Loop(var.data(), grad.data(), m.data(), v.data(), n, step); });
  std::printf("%lld elements, best of %d, one thread: 8-bit states %.3f ns per element, float32 "
              "states %.3f (8-bit / float32: %.2fx)\n",
              static_cast<long long>(n), repetitions, eight_bit_seconds / n * 1e9,
              float32_seconds / n * 1e9, eight_bit_seconds / float32_seconds);
  return 0;
}
