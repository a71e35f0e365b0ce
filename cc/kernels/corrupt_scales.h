// Finding a corrupt scale of an 8-bit state (one no step can leave: core/blockwise_8bit.h,
// ValidScale) and the one error message every check gives for it: the TF kernels', the XLA
// handlers' and Check8bitScaleValues'.
#ifndef TF_ADAM_OP_KERNELS_CORRUPT_SCALES_H_
#define TF_ADAM_OP_KERNELS_CORRUPT_SCALES_H_

#include <cstdint>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "core/blockwise_8bit.h"

namespace tf_adam_op {
namespace eight_bit {

// The first block of scales[0, blocks) whose scale is not valid, or -1.
inline int64_t FirstInvalidScale(const float* scales, int64_t blocks) {
  for (int64_t b = 0; b < blocks; ++b) {
    if (!ValidScale(scales[b])) return b;
  }
  return -1;
}

// "<what>: block 3's scale is -1, not a scale an 8-bit state can have ...".
inline std::string CorruptScaleMessage(absl::string_view what, int64_t block, float scale) {
  return absl::StrCat(what, ": block ", block, "'s scale is ", scale,
                      ", not a scale an 8-bit state can have (>= 0 and finite, or NaN): the "
                      "state is corrupt");
}

}  // namespace eight_bit
}  // namespace tf_adam_op

#endif  // TF_ADAM_OP_KERNELS_CORRUPT_SCALES_H_
