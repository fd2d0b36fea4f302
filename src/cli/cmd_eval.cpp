#include "cli/commands.h"
#include "util/error.h"

namespace mamba::cli {

int eval(int, char**) { throw_error("mamba: 'eval' is not built yet"); }

}  // namespace mamba::cli
