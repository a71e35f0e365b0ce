// XLA's intra-op pool as Eigen's pool interface, for the CPU handlers of both op families
// (cpu_custom_calls.cc, cpu_8bit_custom_calls.cc): the kernels' ShardedFor runs on it.
#ifndef TF_ADAM_OP_XLA_FFI_THREAD_POOL_H_
#define TF_ADAM_OP_XLA_FFI_THREAD_POOL_H_

#define EIGEN_USE_THREADS

#include <algorithm>
#include <functional>
#include <utility>

#include "unsupported/Eigen/CXX11/Tensor"
#include "xla/call_operands.h"
#include "xla/ffi/api/ffi.h"

namespace tf_adam_op {
namespace xla_calls {

// XLA's intra-op pool as Eigen's pool interface, so the kernels' ShardedFor (Eigen's parallelFor)
// runs on it. Lives for one handler call; parallelFor returns only when every task it scheduled
// has run.
class FfiThreadPool final : public Eigen::ThreadPoolInterface {
 public:
  explicit FfiThreadPool(ffi::ThreadPool* pool) : pool_(pool) {}
  void Schedule(std::function<void()> fn) override { pool_->Schedule(std::move(fn)); }
  int NumThreads() const override { return static_cast<int>(pool_->num_threads()); }
  int CurrentThreadId() const override { return -1; }

 private:
  ffi::ThreadPool* pool_;
};

// Calls fn(device, T{}) with an Eigen device over XLA's pool and the variables' element type.
template <typename Fn>
inline ffi::Error OnPool(ffi::ThreadPool& pool, ffi::DataType type, Fn fn) {
  FfiThreadPool adapter(&pool);
  Eigen::ThreadPoolDevice device(&adapter, std::max(1, adapter.NumThreads()));
  if (!xla_calls::WithElementType(type, [&](auto t) { fn(device, t); })) {
    return Internal("unsupported variable type");
  }
  return ffi::Error::Success();
}

}  // namespace xla_calls
}  // namespace tf_adam_op

#endif  // TF_ADAM_OP_XLA_FFI_THREAD_POOL_H_
