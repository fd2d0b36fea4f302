// TensorBoardWriter::open of a build without protobuf or ISA-L (CMake compiles this file instead
// of tensorboard_events.cpp and tfrecord.cpp).
#include "train/tensorboard.h"
#include "util/error.h"

namespace mamba {

std::unique_ptr<TensorBoardWriter> TensorBoardWriter::open(const std::string&,
                                                           const std::string& config_source,
                                                           int64_t) {
  throw_error("config error: log.tensorboard = true in ", config_source,
              ", but this build has no TensorBoard support (it was configured without protobuf "
              "and ISA-L, or with MAMBA_TENSORBOARD=OFF): set log.tensorboard=false, or install "
              "libprotobuf-dev, protobuf-compiler and libisal-dev (scripts/install_deps.sh) and "
              "rebuild");
}

}  // namespace mamba
