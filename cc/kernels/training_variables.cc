#define EIGEN_USE_THREADS

#include "kernels/training_variables.h"

#include <algorithm>
#include <utility>

#include "tensorflow/core/framework/resource_mgr.h"
#include "tensorflow/core/framework/tensor_shape.h"
#include "absl/functional/function_ref.h"
#include "unsupported/Eigen/CXX11/Tensor"
#include "absl/strings/str_cat.h"

namespace tf_adam_op {

using ::tensorflow::DataTypeString;
using ::tensorflow::DT_RESOURCE;
using ::tensorflow::HandleFromInput;
using ::tensorflow::LookupResource;

namespace {

// A handle (a scalar input, or one element of a packed input) resolved to its Var. HandleFromInput
// would CHECK-fail on a non-scalar handle
// tensor, so the shape is checked first. A missing resource is FailedPrecondition, as TF's own
// ReadVariableOp reports it: in a TF1 graph an uninitialized variable has no resource yet, and TF
// cannot tell that apart from a deleted one.
absl::Status LookupVariable(OpKernelContext* ctx, const VariableInput& input,
                            absl::FunctionRef<std::string()> name,
                            tensorflow::core::RefCountPtr<Var>* var) {
  const Tensor& handles = ctx->input(input.index);
  if (input.element < 0 && !tensorflow::TensorShapeUtils::IsScalar(handles.shape())) {
    return absl::InvalidArgumentError(absl::StrCat(
        name(), " must be a scalar resource handle, got shape ", handles.shape().DebugString()));
  }
  // Packed inputs were checked by the kernel to hold one handle per variable.
  const tensorflow::ResourceHandle& handle =
      input.element < 0 ? HandleFromInput(ctx, input.index)
                        : handles.flat<tensorflow::ResourceHandle>()(input.element);
  const absl::Status status = LookupResource(ctx, handle, var);
  if (absl::IsNotFound(status)) {
    return absl::FailedPreconditionError(absl::StrCat(
        "Attempting to use uninitialized variables: ", name(), " (resource '", handle.name(),
        "' does not exist: the variable was never initialized, or it was deleted)"));
  }
  return status;
}

}  // namespace

template <>
absl::Status CopyDeviceBuffer<Eigen::ThreadPoolDevice>(OpKernelContext* ctx, void* dst,
                                                       const void* src, size_t bytes) {
  ctx->eigen_device<Eigen::ThreadPoolDevice>().memcpy(dst, src, bytes);
  return absl::OkStatus();
}

absl::Status TrainingVariables::Acquire(OpKernelContext* ctx, std::vector<VariableInput> inputs,
                                        DataType dtype, bool use_locking, UpdateKind kind) {
  inputs_ = std::move(inputs);
  resources_.resize(inputs_.size());
  ref_tensors_.resize(inputs_.size());

  // Resolve every input first: a deleted variable (NotFound) or a handle to a resource that is not
  // a variable (InvalidArgument) fails here, before any lock is taken.
  bool any_resource = false;
  std::vector<tsl::mutex*> mutexes(inputs_.size());
  std::vector<const void*> identities(inputs_.size());
  for (size_t k = 0; k < inputs_.size(); ++k) {
    const int index = inputs_[k].index;
    if (ctx->input_dtype(index) == DT_RESOURCE) {
      any_resource = true;
      TF_RETURN_IF_ERROR(LookupVariable(
          ctx, inputs_[k], [this, k] { return name(static_cast<int>(k)); }, &resources_[k]));
      mutexes[k] = resources_[k]->mu();
      identities[k] = resources_[k].get();
    } else {
      mutexes[k] = ctx->input_ref_mutex(index);
      identities[k] = mutexes[k];  // every ref variable has its own mutex
    }
  }
  // Checked before locking: locking one mutex twice would deadlock.
  TF_RETURN_IF_ERROR(CheckDistinct(identities));

  if (kind == UpdateKind::kSparse) {
    // As stock's EnsureSparseVariableAccess: in copy-on-read mode a reader copies the buffer, so
    // several sparse updates can hold the lock shared and still never show a torn row to a reader.
    for (auto& var : resources_) {
      if (!var || var->copy_on_read_mode.load()) continue;
      tsl::mutex_lock lock(*var->mu());
      if (!var->tensor()->RefCountIsOne() && var->tensor()->IsInitialized()) {
        TF_RETURN_IF_ERROR(ReplaceWithCopy(ctx, var->tensor()));
      }
      var->copy_on_read_mode.store(true);
    }
  }

  const bool lock = use_locking || any_resource;
  if (lock) {
    const bool exclusive = kind == UpdateKind::kDense || use_locking;
    Lock(mutexes, exclusive);
  }
  for (size_t k = 0; k < inputs_.size(); ++k) {
    if (!resources_[k]) ref_tensors_[k] = ctx->mutable_input(inputs_[k].index, /*lock_held=*/lock);
  }
  return Validate(dtype);
}

std::string TrainingVariables::name(int k) const {
  const VariableInput& input = inputs_[k];
  const int at = input.element >= 0 ? input.element : input.position;
  if (at < 0) return input.name;
  return absl::StrCat(input.name, "[", at, "]");
}

absl::Status TrainingVariables::CheckDistinct(const std::vector<const void*>& identities) const {
  // Sorted, so a multi-tensor op with hundreds of variables pays N log N, not N^2.
  std::vector<std::pair<const void*, int>> sorted(identities.size());
  for (size_t k = 0; k < identities.size(); ++k) sorted[k] = {identities[k], static_cast<int>(k)};
  std::sort(sorted.begin(), sorted.end());
  for (size_t k = 1; k < sorted.size(); ++k) {
    if (sorted[k].first == sorted[k - 1].first) {
      const int a = std::min(sorted[k - 1].second, sorted[k].second);
      const int b = std::max(sorted[k - 1].second, sorted[k].second);
      return absl::InvalidArgumentError(absl::StrCat(
          name(a), " and ", name(b), " are the same variable; each must be a distinct variable"));
    }
  }
  return absl::OkStatus();
}

void TrainingVariables::Lock(std::vector<tsl::mutex*> mutexes, bool exclusive) {
  // Address order, each once: two ops locking (A, B) and (B, A) can never deadlock.
  std::sort(mutexes.begin(), mutexes.end());
  mutexes.erase(std::unique(mutexes.begin(), mutexes.end()), mutexes.end());
  if (exclusive) {
    exclusive_locks_ = std::make_unique<std::vector<tsl::mutex_lock>>();
    exclusive_locks_->reserve(mutexes.size());
    for (tsl::mutex* mu : mutexes) exclusive_locks_->emplace_back(*mu);
  } else {
    shared_locks_ = std::make_unique<std::vector<tsl::tf_shared_lock>>();
    shared_locks_->reserve(mutexes.size());
    for (tsl::mutex* mu : mutexes) shared_locks_->emplace_back(*mu);
  }
}

absl::Status TrainingVariables::Validate(DataType dtype) const {
  for (size_t k = 0; k < inputs_.size(); ++k) {
    const Var* var = resources_[k].get();
    if ((var != nullptr && !var->is_initialized) || !tensor(k).IsInitialized()) {
      return absl::FailedPreconditionError(
          absl::StrCat("Attempting to use uninitialized variables: ", name(k)));
    }
    const bool own_dtype = inputs_[k].dtype != tensorflow::DT_INVALID;
    const DataType expected = own_dtype ? inputs_[k].dtype : dtype;
    if (tensor(k).dtype() != expected) {
      return absl::InvalidArgumentError(absl::StrCat(
          name(k), " is a variable of dtype ", DataTypeString(tensor(k).dtype()), " but the op ",
          own_dtype ? "expects " : "updates ", DataTypeString(expected),
          own_dtype ? "" : " (attr T)"));
    }
  }
  return absl::OkStatus();
}

const Tensor& TrainingVariables::tensor(int k) const {
  return resources_[k] ? *resources_[k]->tensor() : ref_tensors_[k];
}

absl::Status TrainingVariables::PrepareForInPlaceUpdate(OpKernelContext* ctx) {
  for (auto& var : resources_) {
    if (!var) continue;
    if (var->copy_on_read_mode.load() || !var->tensor()->RefCountIsOne()) {
      TF_RETURN_IF_ERROR(ReplaceWithCopy(ctx, var->tensor()));
    }
  }
  return absl::OkStatus();
}

absl::Status TrainingVariables::ReplaceWithCopy(OpKernelContext* ctx, Tensor* tensor) const {
  tensorflow::AllocatorAttributes attr;
  attr.set_gpu_compatible(true);
  attr.set_nic_compatible(true);
  Tensor copy;
  TF_RETURN_IF_ERROR(ctx->allocate_temp(tensor->dtype(), tensor->shape(), &copy, attr));
  if (tensor->TotalBytes() > 0) {
    TF_RETURN_IF_ERROR(copy_buffer_(ctx, copy.data(), tensor->data(), tensor->TotalBytes()));
  }
  *tensor = copy;
  return absl::OkStatus();
}

}  // namespace tf_adam_op
