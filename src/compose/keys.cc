// What a compose file may name: the Compose specification's keys (to tell a key CloudyKnight
// does not apply from a typo), container hostnames and stop signals.
#include <algorithm>
#include <cctype>
#include <vector>

#include "compose/internal.h"

namespace ck::compose::detail {

const std::set<std::string>& top_level_keys() {
  static const std::set<std::string> keys = {"version", "name",    "services", "networks",
                                             "volumes", "configs", "secrets",  "include"};
  return keys;
}

const std::set<std::string>& service_keys() {
  static const std::set<std::string> keys = {
      "annotations", "attach", "blkio_config", "build", "cap_add", "cap_drop", "cgroup",
      "cgroup_parent", "command", "configs", "container_name", "cpu_count", "cpu_percent",
      "cpu_period", "cpu_quota", "cpu_rt_period", "cpu_rt_runtime", "cpu_shares", "cpus",
      "cpuset", "credential_spec", "depends_on", "deploy", "develop", "device_cgroup_rules",
      "devices", "dns", "dns_opt", "dns_search", "domainname", "entrypoint", "env_file",
      "environment", "expose", "extends", "external_links", "extra_hosts", "gpus", "group_add",
      "healthcheck", "hostname", "image", "init", "ipc", "isolation", "label_file", "labels",
      "links", "logging", "mac_address", "mem_limit", "mem_reservation", "mem_swappiness",
      "memswap_limit", "network_mode", "networks", "oom_kill_disable", "oom_score_adj", "pid",
      "pids_limit", "platform", "ports", "post_start", "pre_stop", "privileged", "profiles",
      "pull_policy", "read_only", "restart", "runtime", "scale", "secrets", "security_opt",
      "shm_size", "stdin_open", "stop_grace_period", "stop_signal", "storage_opt", "sysctls",
      "tmpfs", "tty", "ulimits", "user", "userns_mode", "uts", "volumes", "volumes_from",
      "working_dir"};
  return keys;
}

std::string closest_key(const std::string& key, const std::set<std::string>& keys) {
  if (key.size() > 64) return "";  // nothing in the spec is that long; bounded work
  std::string best;
  std::size_t best_distance = 3;  // at most two edits
  std::vector<std::size_t> row;
  for (const auto& candidate : keys) {
    // Levenshtein distance, one row at a time.
    row.resize(candidate.size() + 1);
    for (std::size_t j = 0; j <= candidate.size(); ++j) row[j] = j;
    for (std::size_t i = 1; i <= key.size(); ++i) {
      std::size_t diagonal = row[0];
      row[0] = i;
      for (std::size_t j = 1; j <= candidate.size(); ++j) {
        std::size_t above = row[j];
        row[j] = std::min({row[j] + 1, row[j - 1] + 1,
                           diagonal + (key[i - 1] == candidate[j - 1] ? 0 : 1)});
        diagonal = above;
      }
    }
    if (row[candidate.size()] < best_distance) {
      best_distance = row[candidate.size()];
      best = candidate;
    }
  }
  return best;
}

bool valid_hostname(const std::string& host) {
  if (host.empty() || host.size() > 253 || host.front() == '-') return false;
  std::size_t label = 0;
  for (char c : host) {
    if (c == '.') {
      if (label == 0) return false;
      label = 0;
    } else if (std::isalnum(static_cast<unsigned char>(c)) || c == '-') {
      if (++label > 63) return false;
    } else {
      return false;
    }
  }
  return label != 0;
}

bool valid_signal(const std::string& sig) {
  if (sig.empty() || sig.size() > 16) return false;
  if (std::all_of(sig.begin(), sig.end(), [](char c) { return c >= '0' && c <= '9'; })) {
    return sig.size() <= 2 && sig != "0" && sig != "00";
  }
  std::string name = sig.rfind("SIG", 0) == 0 ? sig.substr(3) : sig;
  return !name.empty() && std::all_of(name.begin(), name.end(), [](char c) {
    return (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '+' || c == '-';
  });
}

}  // namespace ck::compose::detail
