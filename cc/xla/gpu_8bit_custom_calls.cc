// The GPU ("CUDA") handlers of the 8-bit-state custom calls (custom_calls.h,
// adam_8bit_xla_kernels.cc): the 8-bit CUDA launchers the ops' GPU kernels use
// (gpu/adam_8bit_gpu.h) on XLA's stream, after the same checks, made as those kernels make them
// (kernels/gpu_8bit_functors.h): the scales and the indices are copied to the host and checked
// there before any launch, the sparse update's segments and blocks found there and copied back.
// Built when the CUDA kernels are. Compiled here; not yet run on a GPU (none was available):
// docs/state_8bit.md.
#include <algorithm>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/strings/str_split.h"
#include "core/blockwise_8bit.h"
#include "gpu/adam_8bit_gpu.h"
#include "gpu/adam_gpu.h"
#include "gpu/adam_gpu_bodies.h"
#include "kernels/cpu_8bit_sparse.h"  // BlocksToUpdate
#include "kernels/sparse_segments.h"
#include "xla/call_operands.h"
#include "xla/call_operands_8bit.h"
#include "xla/custom_calls.h"
#include "xla/ffi/api/c_api.h"
#include "xla/ffi/api/ffi.h"
#include "xla/gpu_call_common.h"

namespace tf_adam_op {
namespace {

namespace ffi = ::xla::ffi;
using xla_calls::Call8bit;
using xla_calls::CudaError;
using xla_calls::GpuDtype;
using xla_calls::Internal;
using xla_calls::Variable8bit;

// `n` floats of device memory copied into *host (the stream waited for).
ffi::Error CopyScalesToHost(void* stream, const float* device, int64_t n,
                            std::vector<float>* host) {
  host->resize(n);
  if (n == 0) return ffi::Error::Success();
  return CudaError(gpu::CopyDeviceToHostAndWait(stream, host->data(), device, n * sizeof(float)),
                   "reading the 8-bit states' scales");
}

// xla_calls::CheckScales on host copies of the call's scales.
ffi::Error CheckScalesOnHost(void* stream, const Call8bit& call, bool listed,
                             std::string_view names) {
  Call8bit on_host = call;
  std::vector<std::vector<float>> copies;
  copies.reserve(3 * call.variables.size());  // the pointers below stay valid
  for (Variable8bit& variable : on_host.variables) {
    const int64_t blocks = eight_bit::BlockCount(variable.size);
    for (float** scales : {&variable.states.m_absmax, &variable.states.v_absmax,
                           &variable.states.vhat_absmax}) {
      if (*scales == nullptr) continue;
      copies.emplace_back();
      ffi::Error copied = CopyScalesToHost(stream, *scales, blocks, &copies.back());
      if (copied.failure()) return copied;
      *scales = copies.back().data();
    }
  }
  return xla_calls::CheckScales(on_host, listed, names);
}

// Check8bitScaleValues: each scale vector is copied to the host and checked there; the 1.0 goes
// back.
ffi::Error CheckScaleValues(void* stream, ffi::RemainingArgs args, ffi::Result<ffi::AnyBuffer> one,
                            std::string_view names) {
  const std::vector<std::string> named = absl::StrSplit(names, '\n');
  std::vector<float> host;
  for (size_t i = 0; i < args.size(); ++i) {
    auto scales = args.get<ffi::AnyBuffer>(i);
    if (!scales.has_value()) return Internal("missing scales");
    const int64_t n = static_cast<int64_t>(scales->element_count());
    ffi::Error copied =
        CopyScalesToHost(stream, static_cast<const float*>(scales->untyped_data()), n, &host);
    if (copied.failure()) return copied;
    ffi::Error valid = xla_calls::CheckScaleVector(host.data(), n, i, named);
    if (valid.failure()) return valid;
  }
  static const float kOne = 1.0f;  // static: the copy may still read it after this returns
  return CudaError(gpu::CopyHostToDevice(stream, one->untyped_data(), &kOne, sizeof(kOne)),
                   "writing the scale check's result");
}

ffi::Error DenseAdam8bit(void* stream, ffi::RemainingArgs args, ffi::RemainingRets rets,
                         int64_t amsgrad, int64_t weight_decay, int64_t one_minus_beta,
                         int64_t nesterov, int64_t n, int64_t listed, std::string_view names) {
  Call8bit call;
  ffi::Error decoded =
      xla_calls::Decode8bit(args, rets, n, amsgrad, nesterov, weight_decay, one_minus_beta, &call);
  if (decoded.failure()) return decoded;
  gpu::Dtype dtype;
  if (!GpuDtype(call.type, &dtype)) return Internal("unsupported variable type");
  ffi::Error scales = CheckScalesOnHost(stream, call, listed != 0, names);
  if (scales.failure()) return scales;
  for (const Variable8bit& v : call.variables) {  // one launch per variable, as the op's kernel
    if (v.size == 0) continue;
    ffi::Error launched = CudaError(gpu::LaunchDense8bit(stream, dtype, call.variant, v.var,
                                                         v.grad, v.size, v.states, call.scalars),
                                    "the 8-bit-state Adam update");
    if (launched.failure()) return launched;
  }
  return ffi::Error::Success();
}

ffi::Error SparseAdam8bit(void* stream, ffi::ScratchAllocator scratch, ffi::RemainingArgs args,
                          ffi::RemainingRets rets, int64_t amsgrad, int64_t weight_decay,
                          int64_t one_minus_beta, int64_t lazy, int64_t dense_rule,
                          int64_t has_v_term) {
  xla_calls::SparseCall8bit sparse;
  ffi::Error decoded = xla_calls::DecodeSparse8bit(args, rets, amsgrad, weight_decay,
                                                   one_minus_beta, dense_rule, has_v_term, &sparse);
  if (decoded.failure()) return decoded;
  const Call8bit& call = sparse.call;
  const Variable8bit& variable = call.variables[0];
  gpu::Dtype dtype;
  if (!GpuDtype(call.type, &dtype)) return Internal("unsupported variable type");
  ffi::Error scales = CheckScalesOnHost(stream, call, /*listed=*/false, /*names=*/"");
  if (scales.failure()) return scales;
  SortedSegments segments;
  ffi::Error sorted = xla_calls::SortedValidIndices(stream, sparse.indices, sparse.index_type,
                                                    sparse.n_indices, variable.rows, &segments);
  if (sorted.failure()) return sorted;
  if (variable.size == 0) return ffi::Error::Success();
  const int64_t row_size = variable.size / variable.rows;
  const std::vector<int64_t> blocks =
      BlocksToUpdate(lazy != 0, segments.unique_rows, variable.rows, row_size);
  xla_calls::SparseScratch on_device;
  ffi::Error prepared = xla_calls::PrepareSparseScratch(stream, scratch, segments, call.type,
                                                        row_size, sparse.v_term != nullptr,
                                                        &on_device);
  if (prepared.failure()) return prepared;
  auto device_blocks = scratch.Allocate(std::max<size_t>(blocks.size(), 1) * sizeof(int64_t), 8);
  if (!device_blocks.has_value()) return Internal("no scratch memory for the blocks to update");
  if (!blocks.empty()) {
    ffi::Error copied = CudaError(gpu::CopyHostToDevice(stream, *device_blocks, blocks.data(),
                                                        blocks.size() * sizeof(int64_t)),
                                  "copying the blocks to update");
    if (copied.failure()) return copied;
  }
  ffi::Error launched = CudaError(
      gpu::LaunchSparse8bit(stream, dtype, lazy != 0, call.variant, variable.var, variable.states,
                            variable.rows, row_size, variable.grad, sparse.v_term,
                            on_device.segments, static_cast<const int64_t*>(*device_blocks),
                            static_cast<int64_t>(blocks.size()), on_device.summed, call.scalars),
      "the sparse 8-bit-state Adam update");
  if (launched.failure()) return launched;
  // The scratch memory is freed, and the copies' sources (`blocks`, the packed segments)
  // destroyed, when this returns: the copies and the kernels must have run by then.
  return CudaError(gpu::SynchronizeStream(stream), "the sparse 8-bit-state Adam update");
}

}  // namespace
}  // namespace tf_adam_op

TF_ADAM_OP_DEFINE_8BIT_XLA_HANDLERS(Ctx<::xla::ffi::PlatformStream<void*>>(),
                                    Ctx<::xla::ffi::PlatformStream<void*>>()
                                        .Ctx<::xla::ffi::ScratchAllocator>(),
                                    ::xla::ffi::Ffi::Bind()
                                        .Ctx<::xla::ffi::PlatformStream<void*>>(),
                                    ::tf_adam_op::DenseAdam8bit, ::tf_adam_op::SparseAdam8bit,
                                    ::tf_adam_op::CheckScaleValues, Gpu, "CUDA");
