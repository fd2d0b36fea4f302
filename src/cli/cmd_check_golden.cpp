#include "cli/commands.h"
#include "util/error.h"

namespace mamba::cli {

int check_golden(int, char**) { throw_error("mamba: 'check_golden' is not built yet"); }

}  // namespace mamba::cli
