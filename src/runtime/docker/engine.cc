#include "runtime/docker/engine.h"

#include <csignal>

#include <cstdlib>
#include <fmt/format.h>

#include "core/units.h"
#include "http/url.h"

namespace ck {
namespace {

Errc errc_for_status(int status) {
  switch (status) {
    case 400: return Errc::invalid_argument;
    case 403: return Errc::forbidden;
    case 404: return Errc::not_found;
    case 409: return Errc::already_exists;
    default: return status >= 500 ? Errc::unavailable : Errc::invalid_argument;
  }
}

// The engine answers errors as {"message": "..."}; keep its words, they are precise.
std::string engine_message(const HttpClientResponse& r) {
  try {
    auto j = json::parse(r.body);
    if (j.is_object() && j.contains("message") && j["message"].is_string()) {
      return j["message"].get<std::string>();
    }
  } catch (const json::exception&) {
  }
  std::string body = r.body.substr(0, 300);
  while (!body.empty() && (body.back() == '\n' || body.back() == '\r')) body.pop_back();
  return body.empty() ? fmt::format("HTTP {}", r.status) : body;
}

std::string label_filters(const std::vector<std::string>& labels) {
  json f = json::object();
  f["label"] = labels;
  return http::percent_encode(f.dump());
}

std::string changes_query(const std::vector<std::string>& changes) {
  std::string q;
  for (const auto& c : changes) q += "&changes=" + http::percent_encode(c);
  return q;
}

}  // namespace

int published_loopback_port(const json& c) {
  if (!c.contains("Ports") || !c["Ports"].is_array()) return 0;
  for (const auto& p : c["Ports"]) {
    if (p.value("IP", "") == "127.0.0.1" && p.contains("PublicPort")) return p.value("PublicPort", 0);
  }
  return 0;
}

std::pair<std::string, std::string> split_image_name(const std::string& name) {
  auto slash = name.rfind('/');
  auto colon = name.rfind(':');
  if (colon == std::string::npos || (slash != std::string::npos && colon < slash)) {
    return {name, "latest"};
  }
  return {name.substr(0, colon), name.substr(colon + 1)};
}

std::string DockerEngine::default_socket(std::string* why) {
  const char* host = std::getenv("DOCKER_HOST");
  if (host && *host) {
    std::string_view h(host);
    if (h.starts_with("unix://")) return std::string(h.substr(7));
    if (why) {
      *why = fmt::format("DOCKER_HOST={} is not a unix socket; CloudyKnight talks to the engine "
                         "over unix://PATH only",
                         h);
    }
    return "";
  }
  return "/var/run/docker.sock";
}

std::string DockerEngine::url(std::string_view path) const {
  return fmt::format("/v{}{}", api_, path);
}

net::awaitable<Result<void>> DockerEngine::connect(Duration timeout) {
  HttpClientRequest req;
  req.target = "/version";
  req.timeout = timeout;
  auto r = co_await http_.request(req);
  if (r.has_error()) {
    co_return fail(r.error().code,
                   fmt::format("no Docker engine answers on {}: {}", socket_path(), r.error().message));
  }
  if (r.value().status != 200) {
    co_return fail(Errc::unavailable, fmt::format("the Docker engine on {} answered /version with {}",
                                                  socket_path(), engine_message(r.value())));
  }
  try {
    auto v = json::parse(r.value().body);
    engine_version_ = v.value("Version", "");
    std::string theirs = v.value("ApiVersion", "");
    auto as_num = [](const std::string& s) {
      auto dot = s.find('.');
      if (dot == std::string::npos) return 0;
      return std::atoi(s.substr(0, dot).c_str()) * 1000 + std::atoi(s.substr(dot + 1).c_str());
    };
    if (as_num(theirs) < as_num(kApiVersion)) {
      co_return fail(Errc::unavailable,
                     fmt::format("the Docker engine on {} speaks API {} (Docker {}); CloudyKnight "
                                 "needs {} or newer (Docker 20.10+): upgrade the engine",
                                 socket_path(), theirs, engine_version_, kApiVersion));
    }
    api_ = kApiVersion;  // a newer engine serves older API versions
  } catch (const json::exception& e) {
    co_return fail(Errc::unavailable,
                   fmt::format("the Docker engine on {} sent an unreadable /version: {}",
                               socket_path(), e.what()));
  }
  co_return outcome::success();
}

net::awaitable<Result<json>> DockerEngine::call(std::string method, std::string path, json body,
                                                Duration timeout) {
  HttpClientRequest req;
  req.method = method;
  req.target = url(path);
  if (!body.is_null()) req.body = body.dump();
  req.timeout = timeout;
  auto r = co_await http_.request(std::move(req));
  if (r.has_error()) co_return r.error();
  const auto& res = r.value();
  if (res.status >= 400) co_return fail(errc_for_status(res.status), engine_message(res));
  if (res.body.empty() || res.status == 204 || res.status == 304) co_return json(nullptr);
  try {
    co_return json::parse(res.body);
  } catch (const json::exception&) {
    co_return json(res.body);  // some endpoints answer plain text
  }
}

net::awaitable<Result<std::string>> DockerEngine::create_container(std::string name, json config) {
  auto r = co_await call("POST", "/containers/create?name=" + http::percent_encode(name), config);
  if (r.has_error()) {
    co_return fail(r.error().code, fmt::format("cannot create container {}: {}", name, r.error().message));
  }
  co_return r.value().value("Id", "");
}

net::awaitable<Result<void>> DockerEngine::start_container(std::string id) {
  auto r = co_await call("POST", "/containers/" + id + "/start");
  if (r.has_error()) {
    co_return fail(r.error().code, fmt::format("cannot start container {}: {}", id.substr(0, 12), r.error().message));
  }
  co_return outcome::success();
}

net::awaitable<Result<void>> DockerEngine::stop_container(std::string id, int grace_seconds) {
  auto r = co_await call("POST", fmt::format("/containers/{}/stop?t={}", id, grace_seconds), nullptr,
                         std::chrono::seconds(grace_seconds + 30));
  if (r.has_error()) co_return r.error();
  co_return outcome::success();
}

net::awaitable<Result<void>> DockerEngine::kill_container(std::string id, std::string signal) {
  auto r = co_await call("POST", fmt::format("/containers/{}/kill?signal={}", id, signal));
  if (r.has_error()) co_return r.error();
  co_return outcome::success();
}

net::awaitable<Result<void>> DockerEngine::remove_container(std::string id, bool force) {
  auto r = co_await call("DELETE", fmt::format("/containers/{}?force={}&v=0", id, force ? 1 : 0),
                         nullptr, std::chrono::seconds(60));
  if (r.has_error() && r.error().code != Errc::not_found) co_return r.error();
  co_return outcome::success();
}

net::awaitable<Result<json>> DockerEngine::inspect_container(std::string id) {
  co_return co_await call("GET", "/containers/" + id + "/json");
}

net::awaitable<Result<json>> DockerEngine::list_containers(std::vector<std::string> labels) {
  co_return co_await call("GET", "/containers/json?all=1&filters=" + label_filters(labels));
}

net::awaitable<Result<int>> DockerEngine::wait_container(std::string id) {
  auto r = co_await call("POST", "/containers/" + id + "/wait?condition=not-running", nullptr,
                         Duration::zero());
  if (r.has_error()) co_return r.error();
  co_return r.value().value("StatusCode", -1);
}

net::awaitable<Result<void>> DockerEngine::update_container(std::string id, json update) {
  auto r = co_await call("POST", "/containers/" + id + "/update", update);
  if (r.has_error()) co_return r.error();
  co_return outcome::success();
}

net::awaitable<Result<void>> DockerEngine::pause_container(std::string id) {
  auto r = co_await call("POST", "/containers/" + id + "/pause");
  if (r.has_error()) co_return r.error();
  co_return outcome::success();
}

net::awaitable<Result<void>> DockerEngine::unpause_container(std::string id) {
  auto r = co_await call("POST", "/containers/" + id + "/unpause");
  if (r.has_error()) co_return r.error();
  co_return outcome::success();
}

net::awaitable<Result<void>> DockerEngine::logs(std::string id, bool follow, long since,
                                                std::function<void(const LogChunk&)> sink,
                                                bool tty) {
  HttpClientRequest req;
  req.target = url(fmt::format("/containers/{}/logs?stdout=1&stderr=1&follow={}&since={}", id,
                               follow ? 1 : 0, since));
  req.timeout = follow ? Duration::zero() : std::chrono::seconds(30);
  auto demux = std::make_shared<LogDemuxer>();
  // Named: GCC 12 destroys a temporary passed to a coroutine in a co_await twice.
  BodySink on_body = [demux, sink, tty](std::string_view bytes) {
    if (tty) {
      sink(LogChunk{1, bytes});
    } else {
      demux->feed(bytes, sink);
    }
    return true;
  };
  auto r = co_await http_.stream(std::move(req), std::move(on_body));
  if (r.has_error()) co_return r.error();
  if (r.value().status >= 400) co_return fail(errc_for_status(r.value().status), engine_message(r.value()));
  co_return outcome::success();
}

net::awaitable<Result<void>> DockerEngine::events(json filters,
                                                  std::function<bool(const json&)> sink) {
  HttpClientRequest req;
  req.target = url("/events?filters=" + http::percent_encode(filters.dump()));
  req.timeout = Duration::zero();
  auto pending = std::make_shared<std::string>();
  // Named: GCC 12 destroys a temporary passed to a coroutine in a co_await twice.
  BodySink on_body = [pending, sink](std::string_view bytes) {
    pending->append(bytes);
    std::size_t nl;
    while ((nl = pending->find('\n')) != std::string::npos) {
      std::string line = pending->substr(0, nl);
      pending->erase(0, nl + 1);
      try {
        if (!sink(json::parse(line))) return false;
      } catch (const json::exception&) {
        // not an event; skip it
      }
    }
    return true;
  };
  auto r = co_await http_.stream(std::move(req), std::move(on_body));
  if (r.has_error()) co_return r.error();
  if (r.value().status >= 400) co_return fail(errc_for_status(r.value().status), engine_message(r.value()));
  co_return outcome::success();
}

// DockerEngine::exec's watch over a silent command (see there).
static net::awaitable<void> probe_exec(DockerEngine* engine, std::string exec_id,
                                       std::function<bool(std::string_view)> output,
                                       std::shared_ptr<bool> finished, std::shared_ptr<bool> stopped) {
  net::steady_timer pause(co_await net::this_coro::executor);
  while (!*finished && !*stopped) {
    pause.expires_after(std::chrono::seconds(1));
    co_await pause.async_wait(net::use_awaitable);
    if (*finished || *stopped || output("")) continue;
    *stopped = true;
    auto info = co_await engine->call("GET", "/exec/" + exec_id + "/json");
    if (info.has_value() && info.value().is_object()) {
      int pid = info.value().value("Pid", 0);
      if (pid > 0) ::kill(pid, SIGKILL);
    }
  }
}

net::awaitable<Result<ExecResult>> DockerEngine::exec(std::string id, std::vector<std::string> argv,
                                                      std::vector<std::string> env,
                                                      std::string workdir, Duration timeout,
                                                      std::function<bool(std::string_view)> output) {
  json create = {{"AttachStdout", true}, {"AttachStderr", true}, {"Tty", false}, {"Cmd", argv}};
  if (!env.empty()) create["Env"] = env;
  if (!workdir.empty()) create["WorkingDir"] = workdir;
  auto made = co_await call("POST", "/containers/" + id + "/exec", create);
  if (made.has_error()) {
    co_return fail(made.error().code, fmt::format("cannot run a command in container {}: {}",
                                                  id.substr(0, 12), made.error().message));
  }
  std::string exec_id = made.value().value("Id", "");
  HttpClientRequest req;
  req.method = "POST";
  req.target = url("/exec/" + exec_id + "/start");
  req.body = json{{"Detach", false}, {"Tty", false}}.dump();
  req.timeout = timeout;
  auto out = std::make_shared<std::string>();
  auto demux = std::make_shared<LogDemuxer>();
  auto stopped = std::make_shared<bool>(false);
  // Named: GCC 12 destroys a temporary passed to a coroutine in a co_await twice.
  BodySink on_body = [out, demux, stopped, output](std::string_view bytes) {
    demux->feed(bytes, [&](const LogChunk& c) {
      if (!output) {
        out->append(c.text);
      } else if (!*stopped && !output(c.text)) {
        *stopped = true;
      }
    });
    return !*stopped;
  };
  // A command that prints nothing is asked each second whether its output is still wanted
  // (an empty write); when not, it is killed, which ends the stream.
  auto finished = std::make_shared<bool>(false);
  if (output) {
    spawn(co_await net::this_coro::executor,
          probe_exec(this, exec_id, output, finished, stopped), "exec probe " + exec_id.substr(0, 12));
  }
  auto r = co_await http_.stream(std::move(req), std::move(on_body));
  *finished = true;
  bool timed_out = r.has_error() && r.error().code == Errc::timeout;
  if (r.has_error() && !timed_out) co_return r.error();
  if (!timed_out && r.value().status >= 400) {
    co_return fail(errc_for_status(r.value().status), engine_message(r.value()));
  }
  auto info = co_await call("GET", "/exec/" + exec_id + "/json");
  if (info.has_error()) co_return info.error();
  auto running = [](const json& j) { return j.is_object() && j.value("Running", false); };
  if ((timed_out || *stopped) && running(info.value())) {
    // The engine has no call to stop an exec: kill its process, which the host sees by pid.
    int pid = info.value().value("Pid", 0);
    if (pid > 0) ::kill(pid, SIGKILL);
    for (int i = 0; i < 50 && info.has_value() && running(info.value()); ++i) {
      net::steady_timer pause(co_await net::this_coro::executor, std::chrono::milliseconds(20));
      co_await pause.async_wait(net::use_awaitable);
      info = co_await call("GET", "/exec/" + exec_id + "/json");
    }
    if (info.has_error()) co_return info.error();
  }
  ExecResult res;
  res.output = std::move(*out);
  const json& code = info.value()["ExitCode"];  // null while the command still runs
  res.exit_code = code.is_number_integer() ? code.get<int>() : -1;
  if (res.exit_code < 0 && (timed_out || *stopped)) res.exit_code = 128 + SIGKILL;
  res.timed_out = timed_out;
  res.stopped = *stopped;
  co_return res;
}

net::awaitable<Result<void>> DockerEngine::put_archive(std::string id, std::string dir,
                                                       std::string tar) {
  HttpClientRequest req;
  req.method = "PUT";
  req.target = url(fmt::format("/containers/{}/archive?path={}", id, http::percent_encode(dir)));
  req.body = std::move(tar);
  req.content_type = "application/x-tar";
  auto r = co_await http_.request(std::move(req));
  if (r.has_error()) co_return r.error();
  if (r.value().status >= 400) {
    co_return fail(errc_for_status(r.value().status),
                   fmt::format("cannot copy files into {}:{}: {}", id.substr(0, 12), dir,
                               engine_message(r.value())));
  }
  co_return outcome::success();
}

net::awaitable<Result<json>> DockerEngine::inspect_image(std::string name) {
  co_return co_await call("GET", "/images/" + http::percent_encode(name, true) + "/json");
}

net::awaitable<Result<void>> DockerEngine::pull_image(std::string name, Duration timeout) {
  auto [repo, tag] = split_image_name(name);
  HttpClientRequest req;
  req.method = "POST";
  req.target = url(fmt::format("/images/create?fromImage={}&tag={}", http::percent_encode(repo),
                               http::percent_encode(tag)));
  req.timeout = timeout;
  std::string error;
  // Named: GCC 12 destroys a temporary passed to a coroutine in a co_await twice.
  BodySink on_body = [&error](std::string_view bytes) {
    // Progress lines; a failure mid-pull arrives as {"error": "..."} with status 200.
    auto pos = bytes.find("\"error\"");
    if (pos != std::string_view::npos) {
      try {
        auto nl = bytes.find('\n', pos);
        auto start = bytes.rfind('{', pos);
        auto j = json::parse(bytes.substr(start, nl == std::string_view::npos ? nl : nl - start));
        error = j.value("error", "");
      } catch (const json::exception&) {
        error = std::string(bytes.substr(0, 200));
      }
    }
    return true;
  };
  auto r = co_await http_.stream(std::move(req), std::move(on_body));
  if (r.has_error()) co_return r.error();
  if (r.value().status >= 400) {
    co_return fail(errc_for_status(r.value().status), fmt::format("cannot pull {}: {}", name, engine_message(r.value())));
  }
  if (!error.empty()) co_return fail(Errc::unavailable, fmt::format("cannot pull {}: {}", name, error));
  co_return outcome::success();
}

net::awaitable<Result<std::string>> DockerEngine::import_image(std::filesystem::path tar,
                                                               std::string name,
                                                               std::vector<std::string> changes) {
  auto [repo, tag] = split_image_name(name);
  HttpClientRequest req;
  req.method = "POST";
  req.target = url(fmt::format("/images/create?fromSrc=-&repo={}&tag={}{}", http::percent_encode(repo),
                               http::percent_encode(tag), changes_query(changes)));
  req.body_file = tar;
  req.content_type = "application/x-tar";
  req.timeout = std::chrono::minutes(10);
  auto r = co_await http_.request(std::move(req));
  if (r.has_error()) co_return r.error();
  if (r.value().status >= 400 || r.value().body.find("\"error\"") != std::string::npos) {
    co_return fail(Errc::unavailable, fmt::format("cannot import {} as {}: {}", tar.string(), name,
                                                  engine_message(r.value())));
  }
  auto img = co_await inspect_image(name);
  if (img.has_error()) co_return img.error();
  co_return img.value().value("Id", "");
}

net::awaitable<Result<std::string>> DockerEngine::build_image(
    std::filesystem::path context_tar, std::string tag, json labels,
    std::function<void(std::string_view)> progress, BuildLimits limits) {
  HttpClientRequest req;
  req.method = "POST";
  std::string query = fmt::format("/build?t={}&rm=1&forcerm=1&labels={}", http::percent_encode(tag),
                                  http::percent_encode(labels.dump()));
  if (limits.memory) query += fmt::format("&memory={0}&memswap={0}", limits.memory);
  if (limits.cpus > 0) {
    // The classic builder takes a CFS quota per 100 ms period, not NanoCpus.
    query += fmt::format("&cpuperiod=100000&cpuquota={}",
                         static_cast<std::int64_t>(limits.cpus * 100000));
  }
  if (!limits.dockerfile.empty()) query += "&dockerfile=" + http::percent_encode(limits.dockerfile);
  if (!limits.args.empty()) {
    json args = json::object();
    for (const auto& [k, v] : limits.args) args[k] = v;
    query += "&buildargs=" + http::percent_encode(args.dump());
  }
  if (!limits.target.empty()) query += "&target=" + http::percent_encode(limits.target);
  req.target = url(query);
  req.body_file = context_tar;
  req.content_type = "application/x-tar";
  req.timeout = limits.timeout;
  std::string error, pending, image_id;
  // Named: GCC 12 destroys a temporary passed to a coroutine in a co_await twice.
  BodySink on_body = [&](std::string_view bytes) {
    pending.append(bytes);
    std::size_t nl;
    while ((nl = pending.find('\n')) != std::string::npos) {
      std::string line = pending.substr(0, nl);
      pending.erase(0, nl + 1);
      try {
        auto j = json::parse(line);
        if (j.contains("stream") && j["stream"].is_string()) {
          std::string s = j["stream"].get<std::string>();
          while (!s.empty() && (s.back() == '\n' || s.back() == '\r')) s.pop_back();
          if (!s.empty()) progress(s);
        }
        if (j.contains("aux") && j["aux"].is_object()) image_id = j["aux"].value("ID", "");
        if (j.contains("error") && j["error"].is_string()) {
          error = j["error"].get<std::string>();
          progress("error: " + error);
        }
      } catch (const json::exception&) {
        progress(line);
      }
    }
    return true;
  };
  auto r = co_await http_.stream(std::move(req), std::move(on_body));
  if (r.has_error()) {
    if (r.error().code == Errc::timeout) {
      co_return fail(Errc::timeout,
                     fmt::format("docker build of {} took longer than {}; it was cancelled",
                                 tag, format_duration(limits.timeout)));
    }
    co_return r.error();
  }
  if (r.value().status >= 400) {
    co_return fail(errc_for_status(r.value().status),
                   fmt::format("docker build of {} failed: {}", tag, engine_message(r.value())));
  }
  if (!error.empty()) co_return fail(Errc::invalid_argument, fmt::format("docker build failed: {}", error));
  co_return image_id;
}

net::awaitable<Result<std::string>> DockerEngine::commit(std::string id, std::string name,
                                                         std::vector<std::string> changes) {
  auto [repo, tag] = split_image_name(name);
  auto r = co_await call("POST",
                         fmt::format("/commit?container={}&repo={}&tag={}{}", id,
                                     http::percent_encode(repo), http::percent_encode(tag),
                                     changes_query(changes)),
                         json::object(), std::chrono::minutes(10));
  if (r.has_error()) {
    co_return fail(r.error().code, fmt::format("cannot save {} as image {}: {}", id.substr(0, 12),
                                               name, r.error().message));
  }
  co_return r.value().value("Id", "");
}

net::awaitable<Result<void>> DockerEngine::remove_image(std::string name) {
  auto r = co_await call("DELETE", "/images/" + http::percent_encode(name, true) + "?force=1");
  if (r.has_error() && r.error().code != Errc::not_found) co_return r.error();
  co_return outcome::success();
}

net::awaitable<Result<void>> DockerEngine::create_volume(std::string name, json labels) {
  // Built outside the co_await: GCC 12 rejects braced json literals inside one.
  json body = {{"Name", name}, {"Labels", labels}};
  auto r = co_await call("POST", "/volumes/create", std::move(body));
  if (r.has_error()) {
    co_return fail(r.error().code, fmt::format("cannot create volume {}: {}", name, r.error().message));
  }
  co_return outcome::success();
}

net::awaitable<Result<json>> DockerEngine::list_volumes(std::vector<std::string> labels) {
  auto r = co_await call("GET", "/volumes?filters=" + label_filters(labels));
  if (r.has_error()) co_return r.error();
  co_return r.value().value("Volumes", json::array());
}

net::awaitable<Result<void>> DockerEngine::remove_volume(std::string name) {
  auto r = co_await call("DELETE", "/volumes/" + http::percent_encode(name));
  if (r.has_error() && r.error().code != Errc::not_found) co_return r.error();
  co_return outcome::success();
}

net::awaitable<Result<std::string>> DockerEngine::create_network(json body) {
  std::string name = body.value("Name", "");
  auto r = co_await call("POST", "/networks/create", std::move(body));
  if (r.has_error()) {
    auto code = r.error().code;
    // Engines answer 409, or 500 "network with name ... already exists" on older versions.
    if (code == Errc::already_exists ||
        r.error().message.find("already exists") != std::string::npos) {
      code = Errc::already_exists;
    }
    co_return fail(code, fmt::format("cannot create network {}: {}", name, r.error().message));
  }
  co_return r.value().value("Id", "");
}

net::awaitable<Result<json>> DockerEngine::inspect_network(std::string name) {
  co_return co_await call("GET", "/networks/" + http::percent_encode(name));
}

net::awaitable<Result<json>> DockerEngine::list_networks(std::vector<std::string> labels) {
  co_return co_await call("GET", "/networks?filters=" + label_filters(labels));
}

net::awaitable<Result<void>> DockerEngine::remove_network(std::string name) {
  auto r = co_await call("DELETE", "/networks/" + http::percent_encode(name));
  if (r.has_error() && r.error().code != Errc::not_found) co_return r.error();
  co_return outcome::success();
}

net::awaitable<Result<void>> DockerEngine::connect_network(std::string network,
                                                           std::string container,
                                                           std::vector<std::string> aliases) {
  json body = {{"Container", container}, {"EndpointConfig", {{"Aliases", aliases}}}};
  auto r = co_await call("POST", "/networks/" + http::percent_encode(network) + "/connect",
                         std::move(body));
  if (r.has_error()) {
    co_return fail(r.error().code, fmt::format("cannot connect container {} to network {}: {}",
                                               container.substr(0, 12), network,
                                               r.error().message));
  }
  co_return outcome::success();
}

}  // namespace ck
