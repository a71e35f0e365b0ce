// The GPU ("CUDA") handlers of the custom calls in custom_calls.h: the CUDA launchers the GPU
// kernels use (gpu/adam_gpu.h), on XLA's stream. Built when the CUDA kernels are. Compiled here;
// not yet run on a GPU (none was available): docs/xla.md.
#include <algorithm>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "core/update_arguments.h"
#include "gpu/adam_gpu.h"
#include "gpu/adam_gpu_bodies.h"
#include "kernels/indices_in_range.h"
#include "kernels/sparse_segments.h"
#include "xla/call_operands.h"
#include "xla/custom_calls.h"
#include "xla/ffi/api/c_api.h"
#include "xla/ffi/api/ffi.h"
#include "xla/gpu_call_common.h"

namespace tf_adam_op {
namespace {

namespace ffi = ::xla::ffi;
using xla_calls::CudaError;
using xla_calls::GpuDtype;
using xla_calls::Internal;
using xla_calls::SortedValidIndices;

ffi::Error DenseAdam(void* stream, ffi::RemainingArgs args, ffi::RemainingRets rets, int64_t n,
                     int64_t amsgrad, int64_t nesterov, int64_t weight_decay,
                     int64_t one_minus_beta) {
  xla_calls::DenseCall call;
  ffi::Error decoded = xla_calls::DecodeDense(args, rets, n, amsgrad, nesterov, weight_decay,
                                              one_minus_beta, &call);
  if (decoded.failure()) return decoded;
  gpu::Dtype dtype;
  if (!GpuDtype(call.type, &dtype)) return Internal("unsupported variable type");
  return CudaError(gpu::LaunchMulti(stream, dtype, call.variant, call.tensors, call.scalars),
                   "the multi-tensor Adam update");
}

ffi::Error SparseAdam(void* stream, ffi::ScratchAllocator scratch, ffi::RemainingArgs args,
                      ffi::RemainingRets rets, int64_t amsgrad, int64_t weight_decay,
                      int64_t one_minus_beta, int64_t lazy, int64_t scale_first,
                      int64_t dense_rule, int64_t has_v_term) {
  xla_calls::SparseCall call;
  ffi::Error decoded = xla_calls::DecodeSparse(args, rets, amsgrad, weight_decay, one_minus_beta,
                                               lazy, scale_first, dense_rule, has_v_term, &call);
  if (decoded.failure()) return decoded;
  gpu::Dtype dtype;
  if (!GpuDtype(call.type, &dtype)) return Internal("unsupported variable type");
  SortedSegments segments;
  // The indices come to the host (they are checked and sorted there, as the GPU kernel of the op
  // does with its host-memory indices), the sorted segments go back in one copy.
  ffi::Error sorted = SortedValidIndices(stream, call.indices, call.index_type, call.n_indices,
                                         call.rows, &segments);
  if (sorted.failure()) return sorted;
  if (call.rows * call.row_size == 0) return ffi::Error::Success();
  xla_calls::SparseScratch on_device;
  ffi::Error prepared = xla_calls::PrepareSparseScratch(stream, scratch, segments, call.type,
                                                        call.row_size, call.v_term != nullptr,
                                                        &on_device);
  if (prepared.failure()) return prepared;
  ffi::Error launched = CudaError(
      gpu::LaunchSparse(stream, dtype, call.lazy, call.variant, call.var, call.m, call.v,
                        call.vhat, call.rows, call.row_size, call.grad, call.v_term,
                        on_device.segments, on_device.summed, call.scalars),
      "the sparse Adam update");
  if (launched.failure()) return launched;
  // The scratch memory is freed, and the copies' sources destroyed, when this returns: the copies
  // and the kernels must have run by then.
  return CudaError(gpu::SynchronizeStream(stream), "the sparse Adam update");
}

// CheckIndicesInRange (check_indices_xla.cc): the index vectors and the row counts come to the
// host, as the sparse call's indices do, to be checked there; the 1.0 goes back.
ffi::Error CheckIndices(void* stream, ffi::RemainingArgs args, ffi::Result<ffi::AnyBuffer> one,
                        std::string_view names) {
  if (args.size() < 2) return Internal("missing operands");
  std::vector<std::vector<int64_t>> host(args.size());  // int64 storage: aligned for either type
  std::vector<IndexList> lists;
  for (size_t i = 0; i < args.size(); ++i) {
    auto buffer = args.get<ffi::AnyBuffer>(i);
    if (!buffer.has_value()) return Internal("missing operand");
    const size_t bytes = buffer->size_bytes();
    host[i].resize((bytes + sizeof(int64_t) - 1) / sizeof(int64_t));
    if (bytes > 0) {
      ffi::Error copied = CudaError(
          gpu::CopyDeviceToHostAndWait(stream, host[i].data(), buffer->untyped_data(), bytes),
          "copying the indices");
      if (copied.failure()) return copied;
    }
    if (i + 1 < args.size()) {
      lists.push_back({host[i].data(), buffer->element_type() == ffi::DataType::S64,
                       static_cast<int64_t>(buffer->element_count())});
    }
  }
  const absl::Status valid =
      CheckIndexLists(lists, host.back().data(), absl::StrSplit(names, '\n'));
  if (!valid.ok()) return ffi::Error::InvalidArgument(std::string(valid.message()));
  static const float kOne = 1.0f;  // static: the copy may still read it after this returns
  return CudaError(gpu::CopyHostToDevice(stream, one->untyped_data(), &kOne, sizeof(kOne)),
                   "writing the index check's result");
}

}  // namespace
}  // namespace tf_adam_op

XLA_FFI_DEFINE_HANDLER(kTfAdamOpCheckIndicesGpu, ::tf_adam_op::CheckIndices,
                       ::xla::ffi::Ffi::Bind()
                           .Ctx<::xla::ffi::PlatformStream<void*>>()
                           .RemainingArgs()
                           .Ret<::xla::ffi::AnyBuffer>()
                           .Attr<std::string_view>(::tf_adam_op::xla_calls::kAttrNames));
XLA_FFI_REGISTER_HANDLER(XLA_FFI_GetApi(), ::tf_adam_op::xla_calls::kCheckIndicesTarget, "CUDA",
                         kTfAdamOpCheckIndicesGpu);

TF_ADAM_OP_DEFINE_XLA_HANDLERS(Ctx<::xla::ffi::PlatformStream<void*>>(),
                               Ctx<::xla::ffi::PlatformStream<void*>>()
                                   .Ctx<::xla::ffi::ScratchAllocator>(),
                               ::tf_adam_op::DenseAdam,
                               ::tf_adam_op::SparseAdam, kTfAdamOpDenseAdamGpu,
                               kTfAdamOpSparseAdamGpu, "CUDA");
