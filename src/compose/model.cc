// Files and the whole project: finding and reading the compose file, its override and the
// .env; the checks across services; profiles; merging; start order.
#include "compose/model.h"

#include <algorithm>
#include <fstream>
#include <set>
#include <tuple>

#include "compose/internal.h"
#include "compose/tree.h"

namespace ck::compose {

namespace fs = std::filesystem;

namespace {

std::string format(const Location& where, const std::string& message) {
  std::string out = where.file.empty() ? std::string("compose") : where.file;
  if (where.line > 0) {
    out += ":" + std::to_string(where.line);
  }
  if (!where.key.empty()) {
    out += ": " + where.key;
  }
  return out + ": " + message;
}

const char* const kFileNames[] = {"compose.yaml", "compose.yml", "docker-compose.yaml",
                                  "docker-compose.yml"};

/// `dir/name` when it exists and, symlinks resolved, stays inside `dir`.
std::optional<fs::path> inside_file(const fs::path& dir, const std::string& name) {
  std::error_code ec;
  fs::path p = dir / name;
  if (!fs::exists(p, ec)) {
    return std::nullopt;
  }
  if (!detail::is_within(fs::weakly_canonical(dir, ec), fs::weakly_canonical(p, ec))) {
    throw Error({name, 0, ""},
                "the file is a link to outside the workspace folder; replace the "
                "link with the file itself");
  }
  return p;
}

}  // namespace

Error::Error(Location where, const std::string& message)
    : std::runtime_error(format(where, message)), where_(std::move(where)), message_(message) {}

namespace detail {

bool is_within(const fs::path& root, const fs::path& path) {
  fs::path r = root.lexically_normal();
  fs::path p = path.lexically_normal();
  if (!r.empty() && r.filename().empty()) {
    r = r.parent_path();
  }
  if (!p.empty() && p.filename().empty()) {
    p = p.parent_path();
  }
  auto ri = r.begin();
  auto pi = p.begin();
  for (; ri != r.end(); ++ri, ++pi) {
    if (pi == p.end() || *ri != *pi) {
      return false;
    }
  }
  for (; pi != p.end(); ++pi) {
    if (*pi == "..") {
      return false;
    }
  }
  return true;
}

std::string read_limited(const fs::path& path, const std::string& shown, std::size_t max_bytes,
                         const Location& where) {
  std::error_code ec;
  if (!fs::is_regular_file(path, ec)) {  // a FIFO or device would block or never end
    throw Error(where, "'" + shown + "' is not a regular file");
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    throw Error(where, "cannot read '" + shown + "'");
  }
  std::string text;
  text.resize(max_bytes + 1);
  in.read(text.data(), static_cast<std::streamsize>(text.size()));
  text.resize(static_cast<std::size_t>(in.gcount()));
  if (text.size() > max_bytes) {
    throw Error({shown, 0, ""}, "the file is larger than " + std::to_string(max_bytes) +
                                    " bytes, the limit; make it smaller");
  }
  return text;
}

void finalize(Project& project, const std::vector<std::string>& profiles, const Vars& vars) {
  auto names = [&] {
    std::string out;
    for (const auto& [name, s] : project.services) {
      out += (out.empty() ? "" : ", ") + name;
    }
    return out;
  };
  if (project.services.empty()) {
    throw Error({project.files.empty() ? "" : project.files.front(), 0, "services"},
                "the file defines no services; add at least one under `services:`");
  }
  for (const auto& [name, s] : project.services) {
    if (s.image.empty() && !s.build) {
      throw Error(s.where, "the service needs an image or a build");
    }
    for (const auto& d : s.depends_on) {
      if (project.services.count(d.service) == 0) {
        throw Error(d.where, "depends on '" + d.service +
                                 "', which is not a service of this project (services: " + names() +
                                 ")");
      }
    }
    for (const auto& m : s.volumes) {
      if (m.kind == Mount::Kind::volume && !m.source.empty() &&
          project.volumes.count(m.source) == 0) {
        throw Error(m.where, "volume '" + m.source +
                                 "' is not declared; add it under the top-level `volumes:`");
      }
    }
    for (const auto& n : s.networks) {
      if (n != "default" && project.networks.count(n) == 0) {
        throw Error({s.where.file, s.where.line, s.where.key + ".networks"},
                    "network '" + n + "' is not declared; add it under the top-level `networks:`");
      }
    }
  }
  // Profiles: the options', then COMPOSE_PROFILES (comma-separated); "*" enables all.
  std::set<std::string> active(profiles.begin(), profiles.end());
  if (auto it = vars.find("COMPOSE_PROFILES"); it != vars.end()) {
    std::string list = it->second;
    std::size_t start = 0;
    while (start <= list.size()) {
      std::size_t comma = list.find(',', start);
      std::string p = list.substr(start, comma - start);
      p.erase(0, p.find_first_not_of(' '));
      p.erase(p.find_last_not_of(' ') + 1);
      if (!p.empty()) {
        active.insert(p);
      }
      if (comma == std::string::npos) {
        break;
      }
      start = comma + 1;
    }
  }
  std::map<std::string, std::vector<std::string>> dropped;
  if (active.count("*") == 0) {
    for (auto it = project.services.begin(); it != project.services.end();) {
      const auto& p = it->second.profiles;
      bool on = p.empty() || std::any_of(p.begin(), p.end(),
                                         [&](const std::string& x) { return active.count(x); });
      if (on) {
        ++it;
      } else {
        dropped[it->first] = p;
        it = project.services.erase(it);
      }
    }
  }
  for (auto& [name, s] : project.services) {
    std::vector<Dependency> kept;
    for (auto& d : s.depends_on) {
      auto off = dropped.find(d.service);
      if (off == dropped.end()) {
        kept.push_back(std::move(d));
      } else if (d.required) {
        std::string ps;
        for (const auto& p : off->second) {
          ps += (ps.empty() ? "" : ",") + p;
        }
        throw Error(d.where, "depends on '" + d.service + "', which only runs with profile " + ps +
                                 "; enable it (COMPOSE_PROFILES=" + ps +
                                 ") or mark the dependency required: false");
      }
    }
    s.depends_on = std::move(kept);
  }
  if (project.services.empty()) {
    throw Error({project.files.empty() ? "" : project.files.front(), 0, "services"},
                "no service is active with the enabled profiles");
  }
  (void)start_order(project);
}

}  // namespace detail

std::optional<std::string> find_file(const fs::path& dir) {
  std::error_code ec;
  for (const char* name : kFileNames) {
    if (fs::is_regular_file(dir / name, ec)) {
      return std::string(name);
    }
  }
  return std::nullopt;
}

Project load(const LoadOptions& options) {
  auto file = find_file(options.dir);
  if (!file) {
    throw Error({"", 0, ""},
                "no compose.yaml, compose.yml, docker-compose.yaml or "
                "docker-compose.yml in " +
                    options.dir.string());
  }
  Vars vars;
  if (auto env = inside_file(options.dir, ".env")) {
    std::string text = detail::read_limited(*env, ".env", options.max_bytes, {".env", 0, ""});
    for (auto& [k, v] : detail::parse_env_text(text, ".env")) {
      vars[k] = std::move(v);
    }
  }
  for (const auto& [k, v] : options.vars) {
    vars[k] = v;
  }
  auto base_path = inside_file(options.dir, *file);
  std::string text = detail::read_limited(*base_path, *file, options.max_bytes, {*file, 0, ""});
  Project project = detail::parse_file(text, *file, vars, options.dir, options.max_bytes);
  std::size_t dot = file->rfind('.');
  std::string override_name = file->substr(0, dot) + ".override" + file->substr(dot);
  if (auto over = inside_file(options.dir, override_name)) {
    std::string over_text =
        detail::read_limited(*over, override_name, options.max_bytes, {override_name, 0, ""});
    project = merge(std::move(project), detail::parse_file(over_text, override_name, vars,
                                                           options.dir, options.max_bytes));
  }
  detail::finalize(project, options.profiles, vars);
  return project;
}

Project parse(std::string_view text, const std::string& file, const Vars& vars,
              const fs::path& dir) {
  Project project = detail::parse_file(text, file, vars, dir, LoadOptions{}.max_bytes);
  detail::finalize(project, {}, vars);
  return project;
}

namespace {

void merge_service(Service& b, const Service& o) {
  if (!o.image.empty()) {
    b.image = o.image;
  }
  if (o.build) {
    if (!b.build) {
      b.build = o.build;
    } else {
      if (o.build->context != ".") {
        b.build->context = o.build->context;
      }
      if (!o.build->dockerfile.empty()) {
        b.build->dockerfile = o.build->dockerfile;
      }
      if (!o.build->target.empty()) {
        b.build->target = o.build->target;
      }
      for (const auto& [k, v] : o.build->args) {
        b.build->args[k] = v;
      }
    }
  }
  if (o.command) {
    b.command = o.command;
  }
  if (o.entrypoint) {
    b.entrypoint = o.entrypoint;
  }
  for (const auto& [k, v] : o.environment) {
    b.environment[k] = v;
  }
  for (const auto& [k, v] : o.labels) {
    b.labels[k] = v;
  }
  // Sets keep a hostile override with thousands of entries linear.
  using PortKey = std::tuple<std::string, int, int, std::string>;
  std::set<PortKey> ports;
  for (const auto& p : b.ports) {
    ports.emplace(p.host_ip, p.host_port, p.container_port, p.protocol);
  }
  for (const auto& p : o.ports) {
    if (ports.emplace(p.host_ip, p.host_port, p.container_port, p.protocol).second) {
      b.ports.push_back(p);
    }
  }
  std::set<int> expose(b.expose.begin(), b.expose.end());
  for (int e : o.expose) {
    if (expose.insert(e).second) {
      b.expose.push_back(e);
    }
  }
  std::map<std::string, std::size_t> by_target;
  for (std::size_t i = 0; i < b.volumes.size(); ++i) {
    by_target.emplace(b.volumes[i].target, i);
  }
  for (const auto& m : o.volumes) {
    auto [it, added] = by_target.emplace(m.target, b.volumes.size());
    if (added) {
      b.volumes.push_back(m);
    } else {
      b.volumes[it->second] = m;
    }
  }
  std::set<std::string> networks(b.networks.begin(), b.networks.end());
  for (const auto& n : o.networks) {
    if (networks.insert(n).second) {
      b.networks.push_back(n);
    }
  }
  std::map<std::string, std::size_t> by_service;
  for (std::size_t i = 0; i < b.depends_on.size(); ++i) {
    by_service.emplace(b.depends_on[i].service, i);
  }
  for (const auto& d : o.depends_on) {
    auto [it, added] = by_service.emplace(d.service, b.depends_on.size());
    if (added) {
      b.depends_on.push_back(d);
    } else {
      b.depends_on[it->second] = d;
    }
  }
  if (o.healthcheck) {
    b.healthcheck = o.healthcheck;
  }
  for (std::string Service::*field :
       {&Service::restart, &Service::working_dir, &Service::user, &Service::network_mode,
        &Service::hostname, &Service::stop_signal}) {
    if (!(o.*field).empty()) {
      b.*field = o.*field;
    }
  }
  if (o.stop_grace_period) {
    b.stop_grace_period = o.stop_grace_period;
  }
  for (std::optional<bool> Service::*field : {&Service::tty, &Service::stdin_open}) {
    if (o.*field) {
      b.*field = o.*field;
    }
  }
  for (const auto& h : o.extra_hosts) {
    if (std::find(b.extra_hosts.begin(), b.extra_hosts.end(), h) == b.extra_hosts.end()) {
      b.extra_hosts.push_back(h);
    }
  }
  if (!o.profiles.empty()) {
    b.profiles = o.profiles;
  }
  if (o.memory != 0) {
    b.memory = o.memory;
  }
  if (o.cpus != 0) {
    b.cpus = o.cpus;
  }
  if (o.pids != 0) {
    b.pids = o.pids;
  }
  for (const auto& [k, where] : o.refused) {
    b.refused[k] = where;
  }
}

}  // namespace

Project merge(Project base, const Project& override) {
  if (!override.name.empty()) {
    base.name = override.name;
  }
  base.files.insert(base.files.end(), override.files.begin(), override.files.end());
  base.warnings.insert(base.warnings.end(), override.warnings.begin(), override.warnings.end());
  for (const auto& [name, s] : override.services) {
    auto it = base.services.find(name);
    if (it == base.services.end()) {
      base.services[name] = s;
    } else {
      merge_service(it->second, s);
    }
  }
  for (const auto& [name, v] : override.volumes) {
    auto labels =
        base.volumes.count(name) ? base.volumes[name].labels : std::map<std::string, std::string>{};
    base.volumes[name] = v;
    for (const auto& [k, l] : labels) {
      base.volumes[name].labels.emplace(k, l);
    }
  }
  for (const auto& [name, n] : override.networks) {
    base.networks[name] = n;
  }
  return base;
}

std::vector<std::string> start_order(const Project& project) {
  std::map<std::string, std::set<std::string>> waiting;  // service → deps not yet started
  std::map<std::string, std::vector<std::string>> dependents;
  for (const auto& [name, s] : project.services) {
    waiting[name];
    for (const auto& d : s.depends_on) {
      if (project.services.count(d.service) == 0) {
        throw Error(d.where, "depends on '" + d.service + "', which is not a service");
      }
      waiting[name].insert(d.service);
      dependents[d.service].push_back(name);
    }
  }
  std::set<std::string> ready;
  for (const auto& [name, deps] : waiting) {
    if (deps.empty()) {
      ready.insert(name);
    }
  }
  std::vector<std::string> order;
  while (!ready.empty()) {
    std::string next = *ready.begin();
    ready.erase(ready.begin());
    order.push_back(next);
    for (const auto& d : dependents[next]) {
      auto& deps = waiting[d];
      if (deps.erase(next) != 0 && deps.empty()) {
        ready.insert(d);
      }
    }
  }
  if (order.size() == project.services.size()) {
    return order;
  }
  // A cycle: walk from the first service left over along its unstarted dependencies.
  std::string at;
  for (const auto& [name, deps] : waiting) {
    if (!deps.empty()) {
      at = name;
      break;
    }
  }
  std::vector<std::string> path;
  while (std::find(path.begin(), path.end(), at) == path.end()) {
    path.push_back(at);
    at = *waiting[at].begin();
  }
  std::string cycle;
  for (auto it = std::find(path.begin(), path.end(), at); it != path.end(); ++it) {
    cycle += *it + " -> ";
  }
  cycle += at;
  const Service& s = project.services.at(at);
  throw Error({s.where.file, s.where.line, s.where.key + ".depends_on"},
              "the services depend on each other in a cycle: " + cycle + "; break it");
}

}  // namespace ck::compose
