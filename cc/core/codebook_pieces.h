// A codebook's midpoints as a few affine pieces: what lets the CPU encoder find the nearest code
// with arithmetic instead of a table read per element (kernels/cpu_8bit_codec_avx512.h). Host
// code, no TensorFlow include.
//
// code(x) is the number of midpoints below x (core/blockwise_8bit.h). bitsandbytes' dynamic maps
// are decades of evenly spaced values (1e-7..1e-6, ..., 0.1..1, each finer than the one below), 0
// and 1, and the signed map's negative half is its positive half negated. So, for a = |x| <= 1:
//   - The decade ("piece") a lies in is decided exactly: by comparing a with the midpoint that
//     separates two pieces (a threshold). Which threshold to compare with comes from a's float
//     exponent: a window of two binades (a factor of 4) never holds two thresholds (pieces are a
//     factor of about 10 apart; checked below).
//   - Within a piece the midpoints are evenly spaced, so y = a * slope - offset (one fused
//     multiply-subtract in float32) puts the piece's j-th midpoint at about the integer
//     first + j + 1, where `first` counts the midpoints below the piece, and the count of midpoints
//     below a is floor(y), capped at the piece's `last`. Every midpoint's y is within kPieceBand / 4
//     of its integer (checked below with the encoder's own float operations), and y never decreases
//     as a grows, so wherever y is at least kPieceBand from an integer, floor(y) is the exact count.
//     Within kPieceBand of an integer (about 1 value in 2,000 of random data) the encoder asks the
//     portable encoder instead.
//   - x < 0 (signed map): code = zero_code - (the positive midpoints <= a): the same pieces, with a
//     tie at a threshold counted (the mirror is checked).
// Every check below must hold, or `fits` stays false and the encoder reads the tables for every
// element; tests/test_state_8bit_ops.py asserts that both maps fit.
#ifndef TF_ADAM_OP_CORE_CODEBOOK_PIECES_H_
#define TF_ADAM_OP_CORE_CODEBOOK_PIECES_H_

#include <cmath>
#include <cstdint>
#include <limits>

#include "core/blockwise_8bit.h"

namespace tf_adam_op {
namespace eight_bit {

constexpr int kMaxPieces = 16;
constexpr int kWindows = 16;  // the last one, [0.5, 2), also takes |x| / absmax an ulp above 1
constexpr float kPieceBand = 1.0f / 4096;
// The window of a is (its float bits >> 24) - kFirstWindow, at least 0: two binades per window,
// window 0 holding every a below 2^-29 (the lowest threshold is about 3e-7).
constexpr int32_t kFirstWindow = 48;

struct CodebookPieces {
  bool fits = false;
  int32_t zero_code = 0;  // the code of 0: 127 in the signed map, 0 in the unsigned one
  // Per window: the piece of its lowest a, and the threshold above which a is in the next piece.
  int32_t piece_below[kWindows];
  float threshold[kWindows];
  // Per piece: y = a * slope - offset, and the largest count of the piece.
  float slope[kMaxPieces];
  float offset[kMaxPieces];
  int32_t last[kMaxPieces];
};

// The float32 y the encoder computes (one rounding, as the vector fused multiply-subtract).
inline float PieceY(float a, float slope, float offset) { return std::fmaf(a, slope, -offset); }

inline void BuildCodebookPieces(const Codebook& book, CodebookPieces* pieces) {
  pieces->fits = false;
  int zero = 0;
  while (zero < 256 && book.value[zero] != 0.0f) ++zero;
  if (zero == 256) return;
  pieces->zero_code = zero;
  for (int j = 0; j < zero; ++j) {  // the negative midpoints mirror the positive ones
    if (!(book.midpoint[zero - 1 - j] == -book.midpoint[zero + j])) return;
  }
  // The positive side: values P[0] = 0 .. P[count] = 1, midpoints M[k] between P[k] and P[k + 1].
  const float* P = book.value + zero;
  const float* M = book.midpoint + zero;
  const int count = 255 - zero;
  // Pieces: 0 alone, then one per decade of the values.
  auto decade = [&](int k) {
    return P[k] == 0.0f ? -1000.0 : std::floor(std::log10(static_cast<double>(P[k])));
  };
  int piece_of[256];
  int pieces_used = 1;
  piece_of[0] = 0;
  for (int k = 1; k <= count; ++k) {
    if (decade(k) != decade(k - 1)) ++pieces_used;
    piece_of[k] = pieces_used - 1;
  }
  if (pieces_used > kMaxPieces) return;
  float threshold_of[kMaxPieces + 1];  // [r]: the midpoint between pieces r - 1 and r
  for (int r = 0; r <= kMaxPieces; ++r) threshold_of[r] = std::numeric_limits<float>::infinity();
  for (int r = 0; r < kMaxPieces; ++r) {
    int first = 0;
    while (first <= count && piece_of[first] != r) ++first;
    if (first > count) {  // unused: as the top piece (its last value, 1)
      pieces->slope[r] = 0.0f;
      pieces->offset[r] = -(count + 0.5f);
      pieces->last[r] = count;
      continue;
    }
    int end = first;
    while (end < count && piece_of[end + 1] == r) ++end;
    if (r > 0) threshold_of[r] = M[first - 1];
    pieces->last[r] = end;
    if (end == first) {  // one value: its count, whatever a
      pieces->slope[r] = 0.0f;
      pieces->offset[r] = -(first + 0.5f);
      continue;
    }
    // Least squares in double: the piece's values at first + j + 0.5, its midpoints at first + j + 1.
    double sx = 0, sy = 0, sxx = 0, sxy = 0;
    int points = 0;
    auto add = [&](double x, double y) {
      sx += x, sy += y, sxx += x * x, sxy += x * y, ++points;
    };
    for (int j = first; j <= end; ++j) add(P[j], j + 0.5);
    for (int j = first; j < end; ++j) add(M[j], j + 1.0);
    const double slope = (points * sxy - sx * sy) / (points * sxx - sx * sx);
    pieces->slope[r] = static_cast<float>(slope);
    pieces->offset[r] = static_cast<float>((slope * sx - sy) / points);
    for (int j = first; j < end; ++j) {
      const float y = PieceY(M[j], pieces->slope[r], pieces->offset[r]);
      if (!(std::fabs(static_cast<double>(y) - (j + 1.0)) <= kPieceBand / 4)) return;
    }
    // No floor below the piece's first count: y at its threshold is at least `first`.
    if (!(PieceY(threshold_of[r], pieces->slope[r], pieces->offset[r]) >= first)) return;
  }
  for (int w = 0; w < kWindows; ++w) {
    const float low = w == 0 ? 0.0f : std::ldexp(1.0f, 2 * w - 31);
    const float high = std::ldexp(1.0f, 2 * w - 29);
    int r = 0;
    while (r + 1 < pieces_used && threshold_of[r + 1] < low) ++r;
    pieces->piece_below[w] = r;
    pieces->threshold[w] = threshold_of[r + 1];
    if (!(threshold_of[r + 2 <= kMaxPieces ? r + 2 : kMaxPieces] >= high)) return;  // one per window
  }
  pieces->fits = true;
}

// The pieces of the two maps' codebooks, built on first use (never freed).
inline const CodebookPieces& PiecesOf(bool is_signed) {
  static const CodebookPieces* const of_signed = [] {
    auto* p = new CodebookPieces;
    BuildCodebookPieces(SignedCodebook(), p);
    return p;
  }();
  static const CodebookPieces* const of_unsigned = [] {
    auto* p = new CodebookPieces;
    BuildCodebookPieces(UnsignedCodebook(), p);
    return p;
  }();
  return is_signed ? *of_signed : *of_unsigned;
}

}  // namespace eight_bit
}  // namespace tf_adam_op

#endif  // TF_ADAM_OP_CORE_CODEBOOK_PIECES_H_
