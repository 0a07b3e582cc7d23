#pragma once
// Hands out host ports for apps from a range (default 8000-8100), skipping ports that are in
// use by anyone on the host. Owned by a runtime; used on one thread.

#include <optional>
#include <set>

namespace ck {

class PortAllocator {
 public:
  PortAllocator(int lo, int hi) : lo_(lo), hi_(hi), next_(lo) {}
  /// A free port, or nullopt when every port of the range is taken.
  std::optional<int> acquire();
  /// Takes a specific port if it is free.
  bool acquire_exact(int port);
  void release(int port) { taken_.erase(port); }
  /// Records a port already in use by one of ours (an adopted container's).
  void mark_taken(int port) { taken_.insert(port); }
  /// True if nothing on the host listens on 127.0.0.1:port right now.
  static bool is_free_on_host(int port);

 private:
  int lo_, hi_, next_;
  std::set<int> taken_;
};

}  // namespace ck
