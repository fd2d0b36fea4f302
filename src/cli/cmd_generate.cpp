#include "cli/commands.h"
#include "util/error.h"

namespace mamba::cli {

int generate(int, char**) { throw_error("mamba: 'generate' is not built yet"); }

}  // namespace mamba::cli
