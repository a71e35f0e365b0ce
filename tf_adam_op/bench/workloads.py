"""The benchmark's workloads: the variables one optimizer step updates, and their gradients."""

import dataclasses
from typing import List, Tuple

Shape = Tuple[int, ...]

# The sparse embedding case: a table, one batch of indices with duplicates per step.
SPARSE_ROWS, SPARSE_WIDTH, SPARSE_BATCH, SPARSE_POOL = 1_000_000, 64, 4096, 3000


@dataclasses.dataclass(frozen=True)
class Workload:
  name: str
  description: str
  shapes: List[Shape]
  sparse: bool = False  # one table updated by an IndexedSlices gradient of SPARSE_BATCH rows

  @property
  def num_parameters(self):
    total = 0
    for shape in self.shapes:
      count = 1
      for dim in shape:
        count *= dim
      total += count
    return total

  def scaled(self, scale):
    """The same workload with every first dimension scaled (for quick runs and tests)."""
    if scale == 1:
      return self
    shapes = [(max(1, round(shape[0] * scale)),) + tuple(shape[1:]) for shape in self.shapes]
    return dataclasses.replace(self, shapes=shapes,
                               description=f"{self.description}, scaled by {scale:g}")


def resnet50_shapes():
  """The 161 trainable shapes of ResNet-50 (torchvision layout: convolutions without bias, batch
  norm gamma and beta, the classifier), convolution kernels in TF's HWIO order: 25,557,032."""
  shapes = [(7, 7, 3, 64), (64,), (64,)]
  channels = 64
  for width, blocks in ((64, 3), (128, 4), (256, 6), (512, 3)):
    for block in range(blocks):
      shapes += [(1, 1, channels, width), (width,), (width,),
                 (3, 3, width, width), (width,), (width,),
                 (1, 1, width, 4 * width), (4 * width,), (4 * width,)]
      if block == 0:  # the projection shortcut
        shapes += [(1, 1, channels, 4 * width), (4 * width,), (4 * width,)]
      channels = 4 * width
  return shapes + [(2048, 1000), (1000,)]


WORKLOADS = {
    "large": Workload("large", "1 variable of 16,777,216 float32", [(16_777_216,)]),
    "many": Workload("many", "200 variables of 4096 float32", [(4096,)] * 200),
    "mixed": Workload("mixed", "ResNet-50's 161 trainable shapes, 25.6M float32",
                      resnet50_shapes()),
    "sparse": Workload("sparse", f"embedding {SPARSE_ROWS:,} x {SPARSE_WIDTH} float32, "
                       f"{SPARSE_BATCH} indices with duplicates per step",
                       [(SPARSE_ROWS, SPARSE_WIDTH)], sparse=True),
}
