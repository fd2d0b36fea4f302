#include "cli/commands.h"
#include "util/error.h"

namespace mamba::cli {

int train(int, char**) { throw_error("mamba: 'train' is not built yet"); }

}  // namespace mamba::cli
