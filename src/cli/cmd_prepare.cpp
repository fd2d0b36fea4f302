#include "cli/commands.h"
#include "util/error.h"

namespace mamba::cli {

int prepare(int, char**) { throw_error("mamba: 'prepare' is not built yet"); }

}  // namespace mamba::cli
