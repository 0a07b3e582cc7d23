#pragma once
// What running a command in a workspace (Runtime::exec) gives back, kept free of Asio so the
// API can name it.

#include <functional>
#include <string_view>

namespace ck {

/// How a command run in a workspace ended.
struct ExecOutcome {
  int exit_code = -1;      // 128+N when a signal ended it
  bool timed_out = false;  // killed because the timeout passed
};

/// Receives a command's output (stdout and stderr as they come); false stops the command.
using OutputSink = std::function<bool(std::string_view)>;

}  // namespace ck
