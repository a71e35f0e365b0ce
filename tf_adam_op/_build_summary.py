"""What the installed build is, in plain words, for `tf-adam-op info` and `demo`; imports no TF."""

import textwrap

from tf_adam_op import _build_info

# The CUDA 13 runtime needs this driver series or newer (CUDA 13.0 release notes); CUDA 12.x
# runtimes run on any 12.x-era driver (525 or newer) through CUDA's minor-version compatibility.
CUDA13_DRIVER = 580


def _architectures():
  names = []
  for arch in _build_info.CUDA_ARCHITECTURES.split(","):
    number, _, kind = arch.partition("-")
    names.append(f"sm_{number}" if kind != "virtual" else f"PTX {number}")
  return ", ".join(names)


def cuda_kernels():
  """One or two lines: which CUDA built the GPU kernels, and what that means for running them."""
  if not _build_info.CUDA_KERNELS_BUILT:
    return ("GPU kernels: not built (no CUDA compiler was found when the package was built); the ops "
            "run on the CPU only. See docs/gpu.md to build them.")
  version = _build_info.CUDA_VERSION
  line = f"GPU kernels: built with CUDA {version} for {_architectures()}"
  if int(version.split(".")[0]) >= 13:
    meaning = (f"CUDA 13 needs an NVIDIA driver of the {CUDA13_DRIVER} series or newer and has no code "
               "for Volta (sm_70) GPUs: with an older driver TensorFlow runs but these ops fail on "
               "the GPU. A build with a CUDA 12 nvcc avoids both (docs/gpu.md).")
    return line + ".\n" + textwrap.fill(meaning, width=100, initial_indent="  ",
                                        subsequent_indent="  ")
  return line + " (Volta and newer GPUs, any CUDA 12 driver)."
