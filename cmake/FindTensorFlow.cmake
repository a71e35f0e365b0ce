# FindTensorFlow
# --------------
# Asks the Python interpreter (Python_EXECUTABLE) once for the facts of the installed TensorFlow
# and exposes them as imported targets, never as global flags:
#
#   TensorFlow::headers    include directory and the ABI-relevant definitions (_GLIBCXX_USE_CXX11_ABI,
#                          EIGEN_MAX_ALIGN_BYTES) and C++ standard TF was built with; links nothing.
#   TensorFlow::framework  the above plus libtensorflow_framework, for op libraries.
#
# Result variables: TensorFlow_FOUND, TensorFlow_VERSION, TensorFlow_INCLUDE_DIR, TensorFlow_LIBRARY_DIR,
# TensorFlow_FRAMEWORK_LIBRARY, TensorFlow_CXX_STANDARD, TensorFlow_IS_CUDA_BUILD.

if(NOT Python_EXECUTABLE)
  find_package(Python COMPONENTS Interpreter REQUIRED)
endif()

# sysconfig's flags are the documented way to get TF's ABI; they are printed one fact per line.
set(_tf_query [=[
import os, tensorflow as tf
flags = tf.sysconfig.get_compile_flags()
lib = tf.sysconfig.get_link_flags()
print(tf.__version__)
print(tf.sysconfig.get_include())
print(tf.sysconfig.get_lib())
print(",".join(f[2:] for f in flags if f.startswith("-D")))
print(next((f.split("=")[1].replace("c++", "") for f in flags if f.startswith("--std=") or f.startswith("-std=")), "17"))
print(next((f[3:] for f in lib if f.startswith("-l:")), "libtensorflow_framework.so.2"))
print(int(tf.test.is_built_with_cuda()))
]=])

execute_process(
  COMMAND "${Python_EXECUTABLE}" -c "${_tf_query}"
  OUTPUT_VARIABLE _tf_out
  ERROR_VARIABLE _tf_err
  RESULT_VARIABLE _tf_rc
  OUTPUT_STRIP_TRAILING_WHITESPACE)

if(NOT _tf_rc EQUAL 0)
  if(TensorFlow_FIND_REQUIRED)
    message(FATAL_ERROR "FindTensorFlow: `${Python_EXECUTABLE} -c 'import tensorflow'` failed:\n${_tf_err}")
  endif()
  set(TensorFlow_FOUND FALSE)
  return()
endif()

string(REPLACE "\n" ";" _tf_lines "${_tf_out}")
# TF may print log lines before ours; the facts are the last seven lines.
list(LENGTH _tf_lines _tf_n)
math(EXPR _tf_first "${_tf_n} - 7")
list(SUBLIST _tf_lines ${_tf_first} 7 _tf_facts)
list(GET _tf_facts 0 TensorFlow_VERSION)
list(GET _tf_facts 1 TensorFlow_INCLUDE_DIR)
list(GET _tf_facts 2 TensorFlow_LIBRARY_DIR)
list(GET _tf_facts 3 _tf_defines)
list(GET _tf_facts 4 TensorFlow_CXX_STANDARD)
list(GET _tf_facts 5 _tf_framework_name)
list(GET _tf_facts 6 TensorFlow_IS_CUDA_BUILD)
string(REPLACE "," ";" _tf_defines "${_tf_defines}")
set(TensorFlow_FRAMEWORK_LIBRARY "${TensorFlow_LIBRARY_DIR}/${_tf_framework_name}")

include(FindPackageHandleStandardArgs)
find_package_handle_standard_args(TensorFlow
  REQUIRED_VARS TensorFlow_INCLUDE_DIR TensorFlow_FRAMEWORK_LIBRARY
  VERSION_VAR TensorFlow_VERSION)

if(TensorFlow_FOUND AND NOT TARGET TensorFlow::headers)
  add_library(TensorFlow::headers INTERFACE IMPORTED)
  set_target_properties(TensorFlow::headers PROPERTIES
    INTERFACE_INCLUDE_DIRECTORIES "${TensorFlow_INCLUDE_DIR}"
    INTERFACE_COMPILE_DEFINITIONS "${_tf_defines}"
    INTERFACE_COMPILE_FEATURES "cxx_std_${TensorFlow_CXX_STANDARD}")

  add_library(TensorFlow::framework SHARED IMPORTED)
  set_target_properties(TensorFlow::framework PROPERTIES
    IMPORTED_LOCATION "${TensorFlow_FRAMEWORK_LIBRARY}"
    IMPORTED_NO_SONAME FALSE
    INTERFACE_LINK_LIBRARIES TensorFlow::headers)
endif()
