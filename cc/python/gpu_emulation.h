// _core.emulate_gpu_*: the CUDA kernels' bodies run on the CPU (see gpu_emulation.cc).
#ifndef TF_ADAM_OP_PYTHON_GPU_EMULATION_H_
#define TF_ADAM_OP_PYTHON_GPU_EMULATION_H_

#include <pybind11/pybind11.h>

namespace tf_adam_op {

void DefineGpuEmulation(pybind11::module_& module);

}  // namespace tf_adam_op

#endif  // TF_ADAM_OP_PYTHON_GPU_EMULATION_H_
