#pragma once
// The wiring for `cloudyknight serve`: builds storage, runtime, monitor, API and gateway from
// the configuration, runs until SIGINT/SIGTERM, then stops every workspace and exits.

#include <string>

#include "core/config.h"

namespace ck {

/// Runs the daemon on the calling thread (the control-plane io_context). Returns the exit
/// code; start-up failures are logged as one clear line and return 1.
int run_daemon(const Config& config, const std::string& self_exe);

}  // namespace ck
