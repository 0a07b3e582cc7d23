#include "runtime/docker/plan.h"

#include <arpa/inet.h>

#include <algorithm>
#include <bit>
#include <charconv>
#include <utility>
#include <fmt/format.h>
#include <yaml-cpp/yaml.h>

#include "core/hash.h"
#include "core/units.h"
#include "runtime/docker/engine.h"

namespace ck {
namespace {

using json = nlohmann::json;

// The ephemeral pattern, run by /bin/sh in the container. Its inputs come as environment
// variables (CK_MODE, CK_INSTALL, CK_COMMAND, CK_DEPS, CK_EXCLUDE) so nothing is quoted
// into the script. Lines starting with "==> cloudyknight:" are the runtime's own.
constexpr const char* kEntryScript = R"SH(set -e
say() { echo "==> cloudyknight: $*"; }
mkdir -p /app
cd /workspace
set -- --exclude=./.git --exclude=./.container-ready
[ -n "$CK_EXCLUDE" ] && set -- "$@" "--exclude=./$CK_EXCLUDE"
say "copying /workspace to /app"
tar -cf - "$@" . | tar -xf - -C /app --no-same-owner --no-overwrite-dir
cd /app
if [ -n "$CK_INSTALL" ]; then
  if [ -n "$CK_DEPS" ] && [ -f "$CK_DEPS/.ck-installed" ]; then
    say "dependencies already installed (cached by lockfile)"
  else
    say "installing dependencies: $CK_INSTALL"
    sh -c "$CK_INSTALL"
    [ -n "$CK_DEPS" ] && touch "$CK_DEPS/.ck-installed"
  fi
fi
[ "$CK_MODE" = install ] && exit 0
touch /app/.container-ready
say "starting: $CK_COMMAND (PORT=$PORT)"
exec sh -c "$CK_COMMAND"
)SH";

bool is_dockerfile(const RunSpec& spec) { return spec.type == "dockerfile"; }

std::string short_hash(std::string_view s) { return stable_hash(s).substr(0, 12); }

void add_common(ContainerPlan& p, const RunSpec& spec, const std::string& image) {
  p.workspace = spec.name;
  p.image = image;
  p.cpus = spec.cpus;
  p.pids = spec.pids;
  p.labels["cloudyknight.managed"] = "true";
  p.labels["cloudyknight.workspace"] = spec.name;
}

void add_typed(ContainerPlan& p, const RunSpec& spec, const std::string& image, const char* mode) {
  auto layout = type_layout(spec.type);
  p.cmd = {"/bin/sh", "-c", kEntryScript};
  p.workdir = "/app";
  p.source = spec.source.string();
  p.env = layout.env;
  p.env.push_back(std::string("CK_MODE=") + mode);
  p.env.push_back("CK_INSTALL=" + spec.install);
  p.env.push_back("CK_COMMAND=" + spec.command);
  if (!layout.deps_dir.empty() && !spec.install.empty()) {
    p.env.push_back("CK_DEPS=" + layout.deps_dir);
    if (layout.deps_dir.starts_with("/app/")) p.env.push_back("CK_EXCLUDE=" + layout.deps_dir.substr(5));
    p.volumes.push_back({deps_volume(spec, image), layout.deps_dir});
  }
  if (!layout.cache_dir.empty()) p.volumes.push_back({cache_volume(spec.name, spec.type), layout.cache_dir});
}

}  // namespace

TypeLayout type_layout(const std::string& type) {
  if (type == "node") {
    return {"/app/node_modules", "/root/.npm",
            {"NPM_CONFIG_UPDATE_NOTIFIER=false",
             "PATH=/app/node_modules/.bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}};
  }
  if (type == "python") {
    return {"/app/.venv", "/root/.cache/pip",
            {"PYTHONUNBUFFERED=1", "PIP_DISABLE_PIP_VERSION_CHECK=1"}};
  }
  if (type == "php") {
    return {"/app/vendor", "/root/.composer/cache",
            {"COMPOSER_HOME=/root/.composer", "COMPOSER_ALLOW_SUPERUSER=1"}};
  }
  if (type == "go") {
    return {"/root/go/pkg/mod", "/root/.cache/go-build",
            {"GOPATH=/root/go", "GOFLAGS=-modcacherw", "GOCACHE=/root/.cache/go-build"}};
  }
  if (type == "ruby") return {"/app/vendor/bundle", "", {"BUNDLE_PATH=/app/vendor/bundle"}};
  return {};
}

std::string deps_volume(const RunSpec& spec, const std::string& image) {
  return fmt::format("{}{}-{}", deps_volume_prefix(spec.name), spec.type,
                     short_hash(spec.name + "|" + spec.deps_key + "|" + image));
}

std::string deps_volume_prefix(const std::string& workspace) {
  return "ck-deps-" + workspace + "-";
}

std::string cache_volume(const std::string& workspace, const std::string& type) {
  return fmt::format("ck-cache-{}-{}", workspace, type);
}

NetworkPlan plan_network(const std::string& workspace, bool egress) {
  NetworkPlan n;
  n.app = "ck-net-" + workspace;
  n.internal = !egress;
  n.install = egress ? n.app : n.app + "-install";
  return n;
}

std::string bridge_name(const std::string& network) { return "ck-" + short_hash(network); }

namespace {

// "a.b.c.d/n" as (address, prefix length); nullopt for anything else (IPv6 included).
std::optional<std::pair<std::uint32_t, int>> parse_cidr(std::string_view s) {
  std::uint32_t addr = 0;
  int parts = 0;
  std::size_t i = 0;
  while (parts < 4) {
    std::uint32_t v = 0;
    std::size_t start = i;
    while (i < s.size() && s[i] >= '0' && s[i] <= '9' && i - start < 3) v = v * 10 + (s[i++] - '0');
    if (i == start || v > 255) return std::nullopt;
    addr = (addr << 8) | v;
    ++parts;
    char want = parts < 4 ? '.' : '/';
    if (i >= s.size() || s[i] != want) return std::nullopt;
    ++i;
  }
  int len = 0;
  std::size_t start = i;
  while (i < s.size() && s[i] >= '0' && s[i] <= '9' && i - start < 2) len = len * 10 + (s[i++] - '0');
  if (i == start || i != s.size() || len > 32) return std::nullopt;
  return std::make_pair(addr, len);
}

std::uint32_t mask_of(int len) { return len == 0 ? 0 : ~std::uint32_t{0} << (32 - len); }

}  // namespace

std::optional<std::string> pick_subnet(const std::vector<std::string>& used) {
  auto pool = parse_cidr(kNetworkPool);
  std::vector<std::pair<std::uint32_t, int>> taken;
  for (const auto& u : used) {
    if (auto c = parse_cidr(u)) taken.push_back(*c);
  }
  constexpr int kLen = 28;
  const std::uint32_t count = std::uint32_t{1} << (kLen - pool->second);
  for (std::uint32_t k = 0; k < count; ++k) {
    std::uint32_t base = (pool->first & mask_of(pool->second)) + (k << (32 - kLen));
    bool overlaps = false;
    for (const auto& [addr, len] : taken) {
      int shorter = std::min(len, kLen);  // two CIDRs overlap when they agree on the shorter prefix
      if ((addr & mask_of(shorter)) == (base & mask_of(shorter))) {
        overlaps = true;
        break;
      }
    }
    if (!overlaps) {
      return fmt::format("{}.{}.{}.{}/{}", base >> 24, (base >> 16) & 255, (base >> 8) & 255,
                         base & 255, kLen);
    }
  }
  return std::nullopt;
}

std::vector<std::string> route_cidrs(std::string_view text) {
  std::vector<std::string> out;
  bool header = true;
  while (!text.empty()) {
    auto eol = text.find('\n');
    std::string_view line = text.substr(0, eol);
    text = eol == std::string_view::npos ? std::string_view() : text.substr(eol + 1);
    if (std::exchange(header, false)) continue;  // Iface Destination Gateway Flags ...
    // Fields: Iface Destination Gateway Flags RefCnt Use Metric Mask ...; addresses are the
    // kernel's __be32 printed as a native 32-bit hex number.
    std::vector<std::string_view> f;
    for (std::size_t i = 0; i < line.size() && f.size() < 8;) {
      while (i < line.size() && (line[i] == ' ' || line[i] == '\t')) ++i;
      std::size_t start = i;
      while (i < line.size() && line[i] != ' ' && line[i] != '\t') ++i;
      if (i > start) f.push_back(line.substr(start, i - start));
    }
    if (f.size() < 8) continue;
    auto hex = [](std::string_view h) -> std::optional<std::uint32_t> {
      if (h.size() != 8) return std::nullopt;
      std::uint32_t v = 0;
      for (char c : h) {
        int d = c >= '0' && c <= '9' ? c - '0' : c >= 'A' && c <= 'F' ? c - 'A' + 10 : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
        if (d < 0) return std::nullopt;
        v = v << 4 | static_cast<std::uint32_t>(d);
      }
      return ntohl(v);
    };
    auto dest = hex(f[1]);
    auto mask = hex(f[7]);
    if (!dest || !mask || *mask == 0) continue;  // the default route covers everything
    int len = std::popcount(*mask);
    if (mask_of(len) != *mask) continue;  // not a prefix
    std::uint32_t net = *dest & *mask;
    out.push_back(fmt::format("{}.{}.{}.{}/{}", net >> 24, (net >> 16) & 255, (net >> 8) & 255, net & 255, len));
  }
  return out;
}

json network_body(const std::string& network, const std::string& workspace,
                  const std::string& instance, bool internal, const std::string& subnet) {
  json body = {{"Name", network},
          {"Driver", "bridge"},
          {"CheckDuplicate", true},
          {"Internal", internal},
          {"Attachable", false},
          {"Options",
           {{"com.docker.network.bridge.name", bridge_name(network)},
            {"com.docker.network.bridge.enable_icc", "false"},
            {"com.docker.network.bridge.enable_ip_masquerade", internal ? "false" : "true"}}},
          {"Labels",
           {{"cloudyknight.managed", "true"},
            {"cloudyknight.workspace", workspace},
            {"cloudyknight.instance", instance},
            {"cloudyknight.internal", internal ? "true" : "false"}}}};
  if (!subnet.empty()) body["IPAM"] = {{"Driver", "default"}, {"Config", {{{"Subnet", subnet}}}}};
  return body;
}

ContainerPlan plan_app(const RunSpec& spec, const std::string& image, int container_port,
                       int host_port, const NetworkPlan& net) {
  ContainerPlan p;
  p.role = ContainerPlan::Role::app;
  p.name = app_container_name(spec.name, false);
  add_common(p, spec, image);
  p.memory = spec.memory;
  p.container_port = container_port;
  p.host_port = net.internal ? 0 : host_port;
  p.network = net.app;
  if (is_dockerfile(spec)) {
    // Images of their own often start as root and drop privileges themselves.
    p.cap_add = {"CHOWN", "SETUID", "SETGID", "DAC_OVERRIDE", "FOWNER", "NET_BIND_SERVICE"};
  } else {
    add_typed(p, spec, image, "app");
    p.ready_healthcheck = true;
  }
  p.env.push_back(fmt::format("PORT={}", container_port));
  p.env.push_back("HOST=0.0.0.0");
  p.env.push_back("CLOUDYKNIGHT_WORKSPACE=" + spec.name);
  for (const auto& [k, v] : spec.env) p.env.push_back(k + "=" + v);
  p.labels["cloudyknight.role"] = "app";
  p.labels["cloudyknight.egress"] = net.internal ? "false" : "true";
  p.labels["cloudyknight.memory"] = format_size(spec.memory);
  p.labels["cloudyknight.port"] = std::to_string(container_port);
  // So an existing Traefik routes the same containers (DESIGN.md "Container contract").
  const std::string& n = spec.name;
  p.labels["traefik.enable"] = "true";
  // By path: /<name> stripped (the default), or left as sent with "prefix": "keep".
  p.labels[fmt::format("traefik.http.routers.{}.rule", n)] = fmt::format("PathPrefix(`/{}`)", n);
  p.labels[fmt::format("traefik.http.routers.{}.service", n)] = n;
  if (!spec.keep_prefix) {
    p.labels[fmt::format("traefik.http.routers.{}.middlewares", n)] = n + "-strip";
    p.labels[fmt::format("traefik.http.middlewares.{}-strip.stripprefix.prefixes", n)] = "/" + n;
  }
  // By host (gateway.domain): <name>.<domain> at its root, nothing stripped. (Keep mode's
  // adding of /<name> to other paths is the gateway's own; Traefik has no such middleware.)
  if (!spec.domain.empty()) {
    p.labels[fmt::format("traefik.http.routers.{}-host.rule", n)] =
        fmt::format("Host(`{}.{}`)", n, spec.domain);
    p.labels[fmt::format("traefik.http.routers.{}-host.service", n)] = n;
  }
  p.labels[fmt::format("traefik.http.services.{}.loadbalancer.server.port", n)] =
      std::to_string(container_port);
  p.labels["cloudyknight.spec"] = plan_hash(p);
  return p;
}

std::string app_container_name(const std::string& workspace, bool second) {
  return "ck-" + workspace + (second ? ".b" : "");
}

bool is_second_app_name(const std::string& workspace, std::string_view name) {
  if (name.starts_with('/')) name.remove_prefix(1);
  std::string second = app_container_name(workspace, true);
  if (!name.starts_with(second)) return false;
  name.remove_prefix(second.size());
  return name.empty() || name.starts_with('-');
}

std::vector<std::size_t> adoption_order(const json& containers, const std::string& hash,
                                        bool internal, const std::set<std::string>& superseded) {
  auto label = [](const json& c, const char* key) {
    if (!c.contains("Labels") || !c["Labels"].is_object()) return std::string();
    auto it = c["Labels"].find(key);
    return it != c["Labels"].end() && it->is_string() ? it->get<std::string>() : std::string();
  };
  struct Candidate {
    std::size_t index;
    long long created_ms;
  };
  std::vector<Candidate> found;
  if (!containers.is_array()) return {};
  for (std::size_t i = 0; i < containers.size(); ++i) {
    const json& c = containers[i];
    if (!c.is_object() || label(c, "cloudyknight.role") != "app" ||
        label(c, "cloudyknight.spec") != hash || c.value("State", "") != "running" ||
        (!internal && published_loopback_port(c) == 0) || superseded.count(c.value("Id", ""))) {
      continue;
    }
    long long ms = 0;
    std::string stamp = label(c, "cloudyknight.created");
    auto [end, ec] = std::from_chars(stamp.data(), stamp.data() + stamp.size(), ms);
    if (ec != std::errc() || end != stamp.data() + stamp.size()) {
      ms = c.contains("Created") && c["Created"].is_number_integer()
               ? c["Created"].get<long long>() * 1000
               : 0;
    }
    found.push_back({i, ms});
  }
  std::stable_sort(found.begin(), found.end(),
                   [](const Candidate& a, const Candidate& b) { return a.created_ms > b.created_ms; });
  std::vector<std::size_t> order;
  for (const auto& c : found) order.push_back(c.index);
  return order;
}

ContainerPlan plan_install(const RunSpec& spec, const std::string& image, const NetworkPlan& net) {
  ContainerPlan p;
  p.role = ContainerPlan::Role::install;
  p.name = "ck-" + spec.name + "-install";
  add_common(p, spec, image);
  p.network = net.install;
  p.memory = spec.install_memory;
  add_typed(p, spec, image, "install");
  for (const auto& [k, v] : spec.env) p.env.push_back(k + "=" + v);
  p.labels["cloudyknight.role"] = "install";
  p.labels["cloudyknight.spec"] = plan_hash(p);
  return p;
}

std::string plan_hash(const ContainerPlan& plan) {
  ContainerPlan p = plan;
  p.host_port = 0;
  p.labels.erase("cloudyknight.spec");
  return short_hash(create_body(p).dump());
}

json hardened_host_config(json mounts, std::uint64_t memory, double cpus, int pids,
                          const std::vector<std::string>& cap_add) {
  return {
      {"Mounts", std::move(mounts)},
      {"Memory", memory},
      {"MemorySwap", memory},  // no swap on top: the limit is the limit
      {"NanoCpus", static_cast<std::int64_t>(cpus * 1e9)},
      {"PidsLimit", pids},
      {"CapDrop", json::array({"ALL"})},
      {"CapAdd", cap_add},
      {"SecurityOpt", json::array({"no-new-privileges:true"})},
      {"Init", true},
      {"LogConfig", {{"Type", "json-file"}, {"Config", {{"max-size", "10m"}, {"max-file", "2"}}}}},
  };
}

json create_body(const ContainerPlan& p) {
  json env = p.env;
  json labels = json::object();
  for (const auto& [k, v] : p.labels) labels[k] = v;
  json mounts = json::array();
  if (!p.source.empty()) {
    mounts.push_back({{"Type", "bind"}, {"Source", p.source}, {"Target", "/workspace"},
                      {"ReadOnly", true}});
  }
  for (const auto& v : p.volumes) {
    mounts.push_back({{"Type", "volume"}, {"Source", v.name}, {"Target", v.target}});
  }
  json host = hardened_host_config(std::move(mounts), p.memory, p.cpus, p.pids, p.cap_add);
  host["RestartPolicy"] = {{"Name", "no"}};
  json body = {{"Image", p.image}, {"Env", env}, {"Labels", labels}, {"HostConfig", host}};
  if (!p.cmd.empty()) body["Cmd"] = p.cmd;
  if (!p.workdir.empty()) body["WorkingDir"] = p.workdir;
  if (!p.network.empty()) body["HostConfig"]["NetworkMode"] = p.network;
  if (p.container_port) {
    std::string key = fmt::format("{}/tcp", p.container_port);
    body["ExposedPorts"] = {{key, json::object()}};
    if (p.host_port) {
      body["HostConfig"]["PortBindings"] = {
          {key,
           json::array({{{"HostIp", "127.0.0.1"}, {"HostPort", std::to_string(p.host_port)}}})}};
    }
  }
  if (p.ready_healthcheck) {
    // Nanoseconds, as the Engine API wants them.
    body["Healthcheck"] = {{"Test", json::array({"CMD-SHELL", "test -f /app/.container-ready"})},
                           {"Interval", std::chrono::nanoseconds(kReadyCheckEvery).count()},
                           {"Timeout", 2'000'000'000LL},
                           {"StartPeriod", 600'000'000'000LL},
                           {"Retries", 3}};
  }
  return body;
}

// Compose interpolates $VAR in values; $$ is a literal $.
std::string compose_escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == '$') out += '$';
    out += c;
  }
  return out;
}

std::string compose_yaml(const ContainerPlan& p) {
  YAML::Emitter out;
  out << YAML::BeginMap;
  out << YAML::Key << "services" << YAML::Value << YAML::BeginMap;
  out << YAML::Key << p.workspace << YAML::Value << YAML::BeginMap;
  if (!p.build_context.empty()) out << YAML::Key << "build" << YAML::Value << p.build_context;
  out << YAML::Key << "image" << YAML::Value << p.image;
  out << YAML::Key << "container_name" << YAML::Value << p.name;
  if (!p.cmd.empty()) {
    out << YAML::Key << "command" << YAML::Value << YAML::BeginSeq;
    for (const auto& c : p.cmd) {
      out << (c.find('\n') != std::string::npos ? YAML::Literal : YAML::Auto) << compose_escape(c);
    }
    out << YAML::EndSeq;
  }
  if (!p.workdir.empty()) out << YAML::Key << "working_dir" << YAML::Value << p.workdir;
  out << YAML::Key << "environment" << YAML::Value << YAML::BeginSeq;
  for (const auto& e : p.env) out << compose_escape(e);
  out << YAML::EndSeq;
  if (p.container_port && p.host_port) {
    out << YAML::Key << "ports" << YAML::Value << YAML::BeginSeq
        << fmt::format("127.0.0.1:{}:{}", p.host_port, p.container_port) << YAML::EndSeq;
  } else if (p.container_port) {
    out << YAML::Key << "expose" << YAML::Value << YAML::BeginSeq
        << std::to_string(p.container_port) << YAML::EndSeq;
  }
  if (!p.network.empty()) {
    out << YAML::Key << "networks" << YAML::Value << YAML::Flow << YAML::BeginSeq << p.network
        << YAML::EndSeq;
  }
  out << YAML::Key << "volumes" << YAML::Value << YAML::BeginSeq;
  if (!p.source.empty()) out << fmt::format("{}:/workspace:ro", p.source);
  for (const auto& v : p.volumes) out << fmt::format("{}:{}", v.name, v.target);
  out << YAML::EndSeq;
  out << YAML::Key << "init" << YAML::Value << true;
  out << YAML::Key << "mem_limit" << YAML::Value << std::to_string(p.memory);
  out << YAML::Key << "memswap_limit" << YAML::Value << std::to_string(p.memory);
  out << YAML::Key << "cpus" << YAML::Value << p.cpus;
  out << YAML::Key << "pids_limit" << YAML::Value << p.pids;
  out << YAML::Key << "cap_drop" << YAML::Value << YAML::Flow << YAML::BeginSeq << "ALL" << YAML::EndSeq;
  if (!p.cap_add.empty()) {
    out << YAML::Key << "cap_add" << YAML::Value << YAML::Flow << YAML::BeginSeq;
    for (const auto& c : p.cap_add) out << c;
    out << YAML::EndSeq;
  }
  out << YAML::Key << "security_opt" << YAML::Value << YAML::Flow << YAML::BeginSeq
      << "no-new-privileges:true" << YAML::EndSeq;
  if (p.ready_healthcheck) {
    out << YAML::Key << "healthcheck" << YAML::Value << YAML::BeginMap;
    out << YAML::Key << "test" << YAML::Value << YAML::Flow << YAML::BeginSeq << "CMD-SHELL"
        << "test -f /app/.container-ready" << YAML::EndSeq;
    out << YAML::Key << "interval" << YAML::Value
        << fmt::format("{}s", std::chrono::seconds(kReadyCheckEvery).count());
    out << YAML::Key << "timeout" << YAML::Value << "2s";
    out << YAML::Key << "retries" << YAML::Value << 3;
    out << YAML::Key << "start_period" << YAML::Value << "10m";
    out << YAML::EndMap;
  }
  out << YAML::Key << "labels" << YAML::Value << YAML::BeginMap;
  for (const auto& [k, v] : p.labels) out << YAML::Key << k << YAML::Value << compose_escape(v);
  out << YAML::EndMap;
  out << YAML::EndMap;  // service
  out << YAML::EndMap;  // services
  if (!p.volumes.empty()) {
    out << YAML::Key << "volumes" << YAML::Value << YAML::BeginMap;
    for (const auto& v : p.volumes) {
      out << YAML::Key << v.name << YAML::Value << YAML::BeginMap << YAML::Key << "external"
          << YAML::Value << true << YAML::EndMap;
    }
    out << YAML::EndMap;
  }
  if (!p.network.empty()) {
    out << YAML::Key << "networks" << YAML::Value << YAML::BeginMap << YAML::Key << p.network
        << YAML::Value << YAML::BeginMap << YAML::Key << "external" << YAML::Value << true
        << YAML::EndMap << YAML::EndMap;
  }
  out << YAML::EndMap;
  return std::string(out.c_str()) + "\n";
}

}  // namespace ck
