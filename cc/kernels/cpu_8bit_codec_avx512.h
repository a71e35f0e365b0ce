// The 8-bit states' block codec with AVX-512 (F, BW, DQ and VBMI: Ice Lake, Sapphire Rapids,
// AMD Zen 4 and later), for float32 arithmetic: the same codes and values as the portable codec
// (core/blockwise_8bit.h), with no table read per element. Included by cpu_8bit_loop.cc only.
//
//   Decode: the map's 256 float values are held as four byte planes in registers; 64 codes at a
//   time index each plane with two `vpermi2b` (128 bytes each) and a select on the code's top bit,
//   and four byte unpacks put the planes back together as floats.
//   Encode: the nearest code by arithmetic (core/codebook_pieces.h): a piece from the exponent and
//   one exact comparison, then floor(a * slope - offset); the rare value within kPieceBand of a
//   piece's integer is encoded by the portable encoder.
// Measured on this project's machine (AMD Zen 4, one thread, a block in L1, 2026-12-07): decode
// 0.85 -> 0.15 ns per element, encode 0.62-0.9 -> 0.45 (m) and 0.37 (v) against the previous
// codec (a register lookup of 8 permutes per 16 values; a cell-table gather).
#ifndef TF_ADAM_OP_KERNELS_CPU_8BIT_CODEC_AVX512_H_
#define TF_ADAM_OP_KERNELS_CPU_8BIT_CODEC_AVX512_H_

#include <immintrin.h>

#include <cstdint>
#include <limits>
#include <type_traits>

#include "core/blockwise_8bit.h"
#include "core/codebook_pieces.h"

#define TF_ADAM_OP_AVX512_8BIT \
  __attribute__((target("avx512f,avx512bw,avx512dq,avx512vbmi"), flatten))

namespace tf_adam_op {
namespace eight_bit {

inline bool CpuHasAvx512Codec() {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
         __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vbmi");
}

// The portable codec, out of line, for what the registers do not take (a short last block, a
// special block, a value within kPieceBand of a piece's integer): rare, and kept out of the
// `flatten`ed loop, which would otherwise hold a copy of each per state and rule.
#define TF_ADAM_OP_OUT_OF_LINE __attribute__((noinline, cold))
template <typename C>
TF_ADAM_OP_OUT_OF_LINE void DecodeBlockOutOfLine(const Codebook& book, const uint8_t* codes,
                                                 float absmax, int64_t n, C* x) {
  DecodeBlock<C>(book, codes, absmax, n, x);
}
template <typename C>
TF_ADAM_OP_OUT_OF_LINE float EncodeBlockOutOfLine(const Codebook& book, const C* x, int64_t n,
                                                  uint8_t* codes) {
  return EncodeBlock<C>(book, x, n, codes);
}
TF_ADAM_OP_OUT_OF_LINE inline uint8_t EncodeOutOfLine(const Codebook& book, float normalized) {
  return Encode(book, normalized);
}
#undef TF_ADAM_OP_OUT_OF_LINE

// A map's values as byte planes: plane q holds byte q of every value, in four registers.
struct ValuePlanes {
  uint8_t byte[4][256];
  // The order the codes are fed in so that the unpacks' lane-wise interleave puts element i at
  // position i: feeding position 16l + 4q + r the code of element 16q + 4l + r.
  uint8_t feed_order[64];

  explicit ValuePlanes(const Codebook& book) {
    for (int k = 0; k < 256; ++k) {
      const uint32_t bits = FloatBits(book.value[k]);
      for (int q = 0; q < 4; ++q) byte[q][k] = static_cast<uint8_t>(bits >> (8 * q));
    }
    for (int l = 0; l < 4; ++l) {
      for (int q = 0; q < 4; ++q) {
        for (int r = 0; r < 4; ++r) feed_order[16 * l + 4 * q + r] = 16 * q + 4 * l + r;
      }
    }
  }
};

// The tables the codec reads, built on first use and reached through one call kept out of line:
// `flatten` (TF_ADAM_OP_AVX512_8BIT) would otherwise copy every table's builder into each rule's
// loop, and cpu_8bit_loop.cc took minutes to compile instead of seconds.
struct Avx512Tables {
  const Codebook* signed_book = &SignedCodebook();
  const Codebook* unsigned_book = &UnsignedCodebook();
  ValuePlanes signed_planes{SignedCodebook()};
  ValuePlanes unsigned_planes{UnsignedCodebook()};
  const CodebookPieces* signed_pieces = &PiecesOf(true);
  const CodebookPieces* unsigned_pieces = &PiecesOf(false);

  __attribute__((noinline)) static const Avx512Tables& Get() {
    static const Avx512Tables* const tables = new Avx512Tables;  // never freed
    return *tables;
  }
};

// x[0, 256) = map[codes[i]] * absmax.
TF_ADAM_OP_AVX512_8BIT inline void DecodeByPlanes(const ValuePlanes& planes, const uint8_t* codes,
                                                  float absmax, float* x) {
  __m512i plane[4][4];
  for (int q = 0; q < 4; ++q) {
    for (int j = 0; j < 4; ++j) plane[q][j] = _mm512_loadu_si512(planes.byte[q] + 64 * j);
  }
  const __m512i feed_order = _mm512_loadu_si512(planes.feed_order);
  const __m512 scale = _mm512_set1_ps(absmax);
  for (int i = 0; i < kBlockSize; i += 64) {
    const __m512i code = _mm512_permutexvar_epi8(feed_order, _mm512_loadu_si512(codes + i));
    const __mmask64 upper_half = _mm512_movepi8_mask(code);  // code >= 128
    __m512i b[4];
    for (int q = 0; q < 4; ++q) {
      const __m512i lower = _mm512_permutex2var_epi8(plane[q][0], code, plane[q][1]);
      const __m512i upper = _mm512_permutex2var_epi8(plane[q][2], code, plane[q][3]);
      b[q] = _mm512_mask_blend_epi8(upper_half, lower, upper);
    }
    const __m512i low_words = _mm512_unpacklo_epi8(b[0], b[1]);
    const __m512i high_words = _mm512_unpackhi_epi8(b[0], b[1]);
    const __m512i low_words2 = _mm512_unpacklo_epi8(b[2], b[3]);
    const __m512i high_words2 = _mm512_unpackhi_epi8(b[2], b[3]);
    const __m512i value[4] = {
        _mm512_unpacklo_epi16(low_words, low_words2), _mm512_unpackhi_epi16(low_words, low_words2),
        _mm512_unpacklo_epi16(high_words, high_words2),
        _mm512_unpackhi_epi16(high_words, high_words2)};
    for (int k = 0; k < 4; ++k) {
      _mm512_storeu_ps(x + i + 16 * k, _mm512_mul_ps(_mm512_castsi512_ps(value[k]), scale));
    }
  }
}

// Encodes a block of 256 finite values, not all zero, with absmax = their largest |x| (the caller
// handles the special blocks). kSigned: the signed map (its negative half mirrors the positive).
template <bool kSigned>
TF_ADAM_OP_AVX512_8BIT inline void EncodeByPieces(const CodebookPieces& pieces,
                                                  const Codebook& book, const float* x,
                                                  float absmax, uint8_t* codes) {
  const __m512i magnitude_mask = _mm512_set1_epi32(0x7fffffff);
  const __m512 inverse = _mm512_set1_ps(1.0f / absmax);
  const __m512i piece_below = _mm512_loadu_si512(pieces.piece_below);
  const __m512 threshold = _mm512_loadu_ps(pieces.threshold);
  const __m512 slope = _mm512_loadu_ps(pieces.slope), offset = _mm512_loadu_ps(pieces.offset);
  const __m512i last = _mm512_loadu_si512(pieces.last);
  const __m512i zero_code = _mm512_set1_epi32(pieces.zero_code);
  const __m512i first_window = _mm512_set1_epi32(kFirstWindow);
  const __m512i band = _mm512_set1_epi32(static_cast<int32_t>(FloatBits(kPieceBand)));
  for (int i = 0; i < kBlockSize; i += 16) {
    const __m512 normalized = _mm512_mul_ps(_mm512_loadu_ps(x + i), inverse);
    const __m512i bits = _mm512_castps_si512(normalized);
    const __mmask16 negative = _mm512_cmplt_epi32_mask(bits, _mm512_setzero_si512());
    // a = |x| / absmax, which rounding can put an ulp above 1: no clamp needed, the top window
    // reaches to 2 and puts every a above the last threshold in the piece of 1.
    const __m512 a = _mm512_castsi512_ps(_mm512_and_si512(bits, magnitude_mask));
    // (bits >> 24) - 48, at least 0: 16-bit saturation, the upper half of each lane being 0.
    const __m512i window =
        _mm512_subs_epu16(_mm512_srli_epi32(_mm512_castps_si512(a), 24), first_window);
    const __m512 window_threshold = _mm512_permutexvar_ps(window, threshold);
    __mmask16 above = _mm512_cmp_ps_mask(a, window_threshold, _CMP_GT_OQ);
    if (kSigned) above |= _mm512_mask_cmp_ps_mask(negative, a, window_threshold, _CMP_EQ_OQ);
    __m512i piece = _mm512_permutexvar_epi32(window, piece_below);
    piece = _mm512_mask_add_epi32(piece, above, piece, _mm512_set1_epi32(1));
    const __m512 y = _mm512_fmsub_ps(a, _mm512_permutexvar_ps(piece, slope),
                                     _mm512_permutexvar_ps(piece, offset));
    const __m512i count =
        _mm512_min_epi32(_mm512_cvttps_epi32(y), _mm512_permutexvar_epi32(piece, last));
    // |y - nearest integer| < kPieceBand: floor(y) is not certain there.
    const __m512i distance = _mm512_and_si512(
        _mm512_castps_si512(_mm512_reduce_ps(y, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)),
        magnitude_mask);
    const __mmask16 uncertain = _mm512_cmplt_epu32_mask(distance, band);
    __m512i code;
    if (kSigned) {
      code = _mm512_add_epi32(zero_code, count);
      code = _mm512_mask_sub_epi32(code, negative, zero_code, _mm512_min_epi32(count, zero_code));
    } else {
      code = _mm512_maskz_mov_epi32(~negative, count);  // below every midpoint of the map
    }
    _mm_storeu_si128(reinterpret_cast<__m128i*>(codes + i), _mm512_cvtepi32_epi8(code));
    if (__builtin_expect(uncertain != 0, 0)) {
      alignas(64) float lane[16];
      _mm512_store_ps(lane, normalized);
      for (int k = 0; k < 16; ++k) {
        if ((uncertain >> k) & 1) codes[i + k] = EncodeOutOfLine(book, lane[k]);
      }
    }
  }
}

// The codec Adam8bitBlocks takes (the portable one's interface): full blocks of the two maps
// here, everything else (a short last block, a special block) by the portable functions.
struct Avx512Codec {
  template <typename C>
  TF_ADAM_OP_AVX512_8BIT static void Decode(const Codebook& book, const uint8_t* codes,
                                            float absmax, int64_t n, C* x) {
    static_assert(std::is_same<C, float>::value, "the AVX-512 codec is float's");
    const Avx512Tables& tables = Avx512Tables::Get();
    if (n != kBlockSize || !IsMap(tables, book)) {
      return DecodeBlockOutOfLine<C>(book, codes, absmax, n, x);
    }
    DecodeByPlanes(&book == tables.signed_book ? tables.signed_planes : tables.unsigned_planes,
                   codes, absmax, x);
  }

  template <typename C>
  TF_ADAM_OP_AVX512_8BIT static float Encode(const Codebook& book, const C* x, int64_t n,
                                             uint8_t* codes) {
    static_assert(std::is_same<C, float>::value, "the AVX-512 codec is float's");
    const Avx512Tables& tables = Avx512Tables::Get();
    const bool is_signed = &book == tables.signed_book;
    const CodebookPieces& pieces = is_signed ? *tables.signed_pieces : *tables.unsigned_pieces;
    if (n != kBlockSize || !IsMap(tables, book) || !pieces.fits) {
      return EncodeBlockOutOfLine<C>(book, x, n, codes);
    }
    const __m512i magnitude_mask = _mm512_set1_epi32(0x7fffffff);
    const __m512 float_max = _mm512_set1_ps(std::numeric_limits<float>::max());
    __m512 largest = _mm512_setzero_ps();
    __mmask16 nonfinite = 0;
    for (int i = 0; i < kBlockSize; i += 16) {
      const __m512 magnitude = _mm512_castsi512_ps(
          _mm512_and_si512(_mm512_castps_si512(_mm512_loadu_ps(x + i)), magnitude_mask));
      largest = _mm512_max_ps(largest, magnitude);
      nonfinite |= _mm512_cmp_ps_mask(magnitude, float_max, _CMP_NLE_UQ);  // NaN or > max
    }
    const float absmax = _mm512_reduce_max_ps(largest);
    if (nonfinite != 0 || absmax == 0.0f) return EncodeBlockOutOfLine<C>(book, x, n, codes);
    if (is_signed) {
      EncodeByPieces<true>(pieces, book, x, absmax, codes);
    } else {
      EncodeByPieces<false>(pieces, book, x, absmax, codes);
    }
    return absmax;
  }

 private:
  // Whether `book` is one of the two maps the tables are for (one Get per call of the codec).
  static bool IsMap(const Avx512Tables& tables, const Codebook& book) {
    return &book == tables.signed_book || &book == tables.unsigned_book;
  }
};

}  // namespace eight_bit
}  // namespace tf_adam_op

#endif  // TF_ADAM_OP_KERNELS_CPU_8BIT_CODEC_AVX512_H_
