#include "kernels/cpu_8bit_loop.h"

#include <cstring>
#include <limits>

#include "kernels/cpu_adam_loop.h"  // CpuSimd(): the instruction set in use

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define TF_ADAM_OP_AVX512_CODEC 1
#define TF_ADAM_OP_AVX512 __attribute__((target("avx512f,avx512bw"), flatten))
#else
#define TF_ADAM_OP_AVX512_CODEC 0
#endif

namespace tf_adam_op {
namespace {

using eight_bit::Codebook;
using eight_bit::kBlockSize;

#if TF_ADAM_OP_AVX512_CODEC
// A 256-entry float table (a map's values, or its midpoints) held in 16 registers: a lookup of 16
// indices is 8 two-register permutes (index bits 0-4) and a 3-level select (bits 5-7). Gathers
// would read the table from memory, 16 loads per instruction, several times slower here.
struct RegisterTable {
  __m512 part[16];

  TF_ADAM_OP_AVX512 explicit RegisterTable(const float* table) {
    for (int j = 0; j < 16; ++j) part[j] = _mm512_loadu_ps(table + 16 * j);
  }

  TF_ADAM_OP_AVX512 __m512 Lookup(__m512i index) const {
    __m512 pairs[8];
    for (int k = 0; k < 8; ++k) {
      pairs[k] = _mm512_permutex2var_ps(part[2 * k], index, part[2 * k + 1]);
    }
    for (int bit = 5, count = 8; bit < 8; ++bit, count /= 2) {
      const __mmask16 high = _mm512_test_epi32_mask(index, _mm512_set1_epi32(1 << bit));
      for (int k = 0; k < count / 2; ++k) {
        pairs[k] = _mm512_mask_blend_ps(high, pairs[2 * k], pairs[2 * k + 1]);
      }
    }
    return pairs[0];
  }
};

// The portable codec's arithmetic, 16 floats at a time (core/blockwise_8bit.h for the rule): the
// decode is a table lookup of map values times absmax; the encode computes the same cell of
// x * (1 / absmax) (clamped) and the same midpoint comparison, so the codes are the portable
// codec's. A short block (the tensor's last) goes through the portable functions.
struct Avx512Codec {
  template <typename C>
  TF_ADAM_OP_AVX512 static void Decode(const Codebook& book, const uint8_t* codes, float absmax,
                                       int64_t n, C* x) {
    static_assert(std::is_same<C, float>::value, "the AVX-512 codec is float's");
    if (n != kBlockSize) return eight_bit::DecodeBlock<C>(book, codes, absmax, n, x);
    const RegisterTable values(book.value);
    const __m512 scale = _mm512_set1_ps(absmax);
    for (int64_t i = 0; i < n; i += 16) {
      const __m512i index =
          _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(codes + i)));
      _mm512_storeu_ps(x + i, _mm512_mul_ps(values.Lookup(index), scale));
    }
  }

  template <typename C>
  TF_ADAM_OP_AVX512 static float Encode(const Codebook& book, const C* x, int64_t n,
                                        uint8_t* codes) {
    if (n != kBlockSize) return eight_bit::EncodeBlock<C>(book, x, n, codes);
    const __m512i magnitude_mask = _mm512_set1_epi32(0x7fffffff);
    __m512 largest = _mm512_setzero_ps();
    __mmask16 nonfinite = 0;
    const __m512 float_max = _mm512_set1_ps(std::numeric_limits<float>::max());
    for (int64_t i = 0; i < n; i += 16) {
      const __m512 magnitude = _mm512_castsi512_ps(
          _mm512_and_si512(_mm512_castps_si512(_mm512_loadu_ps(x + i)), magnitude_mask));
      largest = _mm512_max_ps(largest, magnitude);
      nonfinite |= _mm512_cmp_ps_mask(magnitude, float_max, _CMP_NLE_UQ);  // NaN or > max
    }
    const float absmax = _mm512_reduce_max_ps(largest);
    if (nonfinite != 0 || absmax == 0.0f) return eight_bit::EncodeBlock<C>(book, x, n, codes);
    const RegisterTable midpoints(book.midpoint);
    const __m512 inverse = _mm512_set1_ps(1.0f / absmax);
    const __m512 one = _mm512_set1_ps(1.0f), minus_one = _mm512_set1_ps(-1.0f);
    const __m512i lowest = _mm512_set1_epi32(eight_bit::kLowestKey);
    const __m512i cells_per_sign = _mm512_set1_epi32(eight_bit::kCellsPerSign);
    for (int64_t i = 0; i < n; i += 16) {
      // min/max with the constant second: as the scalar clamp for every non-NaN x.
      const __m512 normalized = _mm512_min_ps(
          _mm512_max_ps(_mm512_mul_ps(_mm512_loadu_ps(x + i), inverse), minus_one), one);
      const __m512i bits = _mm512_castps_si512(normalized);
      __m512i key = _mm512_srli_epi32(_mm512_and_si512(bits, magnitude_mask),
                                      eight_bit::kCellShift);
      key = _mm512_sub_epi32(_mm512_max_epu32(key, lowest), lowest);
      const __mmask16 negative = _mm512_cmplt_epi32_mask(bits, _mm512_setzero_si512());
      const __m512i cell = _mm512_mask_add_epi32(key, negative, key, cells_per_sign);
      // The cell table by 16 scalar byte loads (from L1): faster here than a gather.
      alignas(64) uint32_t cells[16];
      alignas(16) uint8_t bases[16];
      _mm512_store_si512(cells, cell);
      for (int j = 0; j < 16; ++j) bases[j] = book.base[cells[j]];
      const __m512i base =
          _mm512_cvtepu8_epi32(_mm_load_si128(reinterpret_cast<const __m128i*>(bases)));
      const __mmask16 above = _mm512_cmp_ps_mask(midpoints.Lookup(base), normalized, _CMP_LT_OQ);
      const __m512i code = _mm512_mask_add_epi32(base, above, base, _mm512_set1_epi32(1));
      _mm_storeu_si128(reinterpret_cast<__m128i*>(codes + i), _mm512_cvtepi32_epi8(code));
    }
    return absmax;
  }
};

template <typename R>
TF_ADAM_OP_AVX512 void FloatBlocksAvx512(float* var, const float* grad,
                                         const eight_bit::States8bit& s, int64_t size,
                                         int64_t first, int64_t last, const AdamStep<float> step) {
  eight_bit::Adam8bitBlocks<R, float, Avx512Codec>(var, grad, s, size, first, last, step);
}
#endif

bool UseAvx512() {
#if TF_ADAM_OP_AVX512_CODEC
  static const bool use = std::strcmp(CpuSimd(), "avx512f") == 0 && __builtin_cpu_supports("avx512bw");
  return use;
#else
  return false;
#endif
}

}  // namespace

bool Cpu8bitVectorised() { return UseAvx512(); }

template <typename T>
void Cpu8bitBlocks(const Variant& variant, T* var, const T* grad, const eight_bit::States8bit& s,
                   int64_t size, int64_t first, int64_t last, const AdamStep<OpMathT<T>>& step) {
  WithDenseRule(variant, [&](auto rule) {
    using R = decltype(rule);
#if TF_ADAM_OP_AVX512_CODEC
    if constexpr (std::is_same<T, float>::value) {
      if (UseAvx512()) return FloatBlocksAvx512<R>(var, grad, s, size, first, last, step);
    }
#endif
    eight_bit::Adam8bitBlocks<R, T>(var, grad, s, size, first, last, step);
  });
}

#define TF_ADAM_OP_INSTANTIATE(T)                                                              \
  template void Cpu8bitBlocks<T>(const Variant&, T*, const T*, const eight_bit::States8bit&,   \
                                 int64_t, int64_t, int64_t, const AdamStep<OpMathT<T>>&);
TF_ADAM_OP_INSTANTIATE(Eigen::half)
TF_ADAM_OP_INSTANTIATE(Eigen::bfloat16)
TF_ADAM_OP_INSTANTIATE(float)
TF_ADAM_OP_INSTANTIATE(double)
#undef TF_ADAM_OP_INSTANTIATE

}  // namespace tf_adam_op
