# The CUDA kernels: found, configured and attached to the op library here.
#
# TF_ADAM_OP_CUDA: AUTO (default) builds them when a CUDA compiler is found, ON requires one, OFF
# never builds them. TF 2.21 is built with CUDA 12.5, and a CUDA 12.x nvcc is the one to use: it gives
# sm_70, sm_80, sm_90 and PTX. A CUDA 13 nvcc still builds them, with a warning: CUDA 13 dropped
# sm_70 (so sm_75, sm_80, sm_90 and PTX), and its runtime needs a driver of the 580 series or newer.
# The CUDA runtime is linked statically: nothing CUDA is needed to load the library, and the driver
# is looked for only when a kernel is launched. `.ci/cuda12-toolkit` assembles a CUDA 12 nvcc.
set(TF_ADAM_OP_CUDA "AUTO" CACHE STRING "Build the CUDA kernels: AUTO, ON or OFF")
set_property(CACHE TF_ADAM_OP_CUDA PROPERTY STRINGS AUTO ON OFF)
set(TF_ADAM_OP_CUDA_ARCHITECTURES "" CACHE STRING
    "CUDA architectures (CMake syntax, e.g. 80-real;90-virtual); empty: by nvcc version")

set(TF_ADAM_OP_CUDA_BUILT OFF)
if(NOT TF_ADAM_OP_CUDA STREQUAL "OFF")
  include(CheckLanguage)
  check_language(CUDA)
  if(CMAKE_CUDA_COMPILER)
    set(TF_ADAM_OP_CUDA_BUILT ON)
  elseif(TF_ADAM_OP_CUDA STREQUAL "ON")
    message(FATAL_ERROR "TF_ADAM_OP_CUDA=ON but no CUDA compiler was found (set CUDACXX or put nvcc on PATH)")
  else()
    message(STATUS "tf_adam_op: no CUDA compiler found; building CPU kernels only")
  endif()
endif()

if(TF_ADAM_OP_CUDA_BUILT)
  enable_language(CUDA)
  find_package(CUDAToolkit REQUIRED)
  if(TF_ADAM_OP_CUDA_ARCHITECTURES)
    set(_archs "${TF_ADAM_OP_CUDA_ARCHITECTURES}")
  elseif(CMAKE_CUDA_COMPILER_VERSION VERSION_LESS 13)
    set(_archs "70-real;80-real;90-real;90-virtual")
  else()
    set(_archs "75-real;80-real;90-real;90-virtual")
  endif()
  if(CMAKE_CUDA_COMPILER_VERSION VERSION_GREATER_EQUAL 13)
    message(WARNING "tf_adam_op: nvcc ${CMAKE_CUDA_COMPILER_VERSION} is CUDA 13, TF 2.21 is built with "
      "CUDA 12.5: the kernels get no sm_70 and need an NVIDIA driver of the 580 series or newer. "
      "Point CUDACXX at a CUDA 12 nvcc (`.ci/cuda12-toolkit DIR` assembles one) to avoid both.")
  endif()
  message(STATUS "tf_adam_op: CUDA kernels with nvcc ${CMAKE_CUDA_COMPILER_VERSION} for ${_archs}")

  add_library(tf_adam_op_cuda_kernels STATIC cc/gpu/adam_gpu.cu cc/gpu/adam_8bit_gpu.cu)
  target_include_directories(tf_adam_op_cuda_kernels PRIVATE cc)
  set_target_properties(tf_adam_op_cuda_kernels PROPERTIES
    CUDA_ARCHITECTURES "${_archs}"
    CUDA_STANDARD 17
    POSITION_INDEPENDENT_CODE ON
    CUDA_RUNTIME_LIBRARY Static)
  # No fused multiply-add and IEEE division and square root (nvcc's defaults without fast math):
  # the GPU rounds each operation as the CPU kernel does, so their results are identical.
  target_compile_options(tf_adam_op_cuda_kernels PRIVATE $<$<COMPILE_LANGUAGE:CUDA>:--fmad=false>)
  target_link_libraries(tf_adam_op_cuda_kernels PRIVATE CUDA::cudart_static)

  target_link_libraries(tf_adam_op_ops PRIVATE tf_adam_op_cuda_kernels CUDA::cudart_static)
  target_compile_definitions(tf_adam_op_ops PRIVATE TF_ADAM_OP_WITH_CUDA=1)
  set(TF_ADAM_OP_CUDA_VERSION "${CMAKE_CUDA_COMPILER_VERSION}")
  string(REPLACE ";" "," TF_ADAM_OP_CUDA_ARCHITECTURE_LIST "${_archs}")
else()
  set(TF_ADAM_OP_CUDA_VERSION "")
  set(TF_ADAM_OP_CUDA_ARCHITECTURE_LIST "")
endif()
