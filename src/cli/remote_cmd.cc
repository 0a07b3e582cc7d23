#include "cli/remote_cmd.h"

#include <fmt/format.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <nlohmann/json.hpp>

#include "cli/remote_internal.h"
#include "core/names.h"
#include "core/units.h"

namespace ck::cli {

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

constexpr std::size_t kMaxRunLine = 8u << 20;  // one JSON line of a streamed run

/// The workspace's address: the API gives a path (/name/) or, with gateway.domain, a full URL.
std::string absolute_url(const Endpoint& e, const std::string& url) {
  if (url.starts_with("http://") || url.starts_with("https://")) return url;
  return e.url + (url.starts_with("/") ? url : "/" + url);
}

Result<void> check_name(const std::string& name) { return validate_workspace_name(name); }

}  // namespace

// ------------------------------------------------------------------------------- workspaces

int remote_list(const Endpoint& e, bool as_json) {
  ApiClient client(e);
  json all = json::array();
  std::string after;
  for (int page = 0; page < 1000; ++page) {
    std::string path = "/workspaces?limit=1000";
    if (!after.empty()) path += "&after=" + url_encode(after);
    auto r = client.call(ApiRequest{"GET", path});
    if (r.has_error()) return error(r.error().message);
    if (!r.value().ok()) return refused(r.value());
    json doc = parse_object(r.value().body);
    if (!doc.contains("workspaces") || !doc["workspaces"].is_array()) {
      return error(fmt::format(
          "{} answered GET /workspaces without a list: is it a CloudyKnight server?", e.url));
    }
    for (auto& w : doc["workspaces"]) all.push_back(std::move(w));
    std::string next = str(doc, "next");
    if (next.empty() || next == after) break;
    after = next;
  }
  if (as_json) {
    std::cout << all.dump(2) << std::endl;
    return kExitOk;
  }
  if (all.empty()) {
    std::cout << fmt::format(
                     "no workspaces on {} yet: create one with `cloudyknight ws create NAME`",
                     e.url)
              << std::endl;
    return kExitOk;
  }
  std::cout << fmt::format("{:<24} {:<13} {:<10} {:<12} {:<8} {}\n", "NAME", "STATUS", "TYPE",
                           "ACTIVITY", "PUBLIC", "URL");
  for (const auto& w : all) {
    if (!w.is_object()) continue;
    bool pub = !w.contains("public") || !w["public"].is_boolean() || w["public"].get<bool>();
    std::cout << fmt::format("{:<24} {:<13} {:<10} {:<12} {:<8} {}\n", str(w, "name"),
                             str(w, "status", "-"), str(w, "type", "-"), str(w, "activity", "-"),
                             pub ? "yes" : "no", absolute_url(e, str(w, "url")));
  }
  std::cout << std::flush;
  return kExitOk;
}

int remote_status(const Endpoint& e, const std::string& name, bool as_json) {
  if (!name.empty()) {
    if (auto v = check_name(name); v.has_error()) return error(v.error().message, kExitUsage);
  }
  ApiClient client(e);
  auto r =
      client.call(ApiRequest{"GET", name.empty() ? "/status" : "/workspaces/" + name + "/status"});
  if (r.has_error()) return error(r.error().message);
  if (!r.value().ok()) return refused(r.value());
  json doc = json::parse(r.value().body, nullptr, false);
  if (doc.is_discarded())
    return error(fmt::format("{} answered with something that is not JSON", e.url));
  if (as_json) {
    std::cout << doc.dump(2) << std::endl;
    return kExitOk;
  }
  auto line = [](const std::string& k, const std::string& v) {
    if (!v.empty()) std::cout << fmt::format("{:<10} {}\n", k + ":", v);
  };
  auto integer = [&](const char* k) {
    return doc.contains(k) && doc[k].is_number_integer() ? doc[k].get<long long>() : 0LL;
  };
  if (name.empty()) {  // the server's own status
    line("server", fmt::format("{} (version {})", e.url, str(doc, "version", "?")));
    line("runtime",
         str(doc, "runtime") + (str(doc, "isolation").empty() ? "" : ", " + str(doc, "isolation")));
    line("storage",
         str(doc, "storage") +
             (str(doc, "storage_error").empty() ? "" : " (" + str(doc, "storage_error") + ")"));
    std::string counts;
    if (doc.contains("by_status") && doc["by_status"].is_object()) {
      for (const auto& [state, n] : doc["by_status"].items()) {
        if (n.is_number_integer() && n.get<long long>() > 0) {
          counts += fmt::format("{}{} {}", counts.empty() ? "" : ", ", n.get<long long>(), state);
        }
      }
    }
    line("workspaces",
         fmt::format("{}{}", integer("workspaces"), counts.empty() ? "" : " (" + counts + ")"));
    if (doc.contains("invalid") && doc["invalid"].is_array()) {
      for (const auto& bad : doc["invalid"]) {
        if (bad.is_object()) line("invalid", str(bad, "folder") + ": " + str(bad, "error"));
      }
    }
    long long up = integer("uptime_seconds");
    line("uptime", fmt::format("{}h{:02}m{:02}s", up / 3600, (up / 60) % 60, up % 60));
    std::cout << std::flush;
    return kExitOk;
  }
  line("name", str(doc, "name"));
  line("status", str(doc, "status"));
  line("activity", str(doc, "activity"));
  line("reason", str(doc, "reason"));
  line("error", str(doc, "error"));
  if (doc.contains("restarts") && doc["restarts"].is_number_integer()) {
    line("restarts", std::to_string(integer("restarts")));
  }
  if (doc.contains("container") && doc["container"].is_object()) {
    const json& c = doc["container"];
    std::string runs = str(c, "runtime");
    if (c.contains("pid") && c["pid"].is_number_integer())
      runs += fmt::format(", pid {}", c["pid"].get<long long>());
    if (c.contains("port") && c["port"].is_number_integer()) {
      runs += fmt::format(", port {}", c["port"].get<long long>());
    }
    if (c.contains("held") && c["held"].is_boolean() && c["held"].get<bool>())
      runs += ", held stopped";
    line("runs", runs);
  }
  if (doc.contains("sync") && doc["sync"].is_object()) {
    const json& s = doc["sync"];
    std::string err = str(s, "error");
    line("storage", fmt::format("{} {}{}", str(s, "storage"), str(s, "location"),
                                err.empty() ? "" : " (" + err + ")"));
  }
  std::cout << std::flush;
  return kExitOk;
}

int remote_create(const Endpoint& e, const CreateOptions& o) {
  if (auto v = check_name(o.name); v.has_error()) return error(v.error().message, kExitUsage);
  json body = {{"name", o.name}};
  if (!o.template_name.empty()) body["template"] = o.template_name;
  if (!o.clone_of.empty()) body["clone_of"] = o.clone_of;
  if (!o.git_url.empty()) body["git"] = json{{"url", o.git_url}};
  if (o.private_ws) body["public"] = false;
  ApiClient client(e);
  ApiRequest req{"POST", "/workspaces", body.dump()};
  req.timeout_ms = 300000;  // a clone or a template's first copy can take a while
  auto r = client.call(req);
  if (r.has_error()) return error(r.error().message);
  if (!r.value().ok()) return refused(r.value());
  json w = parse_object(r.value().body);
  if (o.json) {
    std::cout << w.dump(2) << std::endl;
    return kExitOk;
  }
  std::cout << fmt::format("created {} ({}, {}{}): {}", o.name, str(w, "type", "?"),
                           str(w, "status", "?"), o.private_ws ? ", private" : "",
                           absolute_url(e, str(w, "url")))
            << std::endl;
  return kExitOk;
}

int remote_delete(const Endpoint& e, const std::string& name, bool yes) {
  if (auto v = check_name(name); v.has_error()) return error(v.error().message, kExitUsage);
  if (!yes) {
    if (::isatty(STDIN_FILENO) != 1) {
      return error(
          fmt::format(
              "not deleting '{}' without a confirmation: stdin is not a terminal, so pass --yes",
              name),
          kExitUsage);
    }
    auto answer = read_line(
        fmt::format(
            "Delete workspace '{}' on {}? Its app stops and its folder goes to the server's "
            "trash. [y/N] ",
            name, e.url),
        false);
    if (answer.has_error() ||
        (answer.value() != "y" && answer.value() != "Y" && answer.value() != "yes")) {
      std::cerr << "cloudyknight: not deleted" << std::endl;
      return kExitFailure;
    }
  }
  ApiClient client(e);
  auto r = client.call(ApiRequest{"DELETE", "/workspaces/" + name});
  if (r.has_error()) return error(r.error().message);
  if (!r.value().ok()) return refused(r.value());
  std::cout << fmt::format("deleted {} on {}", name, e.url) << std::endl;
  return kExitOk;
}

int remote_action(const Endpoint& e, const std::string& name, const std::string& action) {
  if (auto v = check_name(name); v.has_error()) return error(v.error().message, kExitUsage);
  ApiClient client(e);
  auto r = client.call(ApiRequest{"POST", "/workspaces/" + name + "/" + action, std::string("{}")});
  if (r.has_error()) return error(r.error().message);
  if (!r.value().ok()) return refused(r.value());
  json doc = parse_object(r.value().body);
  json w = doc.contains("workspace") && doc["workspace"].is_object() ? doc["workspace"] : doc;
  std::cout << fmt::format("{}: {} requested (now {}); follow it with `cloudyknight ws status {}`",
                           name, action, str(w, "status", "?"), name)
            << std::endl;
  return kExitOk;
}

int remote_logs(const Endpoint& e, const std::string& name, bool follow, int tail,
                const std::string& service) {
  if (auto v = check_name(name); v.has_error()) return error(v.error().message, kExitUsage);
  if (tail != -1 && (tail < 1 || tail > 5000))
    return error("--tail must be from 1 to 5000", kExitUsage);
  std::string path = "/workspaces/" + name + "/logs";
  std::string query;
  auto add = [&](const std::string& kv) { query += (query.empty() ? "?" : "&") + kv; };
  if (tail != -1) add("tail=" + std::to_string(tail));
  if (!service.empty()) add("service=" + url_encode(service));
  if (follow) add("follow=1");
  ApiClient client(e);
  if (!follow) {
    auto r = client.call(ApiRequest{"GET", path + query});
    if (r.has_error()) return error(r.error().message);
    if (!r.value().ok()) return refused(r.value());
    json doc = parse_object(r.value().body);
    if (doc.contains("lines") && doc["lines"].is_array()) {
      for (const auto& l : doc["lines"]) {
        if (l.is_string()) std::cout << l.get<std::string>() << '\n';
      }
    }
    std::cout << std::flush;
    return kExitOk;
  }
  // Followed until Ctrl-C (SIGINT ends the process) or the server ends the stream; the
  // server reopens the log when the app restarts, so restarts need nothing here.
  ApiRequest req{"GET", path + query};
  req.timeout_ms = 0;
  auto write = [](std::string_view chunk) {
    std::fwrite(chunk.data(), 1, chunk.size(), stdout);
    std::fflush(stdout);
    return !std::ferror(stdout);
  };
  std::function<bool(std::string_view)> sink = write;
  auto r = client.stream(req, sink);
  if (r.has_error()) return error(r.error().message);
  if (!r.value().ok()) return refused(r.value());
  std::cerr << "cloudyknight: the server ended the log stream" << std::endl;
  return kExitOk;
}

int remote_run(const Endpoint& e, const std::string& name, const std::string& timeout,
               const std::vector<std::string>& argv) {
  if (auto v = check_name(name); v.has_error()) return error(v.error().message, kExitUsage);
  if (argv.empty()) {
    return error(
        fmt::format("no command: give it after --, e.g. `cloudyknight ws run {} -- npm test`",
                    name),
        kExitUsage);
  }
  auto limit = parse_duration(timeout);
  if (limit.has_error()) return error("--timeout: " + limit.error().message, kExitUsage);
  json body = {{"command", argv}, {"timeout", timeout}};
  ApiRequest req{"POST", "/workspaces/" + name + "/run?stream=1", body.dump()};
  req.timeout_ms = static_cast<long>(limit.value().count()) + 60000;
  std::string carry;
  std::optional<int> exit_code;
  bool timed_out = false;
  std::string stream_error;
  bool broken = false;
  auto on_line = [&](const std::string& line) {
    if (line.empty()) return true;
    auto doc = json::parse(line, nullptr, false);
    if (!doc.is_object()) {
      broken = true;
      return false;
    }
    if (doc.contains("output") && doc["output"].is_string()) {
      const auto& out = doc["output"].get_ref<const std::string&>();
      std::fwrite(out.data(), 1, out.size(), stdout);
      std::fflush(stdout);
    }
    if (doc.contains("exit_code") && doc["exit_code"].is_number_integer())
      exit_code = doc["exit_code"].get<int>();
    if (doc.contains("timed_out") && doc["timed_out"].is_boolean())
      timed_out = doc["timed_out"].get<bool>();
    if (doc.contains("error") && doc["error"].is_object()) {
      ApiResponse as{409, doc.dump(), {}};
      stream_error = describe_failure(as);
    }
    return true;
  };
  auto chunk = [&](std::string_view data) {
    carry.append(data);
    std::size_t start = 0;
    for (;;) {
      auto nl = carry.find('\n', start);
      if (nl == std::string::npos) break;
      if (!on_line(carry.substr(start, nl - start))) return false;
      start = nl + 1;
    }
    carry.erase(0, start);
    if (carry.size() > kMaxRunLine) {
      broken = true;
      return false;
    }
    return true;
  };
  std::function<bool(std::string_view)> sink = chunk;
  ApiClient client(e);
  auto r = client.stream(req, sink);
  if (r.has_error()) return error(r.error().message);
  if (!r.value().ok()) return refused(r.value());
  if (!carry.empty() && !broken) on_line(carry);
  if (broken)
    return error(fmt::format("{} sent a line of the run's stream that is not JSON", e.url));
  if (!stream_error.empty()) return error(stream_error);
  if (!exit_code)
    return error(
        "the stream ended before the command's exit code came (the server may have stopped)");
  if (timed_out) {
    std::cerr << fmt::format(
                     "cloudyknight: the command was killed after {} (raise --timeout, up to 10m)",
                     timeout)
              << std::endl;
  }
  return *exit_code < 0 ? kExitFailure : (*exit_code > 255 ? 255 : *exit_code);
}

int remote_open(const Endpoint& e, const std::string& name, bool browser) {
  if (auto v = check_name(name); v.has_error()) return error(v.error().message, kExitUsage);
  ApiClient client(e);
  auto r = client.call(ApiRequest{"GET", "/workspaces/" + name});
  if (r.has_error()) return error(r.error().message);
  if (!r.value().ok()) return refused(r.value());
  std::string url = absolute_url(e, str(parse_object(r.value().body), "url", "/" + name + "/"));
  std::cout << url << std::endl;
  if (!browser) return kExitOk;
  pid_t pid = ::fork();
  if (pid < 0) return error("cannot start xdg-open: fork failed");
  if (pid == 0) {
    ::execlp("xdg-open", "xdg-open", url.c_str(), static_cast<char*>(nullptr));
    ::_exit(127);
  }
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    return error(WIFEXITED(status) && WEXITSTATUS(status) == 127
                         ? "xdg-open is not installed (Debian: apt install xdg-utils): open the "
                           "URL above yourself"
                         : "xdg-open could not open the URL: open it yourself");
  }
  return kExitOk;
}

int remote_sync(const Endpoint& e, const std::string& name) {
  if (auto v = check_name(name); v.has_error()) return error(v.error().message, kExitUsage);
  ApiClient client(e);
  ApiRequest req{"POST", "/workspaces/" + name + "/sync", std::string("{}")};
  req.timeout_ms = 300000;
  auto r = client.call(req);
  if (r.has_error()) return error(r.error().message);
  if (!r.value().ok()) return refused(r.value());
  json doc = parse_object(r.value().body);
  auto num = [&](const char* k) {
    return doc.contains(k) && doc[k].is_number_integer() ? doc[k].get<long long>() : 0LL;
  };
  if (str(doc, "direction") == "pull") {
    std::cout << fmt::format("{}: pulled {} files, removed {}, {} failed (s3)", name, num("pulled"),
                             num("removed"), num("failed"))
              << std::endl;
  } else {
    std::cout << fmt::format("{}: rescanned its folder ({} storage)", name,
                             str(doc, "storage", "dir"))
              << std::endl;
  }
  return num("failed") > 0 ? kExitFailure : kExitOk;
}

}  // namespace ck::cli
