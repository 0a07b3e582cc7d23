#pragma once
// cgroup v1 groups for one workspace: memory, pids, CPU and the freezer, under the daemon's
// own cgroup (<controller>/<our path>/cloudyknight/<instance>/<name>). Used on the
// control-plane thread.

#include <cstdint>
#include <string>
#include <vector>

namespace ck {

class Cgroup {
 public:
  /// True if cgroup v1 controllers are mounted and writable (root); `why` says otherwise.
  static bool available(std::string& why);
  /// Creates (or reuses) the workspace's groups. Missing controllers are skipped.
  static Cgroup create(const std::string& name);

  void set_memory(std::uint64_t bytes);
  void set_pids(int max);
  void set_cpus(double cpus);
  /// Freezes or thaws every process of the group (freezer controller); false if there is
  /// no freezer group or the kernel did not finish within a second.
  bool set_frozen(bool frozen);
  bool has_freezer() const { return !freezer_.empty(); }
  /// Number of OOM kills so far in this group (memory.oom_control oom_kill).
  std::uint64_t oom_kills() const;
  /// Directories a process joins (written to CK_INIT_CGROUPS).
  const std::vector<std::string>& dirs() const { return dirs_; }
  /// Removes the groups (they must be empty).
  void remove();
  std::string describe() const;

 private:
  std::string memory_, pids_, cpu_, freezer_;
  std::vector<std::string> dirs_;
  std::vector<std::string> applied_;
};

}  // namespace ck
