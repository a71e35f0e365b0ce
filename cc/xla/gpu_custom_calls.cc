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
#include "gpu/dtype_of.h"
#include "kernels/indices_in_range.h"
#include "kernels/sparse_segments.h"
#include "xla/call_operands.h"
#include "xla/custom_calls.h"
#include "xla/ffi/api/c_api.h"
#include "xla/ffi/api/ffi.h"

namespace tf_adam_op {
namespace {

namespace ffi = ::xla::ffi;
using xla_calls::Internal;

ffi::Error CudaError(const std::string& error, const char* what) {
  if (error.empty()) return ffi::Error::Success();
  return ffi::Error::Internal(gpu::FailureMessage(error, what));
}

// The variables' storage type, from their XLA element type (xla_calls::WithElementType).
bool GpuDtype(ffi::DataType type, gpu::Dtype* out) {
  return xla_calls::WithElementType(type, [out](auto t) { *out = gpu::DtypeOf<decltype(t)>(); });
}

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

// The indices come to the host (they are checked and sorted there, as the GPU kernel of the op
// does with its host-memory indices), the sorted segments go back in one copy.
template <typename Tindex>
ffi::Error SortedValidIndices(void* stream, const xla_calls::SparseCall& call,
                              SortedSegments* out) {
  std::vector<Tindex> host(call.n_indices);
  if (call.n_indices > 0) {
    ffi::Error copied = CudaError(
        gpu::CopyDeviceToHostAndWait(stream, host.data(), call.indices,
                                     host.size() * sizeof(Tindex)),
        "copying the indices");
    if (copied.failure()) return copied;
  }
  const absl::Status valid = ValidateIndices(host.data(), call.n_indices, call.rows);
  if (!valid.ok()) return ffi::Error::InvalidArgument(std::string(valid.message()));
  *out = SortIntoSegments(host.data(), call.n_indices);
  return ffi::Error::Success();
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
  ffi::Error sorted = call.index_type == ffi::DataType::S32
                          ? SortedValidIndices<int32_t>(stream, call, &segments)
                          : SortedValidIndices<int64_t>(stream, call, &segments);
  if (sorted.failure()) return sorted;
  if (call.rows * call.row_size == 0) return ffi::Error::Success();
  const std::vector<int64_t> packed =
      gpu::PackSegments(segments.order, segments.segment_starts, segments.unique_rows);
  const size_t compute_bytes = call.type == ffi::DataType::F64 ? 8 : 4;
  const size_t summed_bytes =
      (call.v_term ? 2 : 1) * segments.unique() * call.row_size * compute_bytes;
  auto device_segments = scratch.Allocate(std::max<size_t>(packed.size(), 1) * sizeof(int64_t), 8);
  auto summed = scratch.Allocate(std::max<size_t>(summed_bytes, 1), 8);
  if (!device_segments.has_value() || !summed.has_value()) {
    return Internal("no scratch memory for the sparse update");
  }
  gpu::SparseSegments on_device;
  ffi::Error copied = CudaError(
      gpu::UploadSegments(stream, packed, static_cast<int64_t*>(*device_segments),
                          static_cast<int64_t>(segments.order.size()), segments.unique(),
                          &on_device),
      "copying the sparse segments");
  if (copied.failure()) return copied;
  ffi::Error launched = CudaError(
      gpu::LaunchSparse(stream, dtype, call.lazy, call.variant, call.var, call.m, call.v,
                        call.vhat, call.rows, call.row_size, call.grad, call.v_term, on_device,
                        *summed, call.scalars),
      "the sparse Adam update");
  if (launched.failure()) return launched;
  // The scratch memory is freed when this returns: the kernels must have run by then.
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
