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
// A 256-entry float table (a map's values) held in 16 registers: a lookup of 16 indices is 8
// two-register permutes (index bits 0-4) and a 3-level select (bits 5-7). A gather from memory
// decodes 1.6x slower on this project's machine (AMD Zen 4, 2026-12).
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

// The encoder's cell table (core/blockwise_8bit.h: code = base[cell] + (midpoint[base] < x)) with
// the midpoint folded in, so that one 32-bit gather per 16 elements replaces 16 scalar byte lookups
// and a register lookup of the midpoint (the encode 1.5x faster on Zen 4, whose gathers are slow
// but less so than those). Per cell: bits 0-7 the base code; bits 8-22 where
// midpoint[base] lies within the cell, as the low 15 bits of its magnitude (the cell fixes the
// sign, exponent and top 8 mantissa bits, so those 15 bits order the cell's values), mirrored for
// negative cells, whose larger magnitudes are the smaller values; 0x7fff where midpoint[base]
// lies beyond the cell, so that no x of the cell is above it.
class CellEntries {
 public:
  explicit CellEntries(const Codebook& book) {
    for (uint32_t sign = 0; sign < 2; ++sign) {
      for (uint32_t key = eight_bit::kLowestKey; key <= eight_bit::kHighestKey; ++key) {
        const uint32_t cell = sign * eight_bit::kCellsPerSign + (key - eight_bit::kLowestKey);
        const uint32_t base = book.base[cell];
        const uint32_t midpoint = eight_bit::FloatBits(book.midpoint[base]);
        const bool inside = key != eight_bit::kLowestKey && (midpoint >> 31) == sign &&
                            ((midpoint & 0x7fffffffu) >> eight_bit::kCellShift) == key;
        const uint32_t low = midpoint & kLowBits;
        const uint32_t threshold = !inside ? kLowBits : (sign ? kLowBits ^ low : low);
        entry_[cell] = base | (threshold << 8);
      }
    }
  }
  const uint32_t* data() const { return entry_; }

  // The table of one of the two codebooks (built on first use; never freed).
  static const CellEntries& Of(const Codebook& book) {
    static const CellEntries* const of_signed = new CellEntries(eight_bit::SignedCodebook());
    static const CellEntries* const of_unsigned = new CellEntries(eight_bit::UnsignedCodebook());
    return &book == &eight_bit::SignedCodebook() ? *of_signed : *of_unsigned;
  }
  static bool Has(const Codebook& book) {
    return &book == &eight_bit::SignedCodebook() || &book == &eight_bit::UnsignedCodebook();
  }

  static constexpr uint32_t kLowBits = (1u << eight_bit::kCellShift) - 1;

 private:
  uint32_t entry_[2 * eight_bit::kCellsPerSign];
};

// The portable codec's arithmetic, 16 floats at a time (core/blockwise_8bit.h for the rule): the
// decode is a table lookup of map values times absmax; the encode computes the same cell of
// x * (1 / absmax) (clamped) and the same midpoint comparison, so the codes are the portable
// codec's (test_state_8bit_ops.py checks every midpoint's neighbours through the op). A short
// block (the tensor's last), a special one (zero, non-finite) and a codebook other than the two
// host ones go through the portable functions.
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
    if (n != kBlockSize || !CellEntries::Has(book)) {
      return eight_bit::EncodeBlock<C>(book, x, n, codes);
    }
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
    const uint32_t* entries = CellEntries::Of(book).data();
    const __m512 inverse = _mm512_set1_ps(1.0f / absmax);
    const __m512 one = _mm512_set1_ps(1.0f), minus_one = _mm512_set1_ps(-1.0f);
    const __m512i lowest = _mm512_set1_epi32(eight_bit::kLowestKey);
    const __m512i cells_per_sign = _mm512_set1_epi32(eight_bit::kCellsPerSign);
    const __m512i low_bits = _mm512_set1_epi32(CellEntries::kLowBits);
    const __m512i byte = _mm512_set1_epi32(0xff);
    for (int64_t i = 0; i < n; i += 16) {
      // min/max with the constant second: as the scalar clamp for every non-NaN x.
      const __m512 normalized = _mm512_min_ps(
          _mm512_max_ps(_mm512_mul_ps(_mm512_loadu_ps(x + i), inverse), minus_one), one);
      const __m512i bits = _mm512_castps_si512(normalized);
      const __m512i magnitude = _mm512_and_si512(bits, magnitude_mask);
      __m512i key = _mm512_srli_epi32(magnitude, eight_bit::kCellShift);
      key = _mm512_sub_epi32(_mm512_max_epu32(key, lowest), lowest);
      const __mmask16 negative = _mm512_cmplt_epi32_mask(bits, _mm512_setzero_si512());
      const __m512i cell = _mm512_mask_add_epi32(key, negative, key, cells_per_sign);
      const __m512i entry = _mm512_i32gather_epi32(cell, entries, 4);
      // midpoint[base] < x, within the cell: by the low bits (mirrored for a negative x).
      const __m512i low = _mm512_and_si512(magnitude, low_bits);
      const __m512i position = _mm512_mask_xor_epi32(low, negative, low, low_bits);
      const __mmask16 above = _mm512_cmpgt_epu32_mask(position, _mm512_srli_epi32(entry, 8));
      const __m512i base = _mm512_and_si512(entry, byte);
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
