// What the GPU handlers of the custom calls share (gpu_custom_calls.cc, gpu_8bit_custom_calls.cc):
// CUDA's errors as XLA's, the variables' storage type, the sparse indices checked and sorted on
// the host (as the ops' GPU kernels do with their host-memory indices) and their segments copied
// back.
#ifndef TF_ADAM_OP_XLA_GPU_CALL_COMMON_H_
#define TF_ADAM_OP_XLA_GPU_CALL_COMMON_H_

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "gpu/adam_gpu.h"
#include "gpu/adam_gpu_bodies.h"  // PackSegments
#include "gpu/dtype_of.h"
#include "kernels/indices_in_range.h"
#include "kernels/sparse_segments.h"
#include "xla/call_operands.h"
#include "xla/ffi/api/c_api.h"
#include "xla/ffi/api/ffi.h"

namespace tf_adam_op {
namespace xla_calls {

inline ffi::Error CudaError(const std::string& error, const char* what) {
  if (error.empty()) return ffi::Error::Success();
  return ffi::Error::Internal(gpu::FailureMessage(error, what));
}

// The variables' storage type, from their XLA element type (WithElementType).
inline bool GpuDtype(ffi::DataType type, gpu::Dtype* out) {
  return WithElementType(type, [out](auto t) { *out = gpu::DtypeOf<decltype(t)>(); });
}

// The `n` indices (device memory) copied to the host, checked against `rows` and sorted into
// *out; the stream is waited for.
template <typename Tindex>
ffi::Error SortedValidIndices(void* stream, const void* indices, int64_t n, int64_t rows,
                              SortedSegments* out) {
  std::vector<Tindex> host(n);
  if (n > 0) {
    ffi::Error copied = CudaError(
        gpu::CopyDeviceToHostAndWait(stream, host.data(), indices, n * sizeof(Tindex)),
        "copying the indices");
    if (copied.failure()) return copied;
  }
  const absl::Status valid = ValidateIndices(host.data(), n, rows);
  if (!valid.ok()) return ffi::Error::InvalidArgument(std::string(valid.message()));
  *out = SortIntoSegments(host.data(), n);
  return ffi::Error::Success();
}

// SortedValidIndices for indices of either index type (S32, S64).
inline ffi::Error SortedValidIndices(void* stream, const void* indices, ffi::DataType index_type,
                                     int64_t n, int64_t rows, SortedSegments* out) {
  return index_type == ffi::DataType::S32
             ? SortedValidIndices<int32_t>(stream, indices, n, rows, out)
             : SortedValidIndices<int64_t>(stream, indices, n, rows, out);
}

// What a sparse handler's kernels need in device memory (scratch, freed when the handler
// returns): the sorted segments, packed (gpu::PackSegments) and copied there, and room for the
// summed gradient rows (and v_term's) in the compute type. `packed` is the copy's host source:
// it must live until the stream has been waited for.
struct SparseScratch {
  std::vector<int64_t> packed;
  gpu::SparseSegments segments;
  void* summed;
};

inline ffi::Error PrepareSparseScratch(void* stream, ffi::ScratchAllocator& scratch,
                                       const SortedSegments& segments, ffi::DataType type,
                                       int64_t row_size, bool has_v_term, SparseScratch* out) {
  out->packed = gpu::PackSegments(segments.order, segments.segment_starts, segments.unique_rows);
  const size_t compute_bytes = type == ffi::DataType::F64 ? 8 : 4;
  const size_t summed_bytes = (has_v_term ? 2 : 1) * segments.unique() * row_size * compute_bytes;
  auto packed = scratch.Allocate(std::max<size_t>(out->packed.size(), 1) * sizeof(int64_t), 8);
  auto summed = scratch.Allocate(std::max<size_t>(summed_bytes, 1), 8);
  if (!packed.has_value() || !summed.has_value()) {
    return Internal("no scratch memory for the sparse update");
  }
  out->summed = *summed;
  return CudaError(gpu::UploadSegments(stream, out->packed, static_cast<int64_t*>(*packed),
                                       static_cast<int64_t>(segments.order.size()),
                                       segments.unique(), &out->segments),
                   "copying the sparse segments");
}

}  // namespace xla_calls
}  // namespace tf_adam_op

#endif  // TF_ADAM_OP_XLA_GPU_CALL_COMMON_H_
