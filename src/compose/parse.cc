// One compose file's text → Project: the YAML tree (tree.cc), every scalar value
// interpolated, then typed key by key with file, line and key in every error. Keys the
// safety rules refuse are recorded in Service::refused for harden(); keys we do not model
// become one warning each.
#include <algorithm>
#include <cctype>
#include <cmath>
#include <fmt/format.h>
#include <set>
#include <string>

#include "compose/internal.h"
#include "compose/tree.h"

namespace ck::compose::detail {
namespace {

using Kind = Node::Kind;

constexpr std::size_t kMaxInterpolated = 16u << 20;

bool starts_with(std::string_view s, std::string_view p) { return s.substr(0, p.size()) == p; }

class Parser {
 public:
  Parser(const std::string& file, const Vars& vars, const std::filesystem::path& dir,
         std::size_t max_bytes, Project& project)
      : file_(file), vars_(vars), dir_(dir), max_bytes_(max_bytes), project_(project) {}

  void document(Node& root) {
    interpolate_tree(root, "");
    if (root.kind != Kind::mapping) {
      fail(root, "", "the file must be a mapping with a top-level `services:` key");
    }
    // Top-level volumes and networks first, so services can be checked against them.
    for (std::size_t i = 0; i < root.entries.size(); ++i) {
      const auto& [key, value] = root.entries[i];
      int line = root.key_lines[i];
      if (key == "version") {
        continue;  // obsolete, ignored by Compose too
      }
      if (key == "name") {
        project_.name = scalar(value, "name");
        if (!valid_project_name(project_.name)) {
          fail(value, "name",
               "a project name is lowercase letters, digits, '-' and '_', "
               "starting with a letter or digit");
        }
      } else if (key == "services") {
        if (value.kind != Kind::mapping && value.kind != Kind::null) {
          fail(value, "services", "expected a mapping of service names to services");
        }
      } else if (key == "volumes") {
        top_volumes(value);
      } else if (key == "networks") {
        top_networks(value);
      } else if (!starts_with(key, "x-")) {
        unknown_key(key, line, key, top_level_keys(), "the top level");
      }
    }
    if (const Node* services = root.find("services")) {
      for (std::size_t i = 0; i < services->entries.size(); ++i) {
        service(services->entries[i].first, services->entries[i].second, services->key_lines[i]);
      }
    }
  }

 private:
  // --- helpers -------------------------------------------------------------------------

  Location at(const Node& n, const std::string& key) const { return {file_, n.line, key}; }

  [[noreturn]] void fail(const Node& n, const std::string& key, const std::string& msg) const {
    throw Error(at(n, key), msg);
  }

  // A key of the Compose specification CloudyKnight does not apply is warned about; one that
  // is not Compose at all (a typo such as `enviroment`) is an error, as docker-compose makes
  // it: running without what the author meant is worse.
  void unknown_key(const std::string& k, int line, const std::string& key,
                   const std::set<std::string>& keys, const char* where) {
    if (keys.count(k) != 0) {
      warn(line, key);
      return;
    }
    std::string near = closest_key(k, keys);
    throw Error({file_, line, key},
                fmt::format("`{}` is not a key of {} in the Compose specification{}", k, where,
                            near.empty() ? "; remove it, or name it x-... to keep it as an extension"
                                         : "; did you mean `" + near + "`?"));
  }

  // extra_hosts: a list of "name:address" / "name=address", or a mapping name → address.
  void extra_hosts(const Node& n, const std::string& key, std::vector<std::string>& out) {
    auto add = [&](std::string host, std::string addr) {
      if (!valid_hostname(host) || addr.empty() || addr.size() > 64 ||
          addr.find_first_not_of("0123456789abcdefABCDEF.:[]-") != std::string::npos) {
        fail(n, key, "expected host:address entries such as \"db.local:10.0.0.5\"");
      }
      if (addr.size() > 2 && addr.front() == '[' && addr.back() == ']') {
        addr = addr.substr(1, addr.size() - 2);
      }
      out.push_back(host + ":" + addr);
    };
    if (n.kind == Kind::mapping) {
      for (const auto& [host, v] : n.entries) add(host, scalar(v, key + "." + host));
      return;
    }
    for (const auto& e : string_list(n, key)) {
      auto sep = e.find_first_of("=:");
      if (sep == std::string::npos) {
        fail(n, key, "expected host:address entries such as \"db.local:10.0.0.5\"");
      }
      add(e.substr(0, sep), e.substr(sep + 1));
    }
  }

  void warn(int line, const std::string& key) {
    project_.warnings.push_back(file_ + ":" + std::to_string(line) + ": " + key +
                                ": not supported by CloudyKnight; ignored");
  }

  void interpolate_tree(Node& n, const std::string& key) {
    switch (n.kind) {
      case Kind::scalar:
        n.scalar = interpolate(n.scalar, vars_, at(n, key));
        interpolated_ += n.scalar.size();
        if (interpolated_ > kMaxInterpolated) {
          fail(n, key, "the file grows past 16 MiB after substituting variables");
        }
        break;
      case Kind::sequence:
        for (std::size_t i = 0; i < n.items.size(); ++i) {
          interpolate_tree(n.items[i], key + "[" + std::to_string(i) + "]");
        }
        break;
      case Kind::mapping:
        for (auto& [k, v] : n.entries) {
          interpolate_tree(v, key.empty() ? k : key + "." + k);
        }
        break;
      case Kind::null:
        break;
    }
  }

  std::string scalar(const Node& n, const std::string& key) const {
    if (n.kind != Kind::scalar) {
      fail(n, key, "expected a string");
    }
    return n.scalar;
  }

  bool boolean(const Node& n, const std::string& key) const {
    std::string s = scalar(n, key);
    std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
    if (s == "true" || s == "yes" || s == "on") {
      return true;
    }
    if (s == "false" || s == "no" || s == "off") {
      return false;
    }
    fail(n, key, "expected true or false, not '" + n.scalar + "'");
  }

  long integer(const Node& n, const std::string& key, long min, long max) const {
    long v = 0;
    if (!to_int(scalar(n, key), min, max, v)) {
      fail(n, key,
           "expected a whole number from " + std::to_string(min) + " to " + std::to_string(max) +
               ", not '" + n.scalar + "'");
    }
    return v;
  }

  std::vector<std::string> string_list(const Node& n, const std::string& key) const {
    std::vector<std::string> out;
    if (n.kind == Kind::scalar) {
      out.push_back(n.scalar);
      return out;
    }
    if (n.kind != Kind::sequence) {
      fail(n, key, "expected a string or a list of strings");
    }
    for (std::size_t i = 0; i < n.items.size(); ++i) {
      out.push_back(scalar(n.items[i], key + "[" + std::to_string(i) + "]"));
    }
    return out;
  }

  /// environment / labels / build.args: a list of "K=V" (or "K") or a mapping. `from_vars`:
  /// a bare K (or K: null) takes its value from the variables, else is dropped; otherwise
  /// a bare K is "".
  std::map<std::string, std::string> dict(const Node& n, const std::string& key,
                                          bool from_vars) const {
    std::map<std::string, std::string> out;
    auto bare = [&](const std::string& k) {
      if (!from_vars) {
        out[k] = "";
      } else if (auto it = vars_.find(k); it != vars_.end()) {
        out[k] = it->second;
      }
    };
    if (n.kind == Kind::null) {
      return out;
    }
    if (n.kind == Kind::sequence) {
      for (std::size_t i = 0; i < n.items.size(); ++i) {
        std::string item = scalar(n.items[i], key + "[" + std::to_string(i) + "]");
        std::size_t eq = item.find('=');
        if (eq == 0 || item.empty()) {
          fail(n.items[i], key + "[" + std::to_string(i) + "]", "expected NAME=VALUE");
        }
        if (eq == std::string::npos) {
          bare(item);
        } else {
          out[item.substr(0, eq)] = item.substr(eq + 1);
        }
      }
      return out;
    }
    if (n.kind != Kind::mapping) {
      fail(n, key, "expected a list of NAME=VALUE or a mapping");
    }
    for (const auto& [k, v] : n.entries) {
      if (v.kind == Kind::null) {
        bare(k);
      } else {
        out[k] = scalar(v, key + "." + k);  // numbers and booleans: their text, as Compose
      }
    }
    return out;
  }

  // --- top level -----------------------------------------------------------------------

  static bool valid_project_name(std::string_view s) {
    if (s.empty() || !(std::islower(static_cast<unsigned char>(s[0])) ||
                       std::isdigit(static_cast<unsigned char>(s[0])))) {
      return false;
    }
    return std::all_of(s.begin(), s.end(), [](char c) {
      return std::islower(static_cast<unsigned char>(c)) != 0 ||
             std::isdigit(static_cast<unsigned char>(c)) != 0 || c == '-' || c == '_';
    });
  }

  void external(const Node& v, const std::string& key, bool& ext, std::string& ext_name) {
    if (v.kind == Kind::mapping) {  // legacy `external: {name: x}`
      ext = true;
      if (const Node* n = v.find("name")) {
        ext_name = scalar(*n, key + ".name");
      }
    } else {
      ext = boolean(v, key);
    }
  }

  void top_volumes(const Node& n) {
    if (n.kind == Kind::null) {
      return;
    }
    if (n.kind != Kind::mapping) {
      fail(n, "volumes", "expected a mapping of volume names");
    }
    for (std::size_t i = 0; i < n.entries.size(); ++i) {
      const auto& [name, v] = n.entries[i];
      std::string key = "volumes." + name;
      if (!valid_name(name)) {
        throw Error({file_, n.key_lines[i], key},
                    "a volume name is letters, digits, '_', '.' and '-'");
      }
      Volume vol;
      vol.name = name;
      vol.where = {file_, n.key_lines[i], key};
      if (v.kind != Kind::null && v.kind != Kind::mapping) {
        fail(v, key, "expected a mapping (external, name, labels) or nothing");
      }
      std::string custom_name;
      for (std::size_t j = 0; j < v.entries.size(); ++j) {
        const auto& [k, val] = v.entries[j];
        std::string sub = key + "." + k;
        if (k == "external") {
          external(val, sub, vol.external, vol.external_name);
        } else if (k == "name") {
          custom_name = scalar(val, sub);
        } else if (k == "labels") {
          vol.labels = dict(val, sub, false);
        } else if (!starts_with(k, "x-")) {
          // driver and driver_opts included: a local volume is all the runner makes, so a
          // driver_opts bind (type: none, o: bind, device: /etc) never reaches the engine.
          warn(v.key_lines[j], sub);
        }
      }
      if (vol.external) {
        vol.external_name = !vol.external_name.empty() ? vol.external_name
                            : !custom_name.empty()     ? custom_name
                                                       : name;
      } else if (!custom_name.empty()) {
        warn(vol.where.line, key + ".name");  // the runner prefixes names with the project
      }
      project_.volumes[name] = std::move(vol);
    }
  }

  void top_networks(const Node& n) {
    if (n.kind == Kind::null) {
      return;
    }
    if (n.kind != Kind::mapping) {
      fail(n, "networks", "expected a mapping of network names");
    }
    for (std::size_t i = 0; i < n.entries.size(); ++i) {
      const auto& [name, v] = n.entries[i];
      std::string key = "networks." + name;
      if (!valid_name(name)) {
        throw Error({file_, n.key_lines[i], key},
                    "a network name is letters, digits, '_', '.' and '-'");
      }
      Network net;
      net.name = name;
      net.where = {file_, n.key_lines[i], key};
      if (v.kind != Kind::null && v.kind != Kind::mapping) {
        fail(v, key, "expected a mapping (external, name) or nothing");
      }
      std::string custom_name;
      for (std::size_t j = 0; j < v.entries.size(); ++j) {
        const auto& [k, val] = v.entries[j];
        std::string sub = key + "." + k;
        if (k == "external") {
          external(val, sub, net.external, net.external_name);
        } else if (k == "name") {
          custom_name = scalar(val, sub);
        } else if (!starts_with(k, "x-")) {
          warn(v.key_lines[j], sub);
        }
      }
      if (net.external) {
        net.external_name = !net.external_name.empty() ? net.external_name
                            : !custom_name.empty()     ? custom_name
                                                       : name;
      } else if (!custom_name.empty()) {
        warn(net.where.line, key + ".name");
      }
      project_.networks[name] = std::move(net);
    }
  }

  // --- services ------------------------------------------------------------------------

  void service(const std::string& name, const Node& n, int line) {
    std::string base = "services." + name;
    if (!valid_name(name)) {
      throw Error({file_, line, base},
                  "a service name must start with a letter or digit and "
                  "hold only letters, digits, '_', '.' and '-'");
    }
    if (n.kind != Kind::mapping && n.kind != Kind::null) {
      fail(n, base, "expected a mapping (image, build, command, ...)");
    }
    Service s;
    s.name = name;
    s.where = {file_, line, base};
    std::map<std::string, std::string> from_files;
    std::map<std::string, std::string> environment;
    for (std::size_t i = 0; i < n.entries.size(); ++i) {
      const std::string& k = n.entries[i].first;
      const Node& v = n.entries[i].second;
      int kline = n.key_lines[i];
      std::string key = base + "." + k;
      if (k == "image") {
        s.image = scalar(v, key);
      } else if (k == "build") {
        s.build = build(v, key);
      } else if (k == "command") {
        s.command = command(v, key);
      } else if (k == "entrypoint") {
        s.entrypoint = command(v, key);
      } else if (k == "environment") {
        environment = dict(v, key, true);
      } else if (k == "env_file") {
        env_files(v, key, from_files);
      } else if (k == "ports") {
        ports(v, key, s.ports);
      } else if (k == "expose") {
        expose(v, key, s.expose);
      } else if (k == "volumes") {
        volumes(v, key, s.volumes);
      } else if (k == "tmpfs") {
        auto list = string_list(v, key);
        for (const auto& t : list) {
          Mount m;
          m.kind = Mount::Kind::tmpfs;
          m.target = t.substr(0, t.find(':'));
          m.where = at(v, key);
          if (m.target.empty() || m.target[0] != '/') {
            fail(v, key, "a tmpfs target is an absolute path inside the container");
          }
          s.volumes.push_back(std::move(m));
        }
      } else if (k == "networks") {
        networks(v, key, s.networks);
      } else if (k == "depends_on") {
        depends_on(v, key, s.depends_on);
      } else if (k == "healthcheck") {
        s.healthcheck = healthcheck(v, key);
      } else if (k == "restart") {
        s.restart = scalar(v, key);
        long tries = 0;
        if (!(s.restart == "no" || s.restart == "always" || s.restart == "unless-stopped" ||
              s.restart == "on-failure" ||
              (starts_with(s.restart, "on-failure:") &&
               to_int(s.restart.substr(11), 0, 1000000, tries)))) {
          fail(v, key, "expected no, always, on-failure[:N] or unless-stopped");
        }
      } else if (k == "working_dir") {
        s.working_dir = scalar(v, key);
        if (s.working_dir.empty() || s.working_dir[0] != '/') {
          fail(v, key, "working_dir is an absolute path inside the container");
        }
      } else if (k == "user") {
        s.user = scalar(v, key);
      } else if (k == "hostname") {
        s.hostname = scalar(v, key);
        if (!valid_hostname(s.hostname)) {
          fail(v, key, "a hostname is letters, digits, '-' and '.', at most 63 characters");
        }
      } else if (k == "stop_signal") {
        s.stop_signal = scalar(v, key);
        if (!valid_signal(s.stop_signal)) {
          fail(v, key, "expected a signal such as SIGINT, SIGTERM, SIGQUIT or a number");
        }
      } else if (k == "stop_grace_period") {
        s.stop_grace_period = duration(v, key);
      } else if (k == "tty") {
        s.tty = boolean(v, key);
      } else if (k == "stdin_open") {
        s.stdin_open = boolean(v, key);
      } else if (k == "extra_hosts") {
        extra_hosts(v, key, s.extra_hosts);
      } else if (k == "labels") {
        s.labels = dict(v, key, false);
      } else if (k == "profiles") {
        s.profiles = string_list(v, key);
        for (const auto& p : s.profiles) {
          if (!valid_name(p)) {
            fail(v, key, "a profile name is letters, digits, '_', '.' and '-'");
          }
        }
      } else if (k == "deploy") {
        deploy(v, key, s);
      } else if (k == "mem_limit") {
        s.memory = memory(v, key);
      } else if (k == "cpus") {
        s.cpus = cpus(v, key);
      } else if (k == "pids_limit") {
        long p = integer(v, key, -1, 1L << 30);
        s.pids = p < 0 ? 0 : static_cast<int>(p);
      } else if (k == "network_mode") {
        std::string mode = scalar(v, key);
        if (mode == "none") {
          s.network_mode = "none";
        } else if (mode != "bridge" && mode != "default") {
          s.refused[k] = {file_, kline, key};
        }
      } else if (k == "ipc") {
        std::string mode = scalar(v, key);
        if (mode != "private" && mode != "shareable" && mode != "none" && !mode.empty()) {
          s.refused[k] = {file_, kline, key};
        }
      } else if (k == "privileged" || k == "oom_kill_disable") {
        if (boolean(v, key)) {
          s.refused[k] = {file_, kline, key};
        }
      } else if (refused_key(k)) {
        if (v.kind != Kind::null && !(v.kind == Kind::sequence && v.items.empty()) &&
            !(v.kind == Kind::mapping && v.entries.empty())) {
          s.refused[k] = {file_, kline, key};
        }
      } else if (!starts_with(k, "x-")) {
        unknown_key(k, kline, key, service_keys(), "a service");
      }
    }
    s.environment = std::move(from_files);
    for (auto& [k, v] : environment) {
      s.environment[k] = std::move(v);
    }
    project_.services[name] = std::move(s);
  }

  static bool refused_key(const std::string& k) {
    static const std::set<std::string> keys = {"cap_add",
                                               "pid",
                                               "devices",
                                               "security_opt",
                                               "userns_mode",
                                               "cgroup_parent",
                                               "volumes_from",
                                               "sysctls",
                                               "uts",
                                               "cgroup",
                                               "runtime",
                                               "isolation",
                                               "device_cgroup_rules",
                                               "oom_score_adj",
                                               "storage_opt",
                                               "gpus",
                                               "external_links",
                                               "credential_spec",
                                               "ulimits"};
    return keys.count(k) != 0;
  }

  Build build(const Node& n, const std::string& key) {
    Build b;
    if (n.kind == Kind::scalar) {
      b.context = n.scalar;
      return b;
    }
    if (n.kind != Kind::mapping) {
      fail(n, key, "expected a context path or a mapping (context, dockerfile, args, target)");
    }
    for (std::size_t i = 0; i < n.entries.size(); ++i) {
      const auto& [k, v] = n.entries[i];
      std::string sub = key + "." + k;
      if (k == "context") {
        b.context = scalar(v, sub);
      } else if (k == "dockerfile") {
        b.dockerfile = scalar(v, sub);
      } else if (k == "args") {
        b.args = dict(v, sub, true);
      } else if (k == "target") {
        b.target = scalar(v, sub);
      } else if (!starts_with(k, "x-")) {
        warn(n.key_lines[i], sub);
      }
    }
    if (b.context.empty()) {
      b.context = ".";
    }
    return b;
  }

  std::vector<std::string> command(const Node& n, const std::string& key) const {
    if (n.kind == Kind::scalar) {
      return split_shell(n.scalar, at(n, key));
    }
    if (n.kind == Kind::null) {
      return {};
    }
    if (n.kind != Kind::sequence) {
      fail(n, key, "expected a string or a list of strings");
    }
    return string_list(n, key);
  }

  void env_files(const Node& n, const std::string& key, std::map<std::string, std::string>& out) {
    std::vector<std::pair<const Node*, std::string>> items;
    if (n.kind == Kind::scalar || n.kind == Kind::mapping) {
      items.emplace_back(&n, key);
    } else if (n.kind == Kind::sequence) {
      for (std::size_t i = 0; i < n.items.size(); ++i) {
        items.emplace_back(&n.items[i], key + "[" + std::to_string(i) + "]");
      }
    } else {
      fail(n, key, "expected a path or a list of paths");
    }
    for (const auto& [item, sub] : items) {
      std::string path;
      bool required = true;
      if (item->kind == Kind::mapping) {
        const Node* p = item->find("path");
        if (p == nullptr) {
          fail(*item, sub, "an env_file entry needs a path");
        }
        path = scalar(*p, sub + ".path");
        if (const Node* r = item->find("required")) {
          required = boolean(*r, sub + ".required");
        }
      } else {
        path = scalar(*item, sub);
      }
      Location where = at(*item, sub);
      if (dir_.empty()) {
        throw Error(where, "env_file needs the workspace folder; it is not read here");
      }
      std::filesystem::path full = (dir_ / path).lexically_normal();
      std::error_code ec;
      if (!is_within(dir_, full) || !is_within(std::filesystem::weakly_canonical(dir_, ec),
                                               std::filesystem::weakly_canonical(full, ec))) {
        throw Error(where, "env_file '" + path +
                               "' is outside the workspace folder; keep it inside the folder");
      }
      if (!std::filesystem::exists(full, ec)) {
        if (required) {
          throw Error(where, "env_file '" + path + "' does not exist; create it or drop the key");
        }
        continue;
      }
      std::string text = read_limited(full, path, max_bytes_, where);
      for (auto& [k, v] : parse_env_text(text, path)) {
        out[k] = std::move(v);
      }
    }
  }

  // --- ports ---------------------------------------------------------------------------

  void port_spec(const Node& n, const std::string& key, std::vector<Port>& out) const {
    parse_port_spec(scalar(n, key), at(n, key), out);
  }

  void ports(const Node& n, const std::string& key, std::vector<Port>& out) {
    if (n.kind != Kind::sequence) {
      fail(n, key, "expected a list of ports");
    }
    for (std::size_t i = 0; i < n.items.size(); ++i) {
      const Node& item = n.items[i];
      std::string sub = key + "[" + std::to_string(i) + "]";
      if (item.kind != Kind::mapping) {
        port_spec(item, sub, out);
        continue;
      }
      Port port;
      bool has_target = false;
      for (std::size_t j = 0; j < item.entries.size(); ++j) {
        const auto& [k, v] = item.entries[j];
        std::string kk = sub + "." + k;
        if (k == "target") {
          port.container_port = static_cast<int>(integer(v, kk, 1, 65535));
          has_target = true;
        } else if (k == "published") {
          std::string p = scalar(v, kk);
          long lo = 0;
          long hi = 0;
          if (!p.empty() && !port_range(p, lo, hi)) {
            fail(v, kk, "expected a port 1-65535 or a range such as 8000-8010");
          }
          port.host_port = static_cast<int>(lo);
        } else if (k == "host_ip") {
          port.host_ip = scalar(v, kk);
        } else if (k == "protocol") {
          port.protocol = scalar(v, kk);
          if (!known_protocol(port.protocol)) {
            fail(v, kk, "expected tcp, udp or sctp");
          }
        } else if (k == "mode" || k == "name" || k == "app_protocol") {
          (void)scalar(v, kk);
        } else if (!starts_with(k, "x-")) {
          warn(item.key_lines[j], kk);
        }
      }
      if (!has_target) {
        fail(item, sub, "a port in the long syntax needs a target (the container's port)");
      }
      out.push_back(port);
    }
  }

  void expose(const Node& n, const std::string& key, std::vector<int>& out) const {
    if (n.kind != Kind::sequence) {
      fail(n, key, "expected a list of ports");
    }
    for (std::size_t i = 0; i < n.items.size(); ++i) {
      std::string sub = key + "[" + std::to_string(i) + "]";
      std::string spec = scalar(n.items[i], sub);
      if (std::size_t slash = spec.find('/'); slash != std::string::npos) {
        if (!known_protocol(spec.substr(slash + 1))) {
          fail(n.items[i], sub, "expected PORT[/tcp|udp|sctp]");
        }
        spec.resize(slash);
      }
      long lo = 0;
      long hi = 0;
      if (!port_range(spec, lo, hi)) {
        fail(n.items[i], sub, "expected a port 1-65535 or a range such as 3000-3001");
      }
      if (out.size() + static_cast<std::size_t>(hi - lo) >= kMaxPorts) {
        fail(n.items[i], sub, "a service exposes at most 10000 ports");
      }
      for (long p = lo; p <= hi; ++p) {
        out.push_back(static_cast<int>(p));
      }
    }
  }

  // --- volumes -------------------------------------------------------------------------

  static bool is_path(std::string_view s) {
    return !s.empty() && (s[0] == '/' || s[0] == '.' || s[0] == '~');
  }

  void volumes(const Node& n, const std::string& key, std::vector<Mount>& out) {
    if (n.kind != Kind::sequence) {
      fail(n, key, "expected a list of volumes");
    }
    for (std::size_t i = 0; i < n.items.size(); ++i) {
      const Node& item = n.items[i];
      std::string sub = key + "[" + std::to_string(i) + "]";
      Mount m;
      m.where = at(item, sub);
      if (item.kind == Kind::mapping) {
        long_volume(item, sub, m);
      } else {
        std::string spec = scalar(item, sub);
        std::vector<std::string> parts = split_colons(spec);
        if (parts.size() > 3) {
          fail(item, sub, "expected [SOURCE:]TARGET[:MODE]");
        }
        if (parts.size() == 1) {
          m.target = parts[0];  // an anonymous volume
        } else {
          m.source = parts[0];
          m.target = parts[1];
          m.kind = is_path(m.source) ? Mount::Kind::bind : Mount::Kind::volume;
          if (m.source.empty()) {
            fail(item, sub, "expected [SOURCE:]TARGET[:MODE]");
          }
        }
        if (parts.size() == 3) {
          std::size_t s0 = 0;
          std::string modes = parts[2];
          while (s0 <= modes.size()) {
            std::size_t comma = modes.find(',', s0);
            std::string mode = modes.substr(s0, comma - s0);
            if (mode == "ro") {
              m.read_only = true;
            } else if (!(mode == "rw" || mode == "z" || mode == "Z" || mode == "nocopy" ||
                         mode == "cached" || mode == "delegated" || mode == "consistent" ||
                         mode == "private" || mode == "rprivate" || mode == "shared" ||
                         mode == "rshared" || mode == "slave" || mode == "rslave")) {
              fail(item, sub, "unknown volume mode '" + mode + "'; expected ro or rw");
            }
            if (comma == std::string::npos) {
              break;
            }
            s0 = comma + 1;
          }
        }
      }
      if (m.target.empty() || m.target[0] != '/') {
        fail(item, sub, "the target is an absolute path inside the container");
      }
      if (m.kind == Mount::Kind::volume && !m.source.empty() && !valid_name(m.source)) {
        fail(item, sub,
             "'" + m.source +
                 "' is neither a volume name nor a path "
                 "(a bind mount starts with ./, / or ~)");
      }
      out.push_back(std::move(m));
    }
  }

  void long_volume(const Node& item, const std::string& sub, Mount& m) {
    std::string type = "volume";
    for (std::size_t j = 0; j < item.entries.size(); ++j) {
      const auto& [k, v] = item.entries[j];
      std::string kk = sub + "." + k;
      if (k == "type") {
        type = scalar(v, kk);
      } else if (k == "source") {
        m.source = scalar(v, kk);
      } else if (k == "target") {
        m.target = scalar(v, kk);
      } else if (k == "read_only") {
        m.read_only = boolean(v, kk);
      } else if (k == "consistency" || k == "bind" || k == "volume" || k == "tmpfs") {
        // options that do not change what is mounted where
      } else if (!starts_with(k, "x-")) {
        warn(item.key_lines[j], kk);
      }
    }
    if (type == "volume") {
      m.kind = Mount::Kind::volume;
    } else if (type == "bind") {
      m.kind = Mount::Kind::bind;
      if (m.source.empty()) {
        fail(item, sub, "a bind mount needs a source path");
      }
    } else if (type == "tmpfs") {
      m.kind = Mount::Kind::tmpfs;
      m.source.clear();
    } else {
      fail(item, sub + ".type", "expected volume, bind or tmpfs, not '" + type + "'");
    }
  }

  // --- networks, depends_on, healthcheck ---------------------------------------------

  void networks(const Node& n, const std::string& key, std::vector<std::string>& out) {
    if (n.kind == Kind::sequence) {
      out = string_list(n, key);
    } else if (n.kind == Kind::mapping) {
      for (std::size_t i = 0; i < n.entries.size(); ++i) {
        const auto& [name, v] = n.entries[i];
        out.push_back(name);
        if (v.kind == Kind::mapping) {
          for (std::size_t j = 0; j < v.entries.size(); ++j) {
            warn(v.key_lines[j], key + "." + name + "." + v.entries[j].first);
          }
        } else if (v.kind != Kind::null) {
          fail(v, key + "." + name, "expected a mapping (aliases, ...) or nothing");
        }
      }
    } else {
      fail(n, key, "expected a list of network names or a mapping");
    }
  }

  void depends_on(const Node& n, const std::string& key, std::vector<Dependency>& out) {
    if (n.kind == Kind::sequence) {
      for (std::size_t i = 0; i < n.items.size(); ++i) {
        std::string sub = key + "[" + std::to_string(i) + "]";
        Dependency d;
        d.service = scalar(n.items[i], sub);
        d.where = at(n.items[i], sub);
        out.push_back(std::move(d));
      }
      return;
    }
    if (n.kind != Kind::mapping) {
      fail(n, key, "expected a list of service names or a mapping");
    }
    for (std::size_t i = 0; i < n.entries.size(); ++i) {
      const auto& [name, v] = n.entries[i];
      std::string sub = key + "." + name;
      Dependency d;
      d.service = name;
      d.where = {file_, n.key_lines[i], sub};
      if (v.kind != Kind::mapping && v.kind != Kind::null) {
        fail(v, sub, "expected a mapping (condition, required)");
      }
      for (std::size_t j = 0; j < v.entries.size(); ++j) {
        const auto& [k, val] = v.entries[j];
        std::string kk = sub + "." + k;
        if (k == "condition") {
          std::string c = scalar(val, kk);
          if (c == "service_started") {
            d.condition = Dependency::Condition::started;
          } else if (c == "service_healthy") {
            d.condition = Dependency::Condition::healthy;
          } else if (c == "service_completed_successfully") {
            d.condition = Dependency::Condition::completed_successfully;
          } else {
            fail(val, kk,
                 "expected service_started, service_healthy or "
                 "service_completed_successfully");
          }
        } else if (k == "required") {
          d.required = boolean(val, kk);
        } else if (k == "restart") {
          (void)boolean(val, kk);
        } else if (!starts_with(k, "x-")) {
          warn(v.key_lines[j], kk);
        }
      }
      out.push_back(std::move(d));
    }
  }

  std::chrono::milliseconds duration(const Node& n, const std::string& key) const {
    return parse_duration(scalar(n, key), at(n, key));
  }

  Healthcheck healthcheck(const Node& n, const std::string& key) {
    Healthcheck h;
    if (n.kind != Kind::mapping) {
      fail(n, key, "expected a mapping (test, interval, timeout, retries, ...)");
    }
    for (std::size_t i = 0; i < n.entries.size(); ++i) {
      const auto& [k, v] = n.entries[i];
      std::string sub = key + "." + k;
      if (k == "test") {
        if (v.kind == Kind::scalar) {
          h.test = {"CMD-SHELL", v.scalar};
        } else {
          h.test = string_list(v, sub);
          if (h.test.empty() ||
              !(h.test[0] == "CMD" || h.test[0] == "CMD-SHELL" || h.test[0] == "NONE")) {
            fail(v, sub, "a list test starts with CMD, CMD-SHELL or NONE");
          }
          if (h.test[0] == "NONE") {
            h.disable = true;
          } else if (h.test.size() < 2) {
            fail(v, sub, "the test has no command after " + h.test[0]);
          }
        }
      } else if (k == "interval") {
        h.interval = duration(v, sub);
      } else if (k == "timeout") {
        h.timeout = duration(v, sub);
      } else if (k == "start_period") {
        h.start_period = duration(v, sub);
      } else if (k == "retries") {
        h.retries = static_cast<int>(integer(v, sub, 0, 1000000));
      } else if (k == "disable") {
        h.disable = h.disable || boolean(v, sub);
      } else if (!starts_with(k, "x-")) {
        warn(n.key_lines[i], sub);
      }
    }
    return h;
  }

  // --- limits --------------------------------------------------------------------------

  std::uint64_t memory(const Node& n, const std::string& key) const {
    return parse_memory(scalar(n, key), at(n, key));
  }

  double cpus(const Node& n, const std::string& key) const {
    return parse_cpus(scalar(n, key), at(n, key));
  }

  void deploy(const Node& n, const std::string& key, Service& s) {
    if (n.kind != Kind::mapping) {
      fail(n, key, "expected a mapping");
    }
    for (std::size_t i = 0; i < n.entries.size(); ++i) {
      const auto& [k, v] = n.entries[i];
      std::string sub = key + "." + k;
      if (k != "resources") {
        if (!starts_with(k, "x-")) {
          warn(n.key_lines[i], sub);
        }
        continue;
      }
      if (v.kind != Kind::mapping) {
        fail(v, sub, "expected a mapping (limits, reservations)");
      }
      for (std::size_t j = 0; j < v.entries.size(); ++j) {
        const auto& [rk, rv] = v.entries[j];
        std::string rsub = sub + "." + rk;
        if (rk != "limits") {
          warn(v.key_lines[j], rsub);
          continue;
        }
        if (rv.kind != Kind::mapping) {
          fail(rv, rsub, "expected a mapping (memory, cpus, pids)");
        }
        for (std::size_t l = 0; l < rv.entries.size(); ++l) {
          const auto& [lk, lv] = rv.entries[l];
          std::string lsub = rsub + "." + lk;
          if (lk == "memory") {
            s.memory = memory(lv, lsub);
          } else if (lk == "cpus") {
            s.cpus = cpus(lv, lsub);
          } else if (lk == "pids") {
            long p = integer(lv, lsub, -1, 1L << 30);
            s.pids = p < 0 ? 0 : static_cast<int>(p);
          } else {
            warn(rv.key_lines[l], lsub);
          }
        }
      }
    }
  }

  const std::string& file_;
  const Vars& vars_;
  const std::filesystem::path& dir_;
  std::size_t max_bytes_;
  Project& project_;
  std::size_t interpolated_ = 0;
};

}  // namespace

bool valid_name(std::string_view name) {
  if (name.empty() || std::isalnum(static_cast<unsigned char>(name[0])) == 0) {
    return false;
  }
  return std::all_of(name.begin(), name.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) != 0 || c == '_' || c == '.' || c == '-';
  });
}

Project parse_file(std::string_view text, const std::string& file, const Vars& vars,
                   const std::filesystem::path& dir, std::size_t max_bytes) {
  if (text.size() > max_bytes) {
    throw Error({file, 0, ""}, "the file is " + std::to_string(text.size()) +
                                   " bytes; the limit is " + std::to_string(max_bytes));
  }
  Node root = parse_tree(text, file);
  Project project;
  project.files.push_back(file);
  Parser(file, vars, dir, max_bytes, project).document(root);
  return project;
}

}  // namespace ck::compose::detail
