// CheckIndicesInRange: the step-wide index check of XLA steps (_step/checks.py, xla_index_check).
// Its own op beside the update ops: it writes nothing and reads no variable.
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "tensorflow/core/framework/op.h"
#include "tensorflow/core/framework/shape_inference.h"

namespace tensorflow {
namespace {

using shape_inference::InferenceContext;
using shape_inference::ShapeHandle;

REGISTER_OP("CheckIndicesInRange")
    .Input("indices: Tindices")
    .Input("rows: int64")
    .Attr("Tindices: list({int32, int64}) >= 1")
    .Attr("names: list(string)")
    .Output("one: float")
    .SetShapeFn([](InferenceContext* c) {
      std::vector<DataType> types;
      std::vector<std::string> names;
      TF_RETURN_IF_ERROR(c->GetAttr("Tindices", &types));
      TF_RETURN_IF_ERROR(c->GetAttr("names", &names));
      const int n = static_cast<int>(types.size());
      if (static_cast<int>(names.size()) != n) {
        return absl::InvalidArgumentError(absl::StrCat(
            "names must name each of the ", n, " index vectors, got ", names.size(), " names"));
      }
      ShapeHandle unused;
      for (int i = 0; i < n; ++i) TF_RETURN_IF_ERROR(c->WithRank(c->input(i), 1, &unused));
      ShapeHandle rows;
      TF_RETURN_IF_ERROR(c->WithRank(c->input(n), 1, &rows));
      shape_inference::DimensionHandle count;
      TF_RETURN_IF_ERROR(c->WithValue(c->Dim(rows, 0), n, &count));
      c->set_output(0, c->Scalar());
      return absl::OkStatus();
    })
    .Doc(R"doc(
one is 1.0 once every element of indices[i] is in [0, rows[i]), for every i; otherwise the op
fails with InvalidArgument naming names[i] and the first index out of range. For XLA, where a step
has no assertions and orders ops by data only, and each sparse update checks only its own indices:
the optimizers multiply each sparse update's learning rate by one (exactly the same number), so
that none runs before every index of the step is checked, and none after the check fails.
)doc");

}  // namespace
}  // namespace tensorflow
