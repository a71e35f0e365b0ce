// A memory-bandwidth probe with the Adam step's traffic and none of its arithmetic.
#ifndef TF_ADAM_OP_PYTHON_BANDWIDTH_PROBE_H_
#define TF_ADAM_OP_PYTHON_BANDWIDTH_PROBE_H_

#include <cstdint>
#include <vector>

namespace tf_adam_op {

// Times `repeats` passes over `num_elements` float32 elements that read four arrays and write
// three (var, m, v, grad in; var, m, v out: the 28 bytes per parameter an Adam step must move),
// with one add per array, split over `threads` threads. Returns the seconds of each pass.
std::vector<double> BandwidthProbe(int64_t num_elements, int threads, int repeats);

}  // namespace tf_adam_op

#endif  // TF_ADAM_OP_PYTHON_BANDWIDTH_PROBE_H_
