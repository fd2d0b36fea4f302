// Preemption: SIGTERM or SIGINT asks the trainer to finish the current step, write a checkpoint
// and exit 0. A second SIGINT kills the process at once, as users expect of Ctrl-C twice.
#pragma once

namespace mamba {

void install_stop_handlers();
bool stop_requested();

}  // namespace mamba
