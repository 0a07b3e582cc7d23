#include "cli/watch.h"

#include <boost/asio/signal_set.hpp>
#include <fmt/format.h>

#include <csignal>
#include <iostream>

#include "cli/common.h"
#include "http/asio.h"
#include "storage/dir/watcher.h"

namespace ck::cli {

int watch_folder(const std::filesystem::path& dir, const std::function<bool(bool quiet)>& pass) {
  net::io_context io{1};
  net::signal_set signals(io, SIGINT, SIGTERM);
  WatcherOptions wo;
  wo.debounce = std::chrono::milliseconds(150);
  wo.root_files = true;
  DirWatcher watcher(io, dir, wo, [&](WatchBatch) { pass(true); });
  if (auto w = watcher.start(); w.has_error()) {
    return error(fmt::format("cannot watch {}: {}", dir.string(), w.error().message));
  }
  bool stopped = false;
  signals.async_wait([&](const boost::system::error_code&, int) {
    stopped = true;
    watcher.stop();
    io.stop();
  });
  // Signals that arrive during the first pass wait in the signal set until the loop runs.
  if (!pass(false)) std::cerr << "cloudyknight: still watching; the next save retries\n";
  if (!stopped) {
    std::cout << fmt::format("watching {} for changes (Ctrl-C to stop)", dir.string()) << std::endl;
    io.run();
  }
  return 0;
}

}  // namespace ck::cli
