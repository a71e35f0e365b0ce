// Access to the variables a training op updates: ref inputs (Ref(T)) or resource handles.
//
// Stock TF does this with training_op_helpers.h; we keep its locking discipline (each mutex once,
// in address order; resource variables locked exclusively for dense updates, ref variables only when
// use_locking) but check what stock does not: a resource holding another dtype than T (stock aborts),
// the same variable passed twice (e.g. as var and m), and uninitialized resources (stock: Internal).
// Every check runs before anything is written, so an error leaves every variable unchanged.
#ifndef TF_ADAM_OP_KERNELS_TRAINING_VARIABLES_H_
#define TF_ADAM_OP_KERNELS_TRAINING_VARIABLES_H_

#include <memory>
#include <string>
#include <vector>

#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/framework/resource_var.h"
#include "tensorflow/core/framework/tensor.h"
#include "tensorflow/core/lib/core/refcount.h"
#include "tsl/platform/mutex.h"

namespace tf_adam_op {

using ::tensorflow::DataType;
using ::tensorflow::OpKernelContext;
using ::tensorflow::Tensor;
using ::tensorflow::Var;

struct VariableInput {
  int index;         // the op input holding the ref or the handle(s)
  const char* name;  // for messages: "var", "m", "vars", ...
  // For an input that packs several handles in a 1-D tensor: which one ("vars[3]"); -1 for an
  // input that is one ref or one scalar handle.
  int element = -1;
  // The dtype the variable must hold; DT_INVALID means the dtype given to Acquire (attr T).
  DataType dtype = tensorflow::DT_INVALID;
  // For one handle of a list input (vars: N * resource), its position in the list, for messages
  // only ("vars[3]"); -1 otherwise.
  int position = -1;
};

enum class UpdateKind {
  kDense,   // resource: exclusive lock always; ref: exclusive lock only with use_locking
  kSparse,  // resource: shared lock unless use_locking, and copy-on-read mode; ref: as dense
};

// Copies `bytes` of device memory (the device the kernel runs on); used for copy-on-write.
using CopyBufferFn = absl::Status (*)(OpKernelContext* ctx, void* dst, const void* src,
                                      size_t bytes);

// Specialised for each device: the CPU's below, the GPU's in gpu_functors.h.
template <typename Device>
absl::Status CopyDeviceBuffer(OpKernelContext* ctx, void* dst, const void* src, size_t bytes);

template <>
absl::Status CopyDeviceBuffer<Eigen::ThreadPoolDevice>(OpKernelContext* ctx, void* dst,
                                                       const void* src, size_t bytes);

// Holds the variables of one op call, locked, for the duration of the update.
class TrainingVariables {
 public:
  explicit TrainingVariables(CopyBufferFn copy_buffer) : copy_buffer_(copy_buffer) {}
  TrainingVariables(const TrainingVariables&) = delete;
  TrainingVariables& operator=(const TrainingVariables&) = delete;

  // Resolves, locks and validates (distinct, dtype == `dtype` unless the input names its own,
  // initialized) the given inputs.
  absl::Status Acquire(OpKernelContext* ctx, std::vector<VariableInput> inputs, DataType dtype,
                       bool use_locking, UpdateKind kind);

  int size() const { return static_cast<int>(inputs_.size()); }
  // "var", or "vars[3]" for a packed input: built only for error messages.
  std::string name(int k) const;

  // The current value, for validation. Does not take a reference (taking one would force a copy).
  const Tensor& tensor(int k) const;

  // For dense updates of resource variables: a buffer shared with a reader (an earlier
  // read_value(), say) is copied first, so the reader never sees the update. Call after validation.
  absl::Status PrepareForInPlaceUpdate(OpKernelContext* ctx);

  // The tensor to update in place (after PrepareForInPlaceUpdate).
  Tensor mutable_tensor(int k) const { return tensor(k); }

 private:
  absl::Status CheckDistinct(const std::vector<const void*>& identities) const;
  void Lock(std::vector<tsl::mutex*> mutexes, bool exclusive);
  absl::Status Validate(DataType dtype) const;
  absl::Status ReplaceWithCopy(OpKernelContext* ctx, Tensor* tensor) const;

  CopyBufferFn copy_buffer_;

  std::vector<VariableInput> inputs_;
  // One per input; null for ref inputs. Declared before the locks so the locks are released first.
  std::vector<tensorflow::core::RefCountPtr<Var>> resources_;
  std::vector<Tensor> ref_tensors_;  // one per input; empty for resource inputs
  std::unique_ptr<std::vector<tsl::mutex_lock>> exclusive_locks_;
  std::unique_ptr<std::vector<tsl::tf_shared_lock>> shared_locks_;
};

}  // namespace tf_adam_op

#endif  // TF_ADAM_OP_KERNELS_TRAINING_VARIABLES_H_
