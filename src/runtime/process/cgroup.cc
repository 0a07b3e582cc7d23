#include "runtime/process/cgroup.h"

#include <filesystem>
#include <fmt/format.h>
#include <fstream>
#include <sstream>
#include <unistd.h>

#include "core/log.h"
#include "core/units.h"

namespace ck {
namespace fs = std::filesystem;
namespace {

// The daemon's own path in a v1 controller hierarchy, from /proc/self/cgroup.
std::string own_path(const std::string& controller) {
  std::ifstream in("/proc/self/cgroup");
  std::string line;
  while (std::getline(in, line)) {
    auto a = line.find(':');
    auto b = line.find(':', a + 1);
    if (a == std::string::npos || b == std::string::npos) continue;
    std::stringstream list(line.substr(a + 1, b - a - 1));
    std::string c;
    while (std::getline(list, c, ',')) {
      if (c == controller) return line.substr(b + 1);
    }
  }
  return {};
}

std::string group_dir(const std::string& controller, const std::string& name) {
  fs::path root = fs::path("/sys/fs/cgroup") / controller;
  std::error_code ec;
  if (!fs::exists(root / "cgroup.procs", ec)) return {};
  std::string own = own_path(controller);
  fs::path dir = root / fs::path(own).relative_path() / "cloudyknight" / name;
  fs::create_directories(dir, ec);
  if (ec) return {};
  return dir.string();
}

bool write_file(const std::string& path, const std::string& value) {
  std::ofstream out(path);
  out << value;
  out.flush();
  return static_cast<bool>(out);
}

}  // namespace

bool Cgroup::available(std::string& why) {
  if (::geteuid() != 0) {
    why = "not running as root";
    return false;
  }
  std::error_code ec;
  if (!fs::exists("/sys/fs/cgroup/memory/cgroup.procs", ec) ||
      !fs::exists("/sys/fs/cgroup/pids/cgroup.procs", ec)) {
    why = "cgroup v1 memory/pids controllers are not mounted";
    return false;
  }
  return true;
}

Cgroup Cgroup::create(const std::string& name) {
  Cgroup g;
  g.memory_ = group_dir("memory", name);
  g.pids_ = group_dir("pids", name);
  g.cpu_ = group_dir("cpu", name);
  g.freezer_ = group_dir("freezer", name);
  // A group reused from a run that died while the app was frozen would freeze the new app.
  if (!g.freezer_.empty()) write_file(g.freezer_ + "/freezer.state", "THAWED");
  for (const auto* d : {&g.memory_, &g.pids_, &g.cpu_, &g.freezer_}) {
    if (!d->empty()) g.dirs_.push_back(*d);
  }
  return g;
}

void Cgroup::set_memory(std::uint64_t bytes) {
  if (memory_.empty()) return;
  if (write_file(memory_ + "/memory.limit_in_bytes", std::to_string(bytes))) {
    applied_.push_back("memory " + format_size(bytes));
  } else {
    log::get("runtime")->warn("[cgroup {}] cannot set the memory limit to {}", memory_, format_size(bytes));
  }
}

void Cgroup::set_pids(int max) {
  if (pids_.empty()) return;
  if (write_file(pids_ + "/pids.max", std::to_string(max))) applied_.push_back(fmt::format("pids {}", max));
}

void Cgroup::set_cpus(double cpus) {
  if (cpu_.empty()) return;
  long period = 100000;
  long quota = static_cast<long>(cpus * period);
  if (write_file(cpu_ + "/cpu.cfs_period_us", std::to_string(period)) &&
      write_file(cpu_ + "/cpu.cfs_quota_us", std::to_string(quota))) {
    applied_.push_back(fmt::format("cpus {}", cpus));
  }
}

bool Cgroup::set_frozen(bool frozen) {
  if (freezer_.empty()) return false;
  std::string want = frozen ? "FROZEN" : "THAWED";
  if (!write_file(freezer_ + "/freezer.state", want)) return false;
  // FREEZING settles within milliseconds unless a task is stuck in the kernel.
  for (int i = 0; i < 200; ++i) {
    std::ifstream in(freezer_ + "/freezer.state");
    std::string state;
    in >> state;
    if (state == want) return true;
    ::usleep(5000);
  }
  return false;
}

std::uint64_t Cgroup::oom_kills() const {
  if (memory_.empty()) return 0;
  std::ifstream in(memory_ + "/memory.oom_control");
  std::string key;
  std::uint64_t value = 0;
  while (in >> key >> value) {
    if (key == "oom_kill") return value;
  }
  return 0;
}

void Cgroup::remove() {
  for (const auto& d : dirs_) ::rmdir(d.c_str());
}

std::string Cgroup::describe() const {
  std::string out;
  for (const auto& a : applied_) out += (out.empty() ? "" : ", ") + a;
  return out.empty() ? "none" : out;
}

}  // namespace ck
