// Project → compose file text. Long syntax everywhere (it says what it means), every free
// string double-quoted with '$' written as '$$' so a reader's interpolation gives it back.
#include <yaml-cpp/yaml.h>

#include <charconv>

#include "compose/model.h"

namespace ck::compose {
namespace {

std::string escape(const std::string& s) {
  std::string out;
  out.reserve(s.size());
  for (char c : s) {
    out += c;
    if (c == '$') {
      out += '$';
    }
  }
  return out;
}

void str(YAML::Emitter& out, const std::string& s) { out << YAML::DoubleQuoted << escape(s); }

void list(YAML::Emitter& out, const std::vector<std::string>& items) {
  out << YAML::BeginSeq;
  for (const auto& i : items) {
    str(out, i);
  }
  out << YAML::EndSeq;
}

void dict(YAML::Emitter& out, const std::map<std::string, std::string>& m) {
  out << YAML::BeginMap;
  for (const auto& [k, v] : m) {
    // Keys are never interpolated (no '$$'), but quoted so a "<<" stays a plain key.
    // A simple key is at most 1024 characters once escaped: longer ones take the `? key` form.
    if (k.size() > 200) {
      out << YAML::LongKey;
    }
    out << YAML::Key << YAML::DoubleQuoted << k << YAML::Value;
    str(out, v);
  }
  out << YAML::EndMap;
}

std::string duration(std::chrono::milliseconds d) {
  auto ms = d.count();
  return ms % 1000 == 0 ? std::to_string(ms / 1000) + "s" : std::to_string(ms) + "ms";
}

std::string number(double v) {
  char buf[64];
  auto res = std::to_chars(buf, buf + sizeof buf, v);  // shortest text that reads back as v
  return std::string(buf, res.ptr);
}

void service(YAML::Emitter& out, const Service& s) {
  out << YAML::BeginMap;
  if (!s.image.empty()) {
    out << YAML::Key << "image" << YAML::Value;
    str(out, s.image);
  }
  if (s.build) {
    out << YAML::Key << "build" << YAML::Value << YAML::BeginMap;
    out << YAML::Key << "context" << YAML::Value;
    str(out, s.build->context);
    if (!s.build->dockerfile.empty()) {
      out << YAML::Key << "dockerfile" << YAML::Value;
      str(out, s.build->dockerfile);
    }
    if (!s.build->args.empty()) {
      out << YAML::Key << "args" << YAML::Value;
      dict(out, s.build->args);
    }
    if (!s.build->target.empty()) {
      out << YAML::Key << "target" << YAML::Value;
      str(out, s.build->target);
    }
    out << YAML::EndMap;
  }
  if (s.entrypoint) {
    out << YAML::Key << "entrypoint" << YAML::Value;
    list(out, *s.entrypoint);
  }
  if (s.command) {
    out << YAML::Key << "command" << YAML::Value;
    list(out, *s.command);
  }
  if (!s.environment.empty()) {
    out << YAML::Key << "environment" << YAML::Value;
    dict(out, s.environment);
  }
  if (!s.ports.empty()) {
    out << YAML::Key << "ports" << YAML::Value << YAML::BeginSeq;
    for (const auto& p : s.ports) {
      out << YAML::BeginMap << YAML::Key << "target" << YAML::Value << p.container_port;
      if (p.host_port != 0) {
        out << YAML::Key << "published" << YAML::Value << p.host_port;
      }
      if (!p.host_ip.empty()) {
        out << YAML::Key << "host_ip" << YAML::Value;
        str(out, p.host_ip);
      }
      out << YAML::Key << "protocol" << YAML::Value << p.protocol << YAML::EndMap;
    }
    out << YAML::EndSeq;
  }
  if (!s.expose.empty()) {
    out << YAML::Key << "expose" << YAML::Value << YAML::BeginSeq;
    for (int e : s.expose) {
      out << YAML::DoubleQuoted << std::to_string(e);
    }
    out << YAML::EndSeq;
  }
  if (!s.volumes.empty()) {
    out << YAML::Key << "volumes" << YAML::Value << YAML::BeginSeq;
    for (const auto& m : s.volumes) {
      const char* type = m.kind == Mount::Kind::bind    ? "bind"
                         : m.kind == Mount::Kind::tmpfs ? "tmpfs"
                                                        : "volume";
      out << YAML::BeginMap << YAML::Key << "type" << YAML::Value << type;
      if (!m.source.empty()) {
        out << YAML::Key << "source" << YAML::Value;
        str(out, m.source);
      }
      out << YAML::Key << "target" << YAML::Value;
      str(out, m.target);
      if (m.read_only) {
        out << YAML::Key << "read_only" << YAML::Value << true;
      }
      out << YAML::EndMap;
    }
    out << YAML::EndSeq;
  }
  if (!s.network_mode.empty()) {
    out << YAML::Key << "network_mode" << YAML::Value;
    str(out, s.network_mode);
  }
  if (!s.networks.empty()) {
    out << YAML::Key << "networks" << YAML::Value << YAML::BeginSeq;
    for (const auto& n : s.networks) {
      out << n;
    }
    out << YAML::EndSeq;
  }
  if (!s.depends_on.empty()) {
    out << YAML::Key << "depends_on" << YAML::Value << YAML::BeginMap;
    for (const auto& d : s.depends_on) {
      const char* cond = d.condition == Dependency::Condition::healthy ? "service_healthy"
                         : d.condition == Dependency::Condition::completed_successfully
                             ? "service_completed_successfully"
                             : "service_started";
      out << YAML::Key << d.service << YAML::Value << YAML::BeginMap << YAML::Key << "condition"
          << YAML::Value << cond;
      if (!d.required) {
        out << YAML::Key << "required" << YAML::Value << false;
      }
      out << YAML::EndMap;
    }
    out << YAML::EndMap;
  }
  if (s.healthcheck) {
    const Healthcheck& h = *s.healthcheck;
    out << YAML::Key << "healthcheck" << YAML::Value << YAML::BeginMap;
    if (!h.test.empty()) {
      out << YAML::Key << "test" << YAML::Value;
      list(out, h.test);
    }
    if (h.disable) {
      out << YAML::Key << "disable" << YAML::Value << true;
    }
    out << YAML::Key << "interval" << YAML::Value << duration(h.interval);
    out << YAML::Key << "timeout" << YAML::Value << duration(h.timeout);
    out << YAML::Key << "start_period" << YAML::Value << duration(h.start_period);
    out << YAML::Key << "retries" << YAML::Value << h.retries;
    out << YAML::EndMap;
  }
  for (const auto& [key, value] :
       {std::pair<const char*, const std::string*>{"restart", &s.restart},
        {"working_dir", &s.working_dir},
        {"user", &s.user},
        {"hostname", &s.hostname},
        {"stop_signal", &s.stop_signal}}) {
    if (!value->empty()) {
      out << YAML::Key << key << YAML::Value;
      str(out, *value);
    }
  }
  if (s.stop_grace_period) {
    out << YAML::Key << "stop_grace_period" << YAML::Value << duration(*s.stop_grace_period);
  }
  for (const auto& [key, value] : {std::pair<const char*, const std::optional<bool>*>{"tty", &s.tty},
                                   {"stdin_open", &s.stdin_open}}) {
    if (*value) {
      out << YAML::Key << key << YAML::Value << **value;
    }
  }
  if (!s.extra_hosts.empty()) {
    out << YAML::Key << "extra_hosts" << YAML::Value;
    list(out, s.extra_hosts);
  }
  if (!s.labels.empty()) {
    out << YAML::Key << "labels" << YAML::Value;
    dict(out, s.labels);
  }
  if (!s.profiles.empty()) {
    out << YAML::Key << "profiles" << YAML::Value;
    list(out, s.profiles);
  }
  if (s.memory != 0 || s.cpus > 0 || s.pids != 0) {
    out << YAML::Key << "deploy" << YAML::Value << YAML::BeginMap << YAML::Key << "resources"
        << YAML::Value << YAML::BeginMap << YAML::Key << "limits" << YAML::Value << YAML::BeginMap;
    if (s.memory != 0) {
      out << YAML::Key << "memory" << YAML::Value << std::to_string(s.memory);
    }
    if (s.cpus > 0) {
      out << YAML::Key << "cpus" << YAML::Value << YAML::DoubleQuoted << number(s.cpus);
    }
    if (s.pids != 0) {
      out << YAML::Key << "pids" << YAML::Value << s.pids;
    }
    out << YAML::EndMap << YAML::EndMap << YAML::EndMap;
  }
  out << YAML::EndMap;
}

template <typename T>
void top(YAML::Emitter& out, const char* key, const std::map<std::string, T>& items) {
  if (items.empty()) {
    return;
  }
  out << YAML::Key << key << YAML::Value << YAML::BeginMap;
  for (const auto& [name, item] : items) {
    out << YAML::Key << name << YAML::Value << YAML::BeginMap;
    if (item.external) {
      out << YAML::Key << "external" << YAML::Value << true;
      out << YAML::Key << "name" << YAML::Value;
      str(out, item.external_name);
    }
    if constexpr (std::is_same_v<T, Volume>) {
      if (!item.labels.empty()) {
        out << YAML::Key << "labels" << YAML::Value;
        dict(out, item.labels);
      }
    }
    out << YAML::EndMap;
  }
  out << YAML::EndMap;
}

}  // namespace

std::string to_yaml(const Project& project) {
  YAML::Emitter out;
  out << YAML::BeginMap;
  if (!project.name.empty()) {
    out << YAML::Key << "name" << YAML::Value << project.name;
  }
  out << YAML::Key << "services" << YAML::Value << YAML::BeginMap;
  for (const auto& [name, s] : project.services) {
    out << YAML::Key << name << YAML::Value;
    service(out, s);
  }
  out << YAML::EndMap;
  top(out, "volumes", project.volumes);
  top(out, "networks", project.networks);
  out << YAML::EndMap;
  return std::string(out.c_str()) + "\n";
}

}  // namespace ck::compose
