# The XLA kernels (cc/xla): a second module, _tf_adam_op_xla.so, loaded after the op library.
#
# It needs what an op library does not: tf2xla and XLA's builder (exported by libtensorflow_cc, not
# libtensorflow_framework), the typed FFI headers (xla/ffi/api) and two header-only libraries the
# wheel ships under include/external. Built for the TensorFlow releases whose XLA it was written
# and tested against (TF_ADAM_OP_XLA_MIN_TF on); elsewhere it is not built, the package reports it
# (tf-adam-op info) and the optimizers take the composite XLA path.
#
# TF_ADAM_OP_XLA: AUTO (default) builds it where supported, ON requires it, OFF never builds it.
set(TF_ADAM_OP_XLA "AUTO" CACHE STRING "Build the XLA kernels: AUTO, ON or OFF")
set_property(CACHE TF_ADAM_OP_XLA PROPERTY STRINGS AUTO ON OFF)
set(TF_ADAM_OP_XLA_MIN_TF "2.21")

set(TF_ADAM_OP_XLA_BUILT OFF)
set(_xla_cc "${TensorFlow_LIBRARY_DIR}/libtensorflow_cc.so.2")
set(_xla_headers
  "${TensorFlow_INCLUDE_DIR}/tensorflow/compiler/tf2xla/xla_op_kernel.h"
  "${TensorFlow_INCLUDE_DIR}/xla/ffi/api/ffi.h"
  "${TensorFlow_INCLUDE_DIR}/external/highwayhash/highwayhash/highwayhash.h"
  "${TensorFlow_INCLUDE_DIR}/external/farmhash_archive/src/farmhash.h")
set(_xla_missing "")
if(TensorFlow_VERSION VERSION_LESS TF_ADAM_OP_XLA_MIN_TF)
  set(_xla_missing "TensorFlow ${TensorFlow_VERSION} < ${TF_ADAM_OP_XLA_MIN_TF}")
endif()
foreach(_file IN LISTS _xla_headers _xla_cc)
  if(NOT EXISTS "${_file}")
    set(_xla_missing "${_xla_missing} ${_file} is missing;")
  endif()
endforeach()

if(NOT TF_ADAM_OP_XLA STREQUAL "OFF")
  if(_xla_missing STREQUAL "")
    set(TF_ADAM_OP_XLA_BUILT ON)
  elseif(TF_ADAM_OP_XLA STREQUAL "ON")
    message(FATAL_ERROR "TF_ADAM_OP_XLA=ON but the XLA kernels cannot be built: ${_xla_missing}")
  else()
    message(STATUS "tf_adam_op: no XLA kernels (${_xla_missing}); XLA steps use the composite path")
  endif()
endif()

if(TF_ADAM_OP_XLA_BUILT)
  add_library(tf_adam_op_xla MODULE
    cc/xla/adam_xla_kernels.cc
    cc/xla/cpu_custom_calls.cc
    cc/xla/adam_8bit_xla_kernels.cc
    cc/xla/cpu_8bit_custom_calls.cc
    cc/xla/check_indices_xla.cc
    $<TARGET_OBJECTS:tf_adam_op_cpu_loop>)
  target_include_directories(tf_adam_op_xla PRIVATE cc)
  # The three tf2xla kernel files compile as one unit (CMake joins them at build time; they stay
  # three files): each spent about 30 of its 30-35 seconds in tf2xla's and XLA's headers (GCC 12),
  # one unit takes 35 seconds in all, a minute less per build.
  set_target_properties(tf_adam_op_xla PROPERTIES UNITY_BUILD ON UNITY_BUILD_MODE GROUP)
  set_source_files_properties(
    cc/xla/adam_xla_kernels.cc cc/xla/adam_8bit_xla_kernels.cc cc/xla/check_indices_xla.cc
    PROPERTIES UNITY_GROUP tf2xla_kernels)
  # The wheel's copies of the two libraries XLA's headers include (hashing; nothing is linked).
  target_include_directories(tf_adam_op_xla SYSTEM PRIVATE
    "${TensorFlow_INCLUDE_DIR}/external/highwayhash"
    "${TensorFlow_INCLUDE_DIR}/external/farmhash_archive/src")
  target_link_libraries(tf_adam_op_xla PRIVATE TensorFlow::framework "${_xla_cc}")
  target_compile_options(tf_adam_op_xla PRIVATE ${TF_ADAM_OP_NUMERIC_FLAGS} -O3
    -Wno-deprecated-declarations)
  set_target_properties(tf_adam_op_xla PROPERTIES
    PREFIX "_" OUTPUT_NAME "tf_adam_op_xla" SUFFIX ".so"
    CXX_VISIBILITY_PRESET hidden
    INSTALL_RPATH "$ORIGIN/../tensorflow")
  if(TF_ADAM_OP_CUDA_BUILT)  # the GPU handlers: the CUDA kernels' launchers on XLA's stream
    target_sources(tf_adam_op_xla PRIVATE cc/xla/gpu_custom_calls.cc cc/xla/gpu_8bit_custom_calls.cc)
    target_link_libraries(tf_adam_op_xla PRIVATE tf_adam_op_cuda_kernels CUDA::cudart_static)
    target_compile_definitions(tf_adam_op_xla PRIVATE TF_ADAM_OP_WITH_CUDA=1)
  endif()
  install(TARGETS tf_adam_op_xla LIBRARY DESTINATION tf_adam_op)
  message(STATUS "tf_adam_op: XLA kernels (CPU custom calls; GPU: ${TF_ADAM_OP_CUDA_BUILT}) for TensorFlow ${TensorFlow_VERSION}")
endif()
