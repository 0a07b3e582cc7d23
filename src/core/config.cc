#include "core/config.h"

#include <algorithm>
#include <charconv>
#include <fmt/format.h>
#include <fstream>
#include <sstream>
#include <yaml-cpp/yaml.h>

#include "core/public_url.h"

namespace ck {
namespace {

using Setter = std::function<Result<void>(Config&, const std::string&)>;

Result<void> set_string(std::string& field, const std::string& v) {
  field = v;
  return outcome::success();
}

Result<void> set_duration(Duration& field, const std::string& v) {
  BOOST_OUTCOME_TRY(d, parse_duration(v));
  field = d;
  return outcome::success();
}

Result<void> set_size(std::uint64_t& field, const std::string& v) {
  BOOST_OUTCOME_TRY(s, parse_size(v));
  field = s;
  return outcome::success();
}

Result<void> set_int(int& field, const std::string& v, int lo, int hi) {
  int n = 0;
  auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), n);
  if (ec != std::errc() || p != v.data() + v.size() || n < lo || n > hi) {
    return fail(Errc::invalid_argument,
                fmt::format("'{}' is not a whole number from {} to {}", v, lo, hi));
  }
  field = n;
  return outcome::success();
}

// A host name for gateway.domain / gateway.control_host: letters, digits, '-' and '.', stored
// lower-cased without a trailing dot. Empty unsets it.
Result<void> set_host_name(std::string& field, const std::string& v) {
  std::string h;
  for (char c : v) h.push_back(c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c);
  if (!h.empty() && h.back() == '.') h.pop_back();
  bool ok = h.size() <= 253 && (h.empty() || (h.front() != '.' && h.front() != '-'));
  for (char c : h) {
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '.')) ok = false;
  }
  if (h.find("..") != std::string::npos) ok = false;
  if (!ok) {
    return fail(Errc::invalid_argument,
                fmt::format("'{}' is not a host name (letters, digits, '-' and '.', no port, "
                            "e.g. example.test)",
                            v));
  }
  field = h;
  return outcome::success();
}

Result<void> set_bool(bool& field, const std::string& v) {
  if (v == "true" || v == "yes" || v == "on" || v == "1") {
    field = true;
  } else if (v == "false" || v == "no" || v == "off" || v == "0") {
    field = false;
  } else {
    return fail(Errc::invalid_argument, fmt::format("'{}' is not true or false", v));
  }
  return outcome::success();
}

Result<void> set_one_of(std::string& field, const std::string& v,
                        std::initializer_list<std::string_view> allowed) {
  for (auto a : allowed) {
    if (v == a) {
      field = v;
      return outcome::success();
    }
  }
  std::string list;
  for (auto a : allowed) list += (list.empty() ? "" : ", ") + std::string(a);
  return fail(Errc::invalid_argument, fmt::format("'{}' is not one of: {}", v, list));
}

Result<void> set_port_range(Config& c, const std::string& v) {
  auto dash = v.find('-');
  int lo = 0, hi = 0;
  if (dash == std::string::npos || set_int(lo, v.substr(0, dash), 1, 65535).has_error() ||
      set_int(hi, v.substr(dash + 1), 1, 65535).has_error() || lo > hi) {
    return fail(Errc::invalid_argument,
                fmt::format("'{}' is not a port range (write it like 8000-8100)", v));
  }
  c.runtime.port_min = lo;
  c.runtime.port_max = hi;
  return outcome::success();
}

Result<void> set_uid_range(Config& c, const std::string& v) {
  auto dash = v.find('-');
  int lo = 0, hi = 0;
  if (dash == std::string::npos || set_int(lo, v.substr(0, dash), 1000, 2147483646).has_error() ||
      set_int(hi, v.substr(dash + 1), 1000, 2147483646).has_error() || lo > hi) {
    return fail(Errc::invalid_argument,
                fmt::format("'{}' is not a uid range (write it like 200000-265535, both ends "
                            "between 1000 and 2147483646)",
                            v));
  }
  c.runtime.uid_min = lo;
  c.runtime.uid_max = hi;
  return outcome::success();
}

const std::vector<std::pair<std::string, Setter>>& key_table() {
  static const std::vector<std::pair<std::string, Setter>> table = {
      {"gateway.listen",
       [](Config& c, const std::string& v) -> Result<void> {
         BOOST_OUTCOME_TRY(parse_listen(v));
         c.gateway.listen = v;
         return outcome::success();
       }},
      {"gateway.request_timeout",
       [](Config& c, const std::string& v) { return set_duration(c.gateway.request_timeout, v); }},
      {"gateway.max_body",
       [](Config& c, const std::string& v) { return set_size(c.gateway.max_body, v); }},
      {"gateway.max_file_body",
       [](Config& c, const std::string& v) { return set_size(c.gateway.max_file_body, v); }},
      {"gateway.max_header",
       [](Config& c, const std::string& v) { return set_size(c.gateway.max_header, v); }},
      {"gateway.threads",
       [](Config& c, const std::string& v) { return set_int(c.gateway.threads, v, 0, 256); }},
      {"gateway.event_buffer",
       [](Config& c, const std::string& v) { return set_size(c.gateway.event_buffer, v); }},
      {"gateway.max_connections",
       [](Config& c, const std::string& v) { return set_int(c.gateway.max_connections, v, 1, 1000000); }},
      {"gateway.max_connections_per_ip",
       [](Config& c, const std::string& v) {
         return set_int(c.gateway.max_connections_per_ip, v, 1, 1000000);
       }},
      {"gateway.header_timeout",
       [](Config& c, const std::string& v) { return set_duration(c.gateway.header_timeout, v); }},
      {"gateway.ws_idle_timeout",
       [](Config& c, const std::string& v) { return set_duration(c.gateway.ws_idle_timeout, v); }},
      {"gateway.live_reload",
       [](Config& c, const std::string& v) { return set_bool(c.gateway.live_reload, v); }},
      {"gateway.domain",
       [](Config& c, const std::string& v) { return set_host_name(c.gateway.domain, v); }},
      {"gateway.control_host",
       [](Config& c, const std::string& v) { return set_host_name(c.gateway.control_host, v); }},
      {"gateway.tls.cert",
       [](Config& c, const std::string& v) { return set_string(c.gateway.tls.cert, v); }},
      {"gateway.tls.key",
       [](Config& c, const std::string& v) { return set_string(c.gateway.tls.key, v); }},
      {"gateway.tls.certs",
       [](Config& c, const std::string& v) -> Result<void> {
         BOOST_OUTCOME_TRY(pairs, parse_tls_pairs(v));
         c.gateway.tls_certs = std::move(pairs);
         return outcome::success();
       }},
      {"backup.destinations",
       [](Config& c, const std::string& v) -> Result<void> {
         BOOST_OUTCOME_TRY(list, parse_backup_destinations(v));
         c.backup.destinations = std::move(list);
         return outcome::success();
       }},
      {"backup.schedule",
       [](Config& c, const std::string& v) { return set_duration(c.backup.schedule, v); }},
      {"backup.keep.last",
       [](Config& c, const std::string& v) { return set_int(c.backup.keep_last, v, 0, 100000); }},
      {"backup.keep.hourly",
       [](Config& c, const std::string& v) { return set_int(c.backup.keep_hourly, v, 0, 100000); }},
      {"backup.keep.daily",
       [](Config& c, const std::string& v) { return set_int(c.backup.keep_daily, v, 0, 100000); }},
      {"backup.keep.weekly",
       [](Config& c, const std::string& v) { return set_int(c.backup.keep_weekly, v, 0, 100000); }},
      {"backup.keep.monthly",
       [](Config& c, const std::string& v) { return set_int(c.backup.keep_monthly, v, 0, 100000); }},
      {"backup.key", [](Config& c, const std::string& v) { return set_string(c.backup.key, v); }},
      {"gateway.tls_reload",
       [](Config& c, const std::string& v) { return set_duration(c.gateway.tls_reload, v); }},
      {"gateway.redirect_http",
       [](Config& c, const std::string& v) -> Result<void> {
         if (!v.empty()) {
           BOOST_OUTCOME_TRY(parse_listen(v));
         }
         c.gateway.redirect_http = v;
         return outcome::success();
       }},
      {"gateway.hsts",
       [](Config& c, const std::string& v) -> Result<void> {
         BOOST_OUTCOME_TRY(d, parse_duration(v));
         if (d.count() < 0) return fail(Errc::invalid_argument, "the HSTS max-age cannot be negative");
         c.gateway.hsts = d;
         return outcome::success();
       }},
      {"gateway.public_url",
       [](Config& c, const std::string& v) -> Result<void> {
         if (!v.empty()) {
           auto checked = make_public_address(v, "", 0, "");
           if (checked.has_error()) return checked.error();
         }
         c.gateway.public_url = v;
         return outcome::success();
       }},
      {"storage.kind",
       [](Config& c, const std::string& v) { return set_one_of(c.storage.kind, v, {"dir", "s3", "git"}); }},
      {"storage.path", [](Config& c, const std::string& v) { return set_string(c.storage.path, v); }},
      {"storage.scan_interval",
       [](Config& c, const std::string& v) { return set_duration(c.storage.scan_interval, v); }},
      {"storage.debounce",
       [](Config& c, const std::string& v) { return set_duration(c.storage.debounce, v); }},
      {"storage.bucket", [](Config& c, const std::string& v) { return set_string(c.storage.bucket, v); }},
      {"storage.prefix", [](Config& c, const std::string& v) { return set_string(c.storage.prefix, v); }},
      {"storage.endpoint",
       [](Config& c, const std::string& v) { return set_string(c.storage.endpoint, v); }},
      {"storage.region", [](Config& c, const std::string& v) { return set_string(c.storage.region, v); }},
      {"storage.addressing",
       [](Config& c, const std::string& v) {
         return set_one_of(c.storage.addressing, v, {"auto", "path", "virtual"});
       }},
      {"storage.list_interval",
       [](Config& c, const std::string& v) { return set_duration(c.storage.list_interval, v); }},
      {"storage.profile", [](Config& c, const std::string& v) { return set_string(c.storage.profile, v); }},
      {"storage.access_key",
       [](Config& c, const std::string& v) { return set_string(c.storage.access_key, v); }},
      {"storage.secret_key",
       [](Config& c, const std::string& v) { return set_string(c.storage.secret_key, v); }},
      {"runtime.kind",
       [](Config& c, const std::string& v) {
         return set_one_of(c.runtime.kind, v, {"auto", "docker", "process", "swarm"});
       }},
      {"runtime.ports", set_port_range},
      {"runtime.ready_timeout",
       [](Config& c, const std::string& v) { return set_duration(c.runtime.ready_timeout, v); }},
      {"runtime.install_concurrency",
       [](Config& c, const std::string& v) { return set_int(c.runtime.install_concurrency, v, 0, 256); }},
      {"runtime.uid_range", set_uid_range},
      {"runtime.compose_host_ports",
       [](Config& c, const std::string& v) { return set_bool(c.runtime.compose_host_ports, v); }},
      {"runtime.cleanup_interval",
       [](Config& c, const std::string& v) -> Result<void> {
         BOOST_OUTCOME_TRY(d, parse_duration(v));
         if (d < std::chrono::minutes(1)) {
           return fail(Errc::invalid_argument, fmt::format("'{}' is shorter than a minute; cleanups walk "
                                                           "the engine and DATA, give 1m or more", v));
         }
         c.runtime.cleanup_interval = d;
         return outcome::success();
       }},
      {"runtime.deps_keep",
       [](Config& c, const std::string& v) { return set_duration(c.runtime.deps_keep, v); }},
      {"runtime.deps_max_size",
       [](Config& c, const std::string& v) { return set_size(c.runtime.deps_max_size, v); }},
      {"data.trash_keep", [](Config& c, const std::string& v) { return set_duration(c.trash_keep, v); }},
      {"state.keep_history", [](Config& c, const std::string& v) { return set_duration(c.keep_history, v); }},
      {"log.max_size",
       [](Config& c, const std::string& v) -> Result<void> {
         BOOST_OUTCOME_TRY(size, parse_size(v));
         if (size < 4096) {
           return fail(Errc::invalid_argument, fmt::format("'{}' is under 4k; give a size such as 10m", v));
         }
         c.log_max_size = size;
         return outcome::success();
       }},
      {"log.keep", [](Config& c, const std::string& v) { return set_int(c.log_keep, v, 0, 100); }},
      {"runtime.allow_weak_sandbox",
       [](Config& c, const std::string& v) { return set_bool(c.runtime.allow_weak_sandbox, v); }},
      {"git.poll", [](Config& c, const std::string& v) { return set_duration(c.git.poll, v); }},
      {"git.autocommit",
       [](Config& c, const std::string& v) { return set_one_of(c.git.autocommit, v, {"off", "on-save", "interval"}); }},
      {"git.autocommit_interval",
       [](Config& c, const std::string& v) { return set_duration(c.git.autocommit_interval, v); }},
      {"git.webhook_secret", [](Config& c, const std::string& v) { return set_string(c.git.webhook_secret, v); }},
      {"git.username", [](Config& c, const std::string& v) { return set_string(c.git.username, v); }},
      {"git.token", [](Config& c, const std::string& v) { return set_string(c.git.token, v); }},
      {"git.allow_local_remotes",
       [](Config& c, const std::string& v) { return set_bool(c.git.allow_local_remotes, v); }},
      {"jobs.max_attempts",
       [](Config& c, const std::string& v) { return set_int(c.jobs.max_attempts, v, 1, 1000); }},
      {"jobs.backoff", [](Config& c, const std::string& v) { return set_duration(c.jobs.backoff, v); }},
      {"jobs.backoff_cap",
       [](Config& c, const std::string& v) { return set_duration(c.jobs.backoff_cap, v); }},
      {"data", [](Config& c, const std::string& v) { return set_string(c.data, v); }},
      {"templates", [](Config& c, const std::string& v) { return set_string(c.templates, v); }},
      {"idle.idle_after", [](Config& c, const std::string& v) { return set_duration(c.idle.idle_after, v); }},
      {"idle.background_after",
       [](Config& c, const std::string& v) { return set_duration(c.idle.background_after, v); }},
      {"idle.stop_after", [](Config& c, const std::string& v) { return set_duration(c.idle.stop_after, v); }},
      {"idle.grace", [](Config& c, const std::string& v) { return set_duration(c.idle.grace, v); }},
      {"idle.wake_timeout",
       [](Config& c, const std::string& v) { return set_duration(c.idle.wake_timeout, v); }},
      {"images.node", [](Config& c, const std::string& v) { return set_string(c.images["node"], v); }},
      {"images.python", [](Config& c, const std::string& v) { return set_string(c.images["python"], v); }},
      {"images.php", [](Config& c, const std::string& v) { return set_string(c.images["php"], v); }},
      {"images.go", [](Config& c, const std::string& v) { return set_string(c.images["go"], v); }},
      {"images.ruby", [](Config& c, const std::string& v) { return set_string(c.images["ruby"], v); }},
      {"images.static", [](Config& c, const std::string& v) { return set_string(c.images["static"], v); }},
      {"limits.memory", [](Config& c, const std::string& v) { return set_size(c.limits.memory, v); }},
      {"limits.cpus",
       [](Config& c, const std::string& v) -> Result<void> {
         double d = 0;
         auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), d);
         if (ec != std::errc() || p != v.data() + v.size() || d <= 0) {
           return fail(Errc::invalid_argument, fmt::format("'{}' is not a positive number of CPUs", v));
         }
         c.limits.cpus = d;
         return outcome::success();
       }},
      {"limits.pids", [](Config& c, const std::string& v) { return set_int(c.limits.pids, v, 1, 1 << 22); }},
      {"limits.install_memory",
       [](Config& c, const std::string& v) { return set_size(c.limits.install_memory, v); }},
      {"limits.max_memory",
       [](Config& c, const std::string& v) { return set_size(c.limits.max_memory, v); }},
      {"limits.max_cpus",
       [](Config& c, const std::string& v) -> Result<void> {
         double d = 0;
         auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), d);
         if (ec != std::errc() || p != v.data() + v.size() || d <= 0) {
           return fail(Errc::invalid_argument, fmt::format("'{}' is not a positive number of CPUs", v));
         }
         c.limits.max_cpus = d;
         return outcome::success();
       }},
      {"limits.max_pids",
       [](Config& c, const std::string& v) { return set_int(c.limits.max_pids, v, 1, 1 << 22); }},
      {"limits.egress", [](Config& c, const std::string& v) { return set_bool(c.limits.egress, v); }},
      {"limits.build_memory",
       [](Config& c, const std::string& v) { return set_size(c.limits.build_memory, v); }},
      {"limits.build_timeout",
       [](Config& c, const std::string& v) { return set_duration(c.limits.build_timeout, v); }},
      {"auth.admin_token", [](Config& c, const std::string& v) { return set_string(c.admin_token, v); }},
      {"log.format",
       [](Config& c, const std::string& v) { return set_one_of(c.log_format, v, {"text", "json"}); }},
      {"log.level",
       [](Config& c, const std::string& v) {
         return set_one_of(c.log_level, v, {"trace", "debug", "info", "warn", "error"});
       }},
  };
  return table;
}

const Setter* find_setter(const std::string& key) {
  for (const auto& [k, setter] : key_table()) {
    if (k == key) return &setter;
  }
  return nullptr;
}

bool is_section(const std::string& prefix) {
  for (const auto& [k, setter] : key_table()) {
    if (k.size() > prefix.size() && k.starts_with(prefix) && k[prefix.size()] == '.') return true;
  }
  return false;
}

// gateway.tls.certs as a YAML list of {cert, key} maps, in parse_tls_pairs' text form.
Result<std::string> tls_pairs_text(const YAML::Node& list, const std::string& where) {
  std::string out;
  constexpr std::size_t kMaxPairs = 1000;
  if (list.size() > kMaxPairs) {
    return fail(Errc::invalid_argument,
                fmt::format("{}: gateway.tls.certs holds more than {} pairs", where, kMaxPairs));
  }
  for (const auto& item : list) {
    auto bad = [&](std::string_view why) {
      return fail(Errc::invalid_argument,
                  fmt::format("{}: gateway.tls.certs: {} (each item is {{cert: FILE, key: FILE}})",
                              where, why));
    };
    if (!item.IsMap()) return bad("an item is not a {cert, key} map");
    std::string cert, key;
    for (auto it = item.begin(); it != item.end(); ++it) {
      YAML::Node k = it->first;
      YAML::Node v = it->second;
      std::string name = k.as<std::string>();
      if (!v.IsScalar()) return bad("'" + name + "' must be a file name");
      if (name == "cert") {
        cert = v.Scalar();
      } else if (name == "key") {
        key = v.Scalar();
      } else {
        return bad("unknown key '" + name + "'");
      }
    }
    if (cert.empty() || key.empty()) return bad("an item lacks its cert or key");
    for (const auto& f : {cert, key}) {
      if (f.find_first_of(",:") != std::string::npos) {
        return bad("the file name '" + f + "' contains ',' or ':'; rename or link the file");
      }
    }
    if (!out.empty()) out += ',';
    out += cert + ":" + key;
  }
  return out;
}

Result<void> flatten(const YAML::Node& node, const std::string& prefix, const std::string& origin,
                     std::vector<Setting>& out) {
  for (auto it = node.begin(); it != node.end(); ++it) {
    // yaml-cpp's iterator yields a temporary pair: copy the nodes (cheap handles), never
    // bind references to them.
    YAML::Node key_node = it->first;
    YAML::Node value = it->second;
    std::string key = key_node.as<std::string>();
    std::string path = prefix.empty() ? key : prefix + "." + key;
    std::string where = fmt::format("{}:{}", origin, key_node.Mark().line + 1);
    if (value.IsMap()) {
      if (!is_section(path)) {
        return fail(Errc::invalid_argument,
                    fmt::format("{}: '{}' is not a configuration section (known keys: see "
                                "DESIGN.md \"Configuration\")",
                                where, path));
      }
      BOOST_OUTCOME_TRY(flatten(value, path, origin, out));
    } else if (value.IsScalar() || value.IsNull()) {
      if (!find_setter(path)) {
        return fail(Errc::invalid_argument,
                    fmt::format("{}: unknown configuration key '{}'", where, path));
      }
      out.push_back(Setting{path, value.IsNull() ? "" : value.Scalar(), where});
    } else if (value.IsSequence() && path == "gateway.tls.certs") {
      BOOST_OUTCOME_TRY(text, tls_pairs_text(value, where));
      out.push_back(Setting{path, std::move(text), where});
    } else if (value.IsSequence() && path == "backup.destinations") {
      // Kept as its flow text (what CK_BACKUP_DESTINATIONS holds); the setter parses it.
      YAML::Emitter e;
      e << YAML::Flow << YAML::DoubleQuoted << value;
      out.push_back(Setting{path, e.c_str(), where});
    } else {
      return fail(Errc::invalid_argument,
                  fmt::format("{}: '{}' must be a single value, not a list", where, path));
    }
  }
  return outcome::success();
}

}  // namespace

std::vector<std::string> config_keys() {
  std::vector<std::string> keys;
  for (const auto& [k, setter] : key_table()) keys.push_back(k);
  return keys;
}

std::string env_name_for(const std::string& key) {
  std::string out = "CK_";
  for (char c : key) {
    out += (c == '.') ? '_' : static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  }
  return out;
}

Result<void> apply_setting(Config& config, const Setting& s) {
  const Setter* setter = find_setter(s.key);
  if (!setter) {
    return fail(Errc::invalid_argument, fmt::format("{}: unknown configuration key '{}'", s.origin, s.key));
  }
  auto r = (*setter)(config, s.value);
  if (r.has_error()) {
    return fail(Errc::invalid_argument, fmt::format("{}: {}: {}", s.origin, s.key, r.error().message));
  }
  return outcome::success();
}

Result<std::vector<Setting>> read_yaml_settings(const std::string& text, const std::string& origin) {
  YAML::Node root;
  try {
    root = YAML::Load(text);
  } catch (const YAML::Exception& e) {
    return fail(Errc::invalid_argument, fmt::format("{}:{}: invalid YAML: {} (fix the file and start again)",
                                                    origin, e.mark.line + 1, e.msg));
  }
  std::vector<Setting> out;
  if (root.IsNull()) return out;
  if (!root.IsMap()) {
    return fail(Errc::invalid_argument,
                fmt::format("{}: the configuration must be a YAML mapping of sections", origin));
  }
  try {
    BOOST_OUTCOME_TRY(flatten(root, "", origin, out));
  } catch (const YAML::Exception& e) {
    return fail(Errc::invalid_argument, fmt::format("{}:{}: {}", origin, e.mark.line + 1, e.msg));
  }
  return out;
}

namespace {
Result<void> check_gateway(const GatewayConfig& g);
}  // namespace

Result<Config> load_config(const std::optional<std::filesystem::path>& file, const EnvLookup& env,
                           const std::vector<Setting>& flags) {
  Config config;
  if (file) {
    std::ifstream in(*file);
    if (!in) {
      return fail(Errc::not_found,
                  fmt::format("cannot read config file {}: {} (check the path given to --config)",
                              file->string(), std::strerror(errno)));
    }
    std::stringstream ss;
    ss << in.rdbuf();
    BOOST_OUTCOME_TRY(settings, read_yaml_settings(ss.str(), file->string()));
    for (const auto& s : settings) {
      BOOST_OUTCOME_TRY(apply_setting(config, s));
    }
  }
  if (env) {
    for (const auto& key : config_keys()) {
      auto name = env_name_for(key);
      if (auto v = env(name)) {
        BOOST_OUTCOME_TRY(apply_setting(config, Setting{key, *v, name}));
      }
    }
  }
  for (const auto& s : flags) {
    BOOST_OUTCOME_TRY(apply_setting(config, s));
  }
  BOOST_OUTCOME_TRY(check_gateway(config.gateway));
  return config;
}

std::vector<TlsFiles> GatewayConfig::tls_pairs() const {
  std::vector<TlsFiles> out;
  if (!tls.cert.empty() || !tls.key.empty()) out.push_back(tls);
  out.insert(out.end(), tls_certs.begin(), tls_certs.end());
  return out;
}

Result<std::vector<BackupDestinationConfig>> parse_backup_destinations(const std::string& text) {
  std::vector<BackupDestinationConfig> out;
  constexpr std::size_t kMaxText = 64 << 10, kMaxItems = 100;
  auto bad = [](std::string_view why) {
    return fail(Errc::invalid_argument,
                fmt::format("backup.destinations: {} (write a list of {{name, url: s3://BUCKET/PREFIX, "
                            "endpoint, region, profile, addressing, encrypt, mode}} maps)",
                            why));
  };
  if (text.find_first_not_of(" \t\r\n") == std::string::npos) return out;
  if (text.size() > kMaxText) return bad("the list is longer than 64 KiB");
  YAML::Node list;
  try {
    list = YAML::Load(text);
  } catch (const YAML::Exception& e) {
    return bad("not a YAML/JSON list: " + e.msg);
  }
  if (list.IsNull()) return out;
  if (!list.IsSequence()) return bad("not a list");
  if (list.size() > kMaxItems) return bad("more than 100 destinations");
  try {
    for (const auto& item : list) {
      if (!item.IsMap()) return bad("an item is not a map");
      BackupDestinationConfig d;
      for (auto it = item.begin(); it != item.end(); ++it) {
        YAML::Node k = it->first;
        YAML::Node v = it->second;
        std::string name = k.as<std::string>();
        if (!v.IsScalar() && !v.IsNull()) return bad("'" + name + "' must be a single value");
        std::string value = v.IsNull() ? "" : v.Scalar();
        if (name == "name") {
          d.name = value;
        } else if (name == "url") {
          d.url = value;
        } else if (name == "endpoint") {
          d.endpoint = value;
        } else if (name == "region") {
          d.region = value;
        } else if (name == "profile") {
          d.profile = value;
        } else if (name == "access_key") {
          d.access_key = value;
        } else if (name == "secret_key") {
          d.secret_key = value;
        } else if (name == "addressing") {
          BOOST_OUTCOME_TRY(set_one_of(d.addressing, value, {"auto", "path", "virtual"}));
        } else if (name == "mode") {
          BOOST_OUTCOME_TRY(set_one_of(d.mode, value, {"incremental", "mirror"}));
        } else if (name == "encrypt") {
          BOOST_OUTCOME_TRY(set_bool(d.encrypt, value));
        } else {
          return bad("unknown key '" + name + "'");
        }
      }
      if (d.name.empty() || d.url.empty()) return bad("an item lacks its name or url");
      for (const auto& other : out) {
        if (other.name == d.name) return bad("the name '" + d.name + "' is used twice");
      }
      out.push_back(std::move(d));
    }
  } catch (const YAML::Exception& e) {
    return bad(e.msg);
  }
  return out;
}

Result<std::vector<TlsFiles>> parse_tls_pairs(const std::string& text) {
  std::vector<TlsFiles> out;
  std::string_view rest = text;
  while (!rest.empty()) {
    auto comma = rest.find(',');
    std::string_view item = rest.substr(0, comma);
    rest = comma == std::string_view::npos ? std::string_view() : rest.substr(comma + 1);
    while (!item.empty() && item.front() == ' ') item.remove_prefix(1);
    while (!item.empty() && item.back() == ' ') item.remove_suffix(1);
    if (item.empty()) continue;
    auto colon = item.find(':');
    if (colon == std::string_view::npos || colon == 0 || colon + 1 == item.size() ||
        item.find(':', colon + 1) != std::string_view::npos) {
      return fail(Errc::invalid_argument,
                  fmt::format("'{}' is not a certificate and key pair (write CERT.pem:KEY.pem, "
                              "several separated by ',')",
                              item));
    }
    out.push_back(TlsFiles{std::string(item.substr(0, colon)), std::string(item.substr(colon + 1))});
  }
  return out;
}

namespace {

// What no single setting can check: settings that only make sense together.
Result<void> check_gateway(const GatewayConfig& g) {
  if (g.tls.cert.empty() != g.tls.key.empty()) {
    return fail(Errc::invalid_argument,
                fmt::format("gateway.tls.{} is set but gateway.tls.{} is not: give both the "
                            "certificate and its private key (PEM files)",
                            g.tls.cert.empty() ? "key" : "cert", g.tls.cert.empty() ? "cert" : "key"));
  }
  if (!g.redirect_http.empty() && !g.tls_enabled()) {
    return fail(Errc::invalid_argument,
                "gateway.redirect_http redirects to https, but TLS is off: set gateway.tls.cert "
                "and gateway.tls.key, or unset gateway.redirect_http");
  }
  if (!g.redirect_http.empty()) {
    BOOST_OUTCOME_TRY(r, parse_listen(g.redirect_http));
    BOOST_OUTCOME_TRY(l, parse_listen(g.listen));
    if (r.second != 0 && r == l) {
      return fail(Errc::invalid_argument,
                  fmt::format("gateway.redirect_http ({}) is the same address as gateway.listen: "
                              "give the plain HTTP listener its own port (e.g. :80 next to :443)",
                              g.redirect_http));
    }
  }
  return outcome::success();
}

}  // namespace

Result<std::pair<std::string, std::uint16_t>> parse_listen(const std::string& listen) {
  auto colon = listen.rfind(':');
  auto bad = [&] {
    return fail(Errc::invalid_argument,
                fmt::format("'{}' is not a listen address (write it like 127.0.0.1:8080)", listen));
  };
  if (colon == std::string::npos) return bad();
  std::string host = listen.substr(0, colon);
  std::string port_text = listen.substr(colon + 1);
  int port = 0;
  auto [p, ec] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
  if (ec != std::errc() || p != port_text.data() + port_text.size() || port < 0 || port > 65535) {
    return bad();
  }
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  if (host.empty()) host = "0.0.0.0";
  return std::make_pair(host, static_cast<std::uint16_t>(port));
}

}  // namespace ck
