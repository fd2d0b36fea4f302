// How the GPU reducers turn the slices that backward finishes into buckets: slices arrive in
// decreasing address order (backward runs from the last layer to the first), adjacent ones merge,
// and a bucket goes as soon as it holds bucket_floats, or when the next slice does not adjoin it.
#pragma once
#include <cstdint>

namespace mamba {

struct BucketGather {
  int64_t bucket_floats = 1;
  int64_t begin = -1, end = -1;  // the bucket being gathered, [begin, end); none: -1

  // [b, e) of the buffer is final; launch(begin, end) is called for each bucket that is complete.
  template <typename Launch>
  void ready(int64_t b, int64_t e, Launch&& launch) {
    if (begin >= 0 && e != begin) flush(launch);
    if (begin < 0) end = e;
    begin = b;
    if (end - begin >= bucket_floats) flush(launch);
  }

  // Launches the bucket being gathered, if any.
  template <typename Launch>
  void flush(Launch&& launch) {
    if (begin < 0) return;
    const int64_t b = begin, e = end;
    begin = end = -1;
    launch(b, e);
  }
};

}  // namespace mamba
