#include "cli/commands.h"
#include "util/error.h"

namespace mamba::cli {

int tokenize(int, char**) { throw_error("mamba: 'tokenize' is not built yet"); }

}  // namespace mamba::cli
