// 8-bit optimizer states: bitsandbytes' block-wise scheme, written once for every path (the CPU
// kernels, the CUDA kernels' bodies, the TF-free module). No TensorFlow include may appear here.
//
// A state tensor of n elements (m, v, AMSGrad's vhat) is kept as n codes (uint8) and one float32
// scale per block of 256 consecutive elements of the flat tensor (absmax, the block's largest |x|),
// exactly bitsandbytes' layout: element i stands for map[code[i]] * absmax[i / 256], with the
// signed dynamic map for m and the unsigned one for v and vhat (core/dynamic_maps.h).
//
// One step of a block: decode its states to the arithmetic type, run the optimizer family's own
// rule on them (core/adam_update_rule.h, unchanged), then re-encode: the new absmax is the block's
// largest |x| and each x gets the code whose value is nearest to x * (1 / absmax) (clamped to
// [-1, 1]; an exact tie takes the lower code). That is bitsandbytes' CUDA rule; its CPU quantizer
// looks the code up in a 65,536-bin table instead, which cannot tell apart the map's codes below
// about 3e-5 (docs/state_8bit.md says where codes differ). Special blocks:
//   all zero: absmax 0, every code 0 (bitsandbytes does the same; code 0 times 0 decodes to 0);
//   a NaN or an infinity anywhere in the block: absmax NaN and codes 0, so the whole block decodes
//   to NaN from then on: a non-finite state sticks as it does in float32 Adam, but per block.
// A stored absmax is valid when it is >= 0 or NaN; a negative or infinite one cannot come from a
// step and is refused before anything is written (kernels' validation, ValidScale below).
#ifndef TF_ADAM_OP_CORE_BLOCKWISE_8BIT_H_
#define TF_ADAM_OP_CORE_BLOCKWISE_8BIT_H_

#include <cfloat>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>

#include "core/adam_update_rule.h"
#include "core/dynamic_maps.h"

// In CUDA code the block codec is a call, not inlined: inlined three times (m, v, vhat) into each
// of the 120 kernels (rules x dtypes), it made adam_8bit_gpu.cu take 4 minutes to compile instead
// of 8 seconds. A call handles a whole block of 256 elements, so its cost is small beside the
// work (not yet timed on a GPU).
#if defined(__CUDACC__)
#define TF_ADAM_OP_8BIT_CODEC_INLINE __noinline__
#else
#define TF_ADAM_OP_8BIT_CODEC_INLINE inline
#endif

namespace tf_adam_op {
namespace eight_bit {

constexpr int64_t kBlockSize = 256;

TF_ADAM_OP_HOST_DEVICE inline int64_t BlockCount(int64_t elements) {
  return (elements + kBlockSize - 1) / kBlockSize;
}

// The largest finite value of the arithmetic type (<cfloat>: usable in CUDA device code, which
// std::numeric_limits is not without --expt-relaxed-constexpr).
template <typename C>
TF_ADAM_OP_HOST_DEVICE inline C LargestFinite() {
  return sizeof(C) == sizeof(double) ? C(DBL_MAX) : C(FLT_MAX);
}

// Whether a stored absmax can have come from a step (>= 0, or NaN for a poisoned block).
TF_ADAM_OP_HOST_DEVICE inline bool ValidScale(float absmax) {
  return absmax != absmax || (absmax >= 0.0f && absmax <= FLT_MAX);
}

// --- Nearest code, exactly, in two table reads --------------------------------------------------
// code(x) = the number of midpoints (between consecutive map values) strictly below x. The float
// range [-1, 1] is cut into cells by x's bit pattern (sign, exponent and the top 8 mantissa bits;
// every |x| below 2^-30 shares one cell per sign): each cell holds at most one midpoint (checked
// when the table is built, see Codebook::exact), so code(x) = base[cell] + (midpoint[base] < x),
// where base[cell] counts the midpoints below the cell.
constexpr uint32_t kMantissaBitsKept = 8;
constexpr uint32_t kCellShift = 23 - kMantissaBitsKept;
constexpr uint32_t kLowestKey = (127u - 30u) << kMantissaBitsKept;  // |x| = 2^-30
constexpr uint32_t kHighestKey = 127u << kMantissaBitsKept;         // |x| = 1
constexpr uint32_t kCellsPerSign = kHighestKey - kLowestKey + 1;

TF_ADAM_OP_HOST_DEVICE inline uint32_t FloatBits(float x) {
#if defined(__CUDA_ARCH__)
  return __float_as_uint(x);
#else
  uint32_t bits;
  std::memcpy(&bits, &x, sizeof bits);
  return bits;
#endif
}
TF_ADAM_OP_HOST_DEVICE inline float BitsFloat(uint32_t bits) {
#if defined(__CUDA_ARCH__)
  return __uint_as_float(bits);
#else
  float x;
  std::memcpy(&x, &bits, sizeof x);
  return x;
#endif
}

// The cell of x in [-1, 1] (not NaN).
TF_ADAM_OP_HOST_DEVICE inline uint32_t CellOf(float x) {
  const uint32_t bits = FloatBits(x);
  uint32_t key = (bits & 0x7fffffffu) >> kCellShift;
  key = key < kLowestKey ? kLowestKey : key;
  return (bits >> 31) * kCellsPerSign + (key - kLowestKey);
}

struct Codebook {
  float value[256];
  float midpoint[256];                 // midpoint[k] between value[k] and value[k + 1]; [255] = +inf
  uint8_t base[2 * kCellsPerSign];     // midpoints below each cell (15 KiB: stays in L1)
  bool exact;                          // every cell holds at most one midpoint
};

// Builds the tables of `map` (256 increasing values). Host code, run once per map.
inline void BuildCodebook(const float* map, Codebook* book) {
  for (int k = 0; k < 256; ++k) book->value[k] = map[k];
  for (int k = 0; k < 255; ++k) book->midpoint[k] = 0.5f * (map[k] + map[k + 1]);  // as bitsandbytes
  book->midpoint[255] = std::numeric_limits<float>::infinity();
  book->exact = true;
  for (uint32_t sign = 0; sign < 2; ++sign) {
    for (uint32_t key = kLowestKey; key <= kHighestKey; ++key) {
      // The cell's magnitudes: [low, high] (the lowest cell reaches down to 0).
      const float low = key == kLowestKey ? 0.0f : BitsFloat(key << kCellShift);
      const float high = BitsFloat((key << kCellShift) | ((1u << kCellShift) - 1));
      const float x_min = sign ? -high : low, x_max = sign ? -low : high;
      int below = 0;
      while (below < 255 && book->midpoint[below] < x_min) ++below;
      book->base[sign * kCellsPerSign + (key - kLowestKey)] = static_cast<uint8_t>(below);
      // A second midpoint below x_max would be missed.
      if (below < 254 && book->midpoint[below + 1] < x_max) book->exact = false;
    }
  }
}

// The nearest code of `normalized` (clamped to [-1, 1]; not NaN).
TF_ADAM_OP_HOST_DEVICE inline uint8_t Encode(const Codebook& book, float normalized) {
  const float x = normalized < -1.0f ? -1.0f : (normalized > 1.0f ? 1.0f : normalized);
  const int base = book.base[CellOf(x)];
  return static_cast<uint8_t>(base + (book.midpoint[base] < x ? 1 : 0));
}

// The same by counting midpoints one by one: the definition, for tests and table checks.
inline uint8_t EncodeBySearch(const Codebook& book, float normalized) {
  const float x = normalized < -1.0f ? -1.0f : (normalized > 1.0f ? 1.0f : normalized);
  int code = 0;
  while (code < 255 && book.midpoint[code] < x) ++code;
  return static_cast<uint8_t>(code);
}

// The codebook of a map, built on first use (host; a CUDA kernel gets copies in device memory).
template <const float* kMap>
inline const Codebook& CodebookOf() {
  static const Codebook* const book = [] {
    auto* b = new Codebook;  // never freed: used until the process ends
    BuildCodebook(kMap, b);
    return b;
  }();
  return *book;
}
inline const Codebook& SignedCodebook() { return CodebookOf<kSignedDynamicMap>(); }
inline const Codebook& UnsignedCodebook() { return CodebookOf<kUnsignedDynamicMap>(); }

// --- One block ----------------------------------------------------------------------------------

// x[i] = map[codes[i]] * absmax for i < n, in the arithmetic type C.
template <typename C>
TF_ADAM_OP_HOST_DEVICE TF_ADAM_OP_8BIT_CODEC_INLINE void DecodeBlock(
    const Codebook& book, const uint8_t* codes, float absmax, int64_t n, C* x) {
  const C scale = static_cast<C>(absmax);
  for (int64_t i = 0; i < n; ++i) x[i] = static_cast<C>(book.value[codes[i]]) * scale;
}

// A block is mapped onto [-1, 1] as x * (1 / absmax), as bitsandbytes does. Below kTinyAbsmax
// (only denormal values: 1 / absmax overflows float below 2^-128, and 0 * inf would be NaN) x and
// absmax are first multiplied by 2^64, exactly, so that the reciprocal is finite; wherever the
// plain reciprocal is finite the scaled product has the same bits (the exact product is the same).
constexpr float kTinyAbsmax = 0x1p-100f;
template <typename C>
TF_ADAM_OP_HOST_DEVICE inline C NormalizingPrescale(float absmax) {
  return absmax < kTinyAbsmax ? C(0x1p64f) : C(1);
}

// Encodes x[0, n) into codes and returns the block's new absmax (see the file comment).
template <typename C>
TF_ADAM_OP_HOST_DEVICE TF_ADAM_OP_8BIT_CODEC_INLINE float EncodeBlock(
    const Codebook& book, const C* x, int64_t n, uint8_t* codes) {
  C largest = C(0);
  bool finite = true;
  for (int64_t i = 0; i < n; ++i) {
    const C magnitude = x[i] < C(0) ? -x[i] : x[i];
    largest = largest < magnitude ? magnitude : largest;
    finite = finite && magnitude <= LargestFinite<C>();  // false for NaN and inf
  }
  // A double state's absmax is stored as float: rounded, |x| * (1 / absmax) may exceed 1 by an
  // ulp, which the clamp in Encode absorbs; one beyond float's range poisons the block as inf does.
  const float absmax = static_cast<float>(largest);
  if (!finite || !(absmax <= FLT_MAX)) {
    for (int64_t i = 0; i < n; ++i) codes[i] = 0;
    return BitsFloat(0x7fc00000u);  // a quiet NaN
  }
  if (absmax == 0.0f) {
    for (int64_t i = 0; i < n; ++i) codes[i] = 0;
    return 0.0f;
  }
  const C prescale = NormalizingPrescale<C>(absmax);
  const C inverse = C(1) / (static_cast<C>(absmax) * prescale);
  for (int64_t i = 0; i < n; ++i) {
    codes[i] = Encode(book, static_cast<float>(x[i] * prescale * inverse));
  }
  return absmax;
}

// The 8-bit states of one tensor: codes and per-block scales of m, v and (AMSGrad) vhat, and the
// codebooks (signed for m, unsigned for v and vhat) in the memory of the device that runs it.
struct States8bit {
  const Codebook* signed_book;
  const Codebook* unsigned_book;
  uint8_t* m_codes;
  float* m_absmax;
  uint8_t* v_codes;
  float* v_absmax;
  uint8_t* vhat_codes = nullptr;  // null without AMSGrad
  float* vhat_absmax = nullptr;
};

// Scratch for one block's decoded states.
template <typename C>
struct BlockStates {
  C m[kBlockSize];
  C v[kBlockSize];
  C vhat[kBlockSize];
};

// The portable encoder and decoder (the CPU kernels have a vectorised pair with the same results,
// kernels/cpu_8bit_loop.cc; a kernel picks one as the template argument `Codec`).
struct PortableCodec {
  template <typename C>
  TF_ADAM_OP_HOST_DEVICE static void Decode(const Codebook& book, const uint8_t* codes, float absmax,
                                            int64_t n, C* x) {
    DecodeBlock<C>(book, codes, absmax, n, x);
  }
  template <typename C>
  TF_ADAM_OP_HOST_DEVICE static float Encode(const Codebook& book, const C* x, int64_t n,
                                             uint8_t* codes) {
    return EncodeBlock<C>(book, x, n, codes);
  }
};

template <typename R, typename Codec, typename C>
TF_ADAM_OP_HOST_DEVICE inline void DecodeStates(const States8bit& s, int64_t block, int64_t offset,
                                                int64_t n, BlockStates<C>* x) {
  Codec::template Decode<C>(*s.signed_book, s.m_codes + offset, s.m_absmax[block], n, x->m);
  Codec::template Decode<C>(*s.unsigned_book, s.v_codes + offset, s.v_absmax[block], n, x->v);
  if (R::amsgrad) {
    Codec::template Decode<C>(*s.unsigned_book, s.vhat_codes + offset, s.vhat_absmax[block], n,
                              x->vhat);
  }
}

template <typename R, typename Codec, typename C>
TF_ADAM_OP_HOST_DEVICE inline void EncodeStates(const BlockStates<C>& x, int64_t block,
                                                int64_t offset, int64_t n, const States8bit& s) {
  s.m_absmax[block] = Codec::template Encode<C>(*s.signed_book, x.m, n, s.m_codes + offset);
  s.v_absmax[block] = Codec::template Encode<C>(*s.unsigned_book, x.v, n, s.v_codes + offset);
  if (R::amsgrad) {
    s.vhat_absmax[block] =
        Codec::template Encode<C>(*s.unsigned_book, x.vhat, n, s.vhat_codes + offset);
  }
}

// The dense rule on n elements whose states are decoded (restrict pointers: it vectorises as the
// float32 states' loop does).
template <typename R, typename T, typename C>
TF_ADAM_OP_HOST_DEVICE inline void AdamUpdateDecoded(T* __restrict__ var, const T* __restrict__ grad,
                                                     C* __restrict__ m, C* __restrict__ v,
                                                     C* __restrict__ vhat, int64_t n,
                                                     const AdamStep<C>& step) {
  for (int64_t i = 0; i < n; ++i) {
    AdamUpdateElement<R, T, C, C>(var + i, m + i, v + i, R::amsgrad ? vhat + i : nullptr, grad[i],
                                  step);
  }
}

// Blocks [first, last) of a dense update of `size` elements: decode, the dense rule on every
// element (AdamUpdateElement, the float32 states' rule), encode.
template <typename R, typename T, typename Codec = PortableCodec, typename C = OpMathT<T>>
TF_ADAM_OP_HOST_DEVICE inline void Adam8bitBlocks(T* var, const T* grad, const States8bit& s, int64_t size,
                           int64_t first, int64_t last, const AdamStep<C>& step) {
  BlockStates<C> x;
  for (int64_t block = first; block < last; ++block) {
    const int64_t offset = block * kBlockSize;
    const int64_t n = size - offset < kBlockSize ? size - offset : kBlockSize;
    DecodeStates<R, Codec, C>(s, block, offset, n, &x);
    AdamUpdateDecoded<R, T, C>(var + offset, grad + offset, x.m, x.v, x.vhat, n, step);
    EncodeStates<R, Codec, C>(x, block, offset, n, s);
  }
}

// One block of a sparse update: `grad_of(i)` is the summed gradient of flat element i (a pointer
// in C, null for an element whose row has no gradient) and `v_term_of(i)` its v term (null unless
// the rule needs one); `updates(i)` says whether element i is updated at all (lazy mode: only the
// named rows' elements; the block's other elements keep their values and are re-encoded with the
// block's new absmax).
template <typename R, typename T, typename C, typename GradOf, typename VTermOf, typename Updates>
TF_ADAM_OP_HOST_DEVICE inline void Adam8bitSparseBlock(T* var, const States8bit& s, int64_t size, int64_t block,
                                const AdamStep<C>& step, GradOf grad_of, VTermOf v_term_of,
                                Updates updates, BlockStates<C>* x) {
  const int64_t offset = block * kBlockSize;
  const int64_t n = size - offset < kBlockSize ? size - offset : kBlockSize;
  DecodeStates<R, PortableCodec, C>(s, block, offset, n, x);
  for (int64_t i = 0; i < n; ++i) {
    const int64_t element = offset + i;
    if (!updates(element)) continue;
    AdamSparseElement<R, T, C, C>(var + element, x->m + i, x->v + i,
                                  R::amsgrad ? x->vhat + i : nullptr, grad_of(element),
                                  v_term_of(element), step);
  }
  EncodeStates<R, PortableCodec, C>(*x, block, offset, n, s);
}

}  // namespace eight_bit
}  // namespace tf_adam_op

#endif  // TF_ADAM_OP_CORE_BLOCKWISE_8BIT_H_
