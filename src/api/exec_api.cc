// The API's long-running answers: a command run in a workspace (POST /workspaces/{name}/run),
// a forced sync (POST /workspaces/{name}/sync), a followed workspace log
// (GET /workspaces/{name}/logs?follow=1) and the monitor's own log (GET /logs). None of them
// holds a gateway thread: each answers with an http::ResponseStream that the control plane's
// thread (run, sync) or the API's poller thread (follows) fills.

#include <fcntl.h>
#include <fmt/format.h>
#include <sys/stat.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include "api/api.h"
#include "api/auth_http.h"
#include "api/poller.h"
#include "api/respond.h"
#include "core/log.h"
#include "http/stream.h"
#include "http/url.h"

namespace ck {

using json = nlohmann::json;

namespace api {
std::shared_ptr<Poller> make_poller() { return std::make_shared<Poller>(); }
}  // namespace api

namespace {

constexpr std::string_view kApi = "/monitor/api/v1";
constexpr Duration kDefaultRunTimeout = std::chrono::seconds(30);
constexpr Duration kMaxRunTimeout = std::chrono::minutes(10);
constexpr std::size_t kMaxArgs = 1024;
constexpr std::size_t kMaxCommandBytes = 256u << 10;
constexpr std::size_t kMaxCollected = 4u << 20;  // a run's output kept for a JSON answer
constexpr std::size_t kMaxFollowRead = 1u << 20; // log bytes relayed per poll
constexpr int kDefaultTail = 200;
constexpr int kMaxTail = 5000;

std::string dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }


// The length of the longest prefix of `bytes` that does not end inside a UTF-8 sequence, so a
// character split across two reads is sent whole with the second.
std::size_t utf8_whole(std::string_view bytes) {
  std::size_t n = bytes.size();
  for (std::size_t back = 1; back <= 3 && back <= n; ++back) {
    auto c = static_cast<unsigned char>(bytes[n - back]);
    if ((c & 0xC0) == 0x80) continue;  // a continuation byte: look further back
    std::size_t len = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC0 ? 2 : 1;
    return len > back ? n - back : n;
  }
  return n;
}

// `carry` (bytes held back last time) + `bytes`, up to the last whole UTF-8 character; what
// follows it becomes the new carry.
std::string whole_utf8(std::string& carry, std::string_view bytes) {
  std::string text = carry;
  text.append(bytes);
  std::size_t whole = utf8_whole(text);
  carry = text.substr(whole);
  text.resize(whole);
  return text;
}

// POST /run's body: {"command": ["argv0", ...], "timeout": "30s"}.
struct RunRequest {
  std::vector<std::string> argv;
  std::string service;  // a compose workspace's service; "" = the routed one
  Duration timeout = kDefaultRunTimeout;
};

Result<RunRequest> parse_run(const std::string& body) {
  auto doc = json::parse(body, nullptr, false);
  if (doc.is_discarded() || !doc.is_object()) {
    return fail(Errc::invalid_argument,
                R"(the body must be a JSON object such as {"command": ["ls", "-la"], "timeout": "30s"})");
  }
  RunRequest out;
  const auto it = doc.find("command");
  if (it == doc.end() || !it->is_array() || it->empty()) {
    return fail(Errc::invalid_argument,
                R"("command" must be a non-empty array of strings (the argv), such as ["npm", "test"]; for a shell line use ["sh", "-c", "..."])");
  }
  if (it->size() > kMaxArgs) {
    return fail(Errc::invalid_argument, fmt::format("\"command\" has more than {} words", kMaxArgs));
  }
  std::size_t bytes = 0;
  for (const auto& word : *it) {
    if (!word.is_string()) {
      return fail(Errc::invalid_argument, "every word of \"command\" must be a string");
    }
    const auto& s = word.get_ref<const std::string&>();
    if (s.find('\0') != std::string::npos) {
      return fail(Errc::invalid_argument, "a word of \"command\" contains a NUL byte");
    }
    bytes += s.size();
    out.argv.push_back(s);
  }
  if (out.argv.front().empty()) return fail(Errc::invalid_argument, "the command's name is empty");
  if (bytes > kMaxCommandBytes) {
    return fail(Errc::invalid_argument, "\"command\" is longer than 256 KiB");
  }
  if (auto sv = doc.find("service"); sv != doc.end() && !sv->is_null()) {
    bool ok = sv->is_string() && !sv->get_ref<const std::string&>().empty() &&
              sv->get_ref<const std::string&>().size() <= 63;
    if (ok) {
      for (char c : sv->get_ref<const std::string&>()) {
        ok = ok && ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '-' || c == '_' || c == '.');
      }
    }
    if (!ok) {
      return fail(Errc::invalid_argument,
                  "\"service\" must be the name of one of the workspace's compose services, "
                  "such as \"db\"");
    }
    out.service = sv->get<std::string>();
  }
  if (auto t = doc.find("timeout"); t != doc.end() && !t->is_null()) {
    auto d = t->is_string() ? parse_duration(t->get<std::string>())
                            : Result<Duration>(fail(Errc::invalid_argument, ""));
    if (d.has_error() || d.value() <= Duration::zero() || d.value() > kMaxRunTimeout) {
      return fail(Errc::invalid_argument,
                  "\"timeout\" must be a duration from \"1s\" to \"10m\", such as \"30s\"");
    }
    out.timeout = d.value();
  }
  return out;
}

// Where a followed log file is read from. Reopened when the file is replaced or truncated.
struct LogFollow {
  std::filesystem::path path;
  int fd = -1;
  ino_t inode = 0;
  off_t offset = 0;
  std::string carry;  // an incomplete UTF-8 sequence held for the next read
  ~LogFollow() {
    if (fd >= 0) ::close(fd);
  }
  // Opens the file (if it exists) at `at` (-1: its end).
  void open(off_t at) {
    if (fd >= 0) ::close(fd);
    fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    struct stat st {};
    if (fd < 0 || ::fstat(fd, &st) != 0) {
      inode = 0;
      offset = 0;
      return;
    }
    inode = st.st_ino;
    offset = at < 0 ? st.st_size : at;
  }
  // What was appended since the last read ("" if nothing).
  std::string read_new() {
    struct stat st {};
    if (::stat(path.c_str(), &st) != 0) return "";   // gone for now; it may come back
    if (fd < 0 || st.st_ino != inode) open(0);     // created or replaced: from its start
    else if (st.st_size < offset) offset = 0;       // truncated: from its start
    if (fd < 0) return "";
    std::string out(kMaxFollowRead, '\0');
    ssize_t n = ::pread(fd, out.data(), out.size(), offset);
    if (n <= 0) return "";
    offset += n;
    out.resize(static_cast<std::size_t>(n));
    return whole_utf8(carry, out);
  }
};

}  // namespace

http::Response ControlApi::run_command(const http::Request& req, const WorkspaceView& w,
                                       const std::function<void(json)>& audit) const {
  auto parsed = parse_run(req.body);
  if (parsed.has_error()) return error_response(parsed.error().code, parsed.error().message);
  auto conflict = [](const std::string& message) { return error_response(Errc::conflict, message); };
  if (!w.runs) {
    return conflict(w.is_static
                        ? fmt::format("'{}' is a static workspace: the gateway serves its files and "
                                      "there is no container or process to run a command in",
                                      w.name)
                        : fmt::format("'{}' has no app that can run here ({})", w.name, w.error));
  }
  if (w.status != "running") {
    return conflict(fmt::format("'{}' is {}, not running: start it (POST {}/workspaces/{}/start) "
                                "and run the command again",
                                w.name, w.status, kApi, w.name));
  }
  if (!services_.run) {
    return error_response(Errc::unavailable, "this control plane cannot run commands");
  }
  const bool streamed = http::query_param(req.query, "stream").value_or("") == "1";
  RunRequest run = std::move(parsed.value());
  json detail = {{"command", run.argv}, {"timeout", format_duration(run.timeout)}};
  if (!run.service.empty()) detail["service"] = run.service;
  audit(detail);

  auto st = std::make_shared<http::ResponseStream>();
  auto collected = std::make_shared<std::string>();
  auto truncated = std::make_shared<bool>(false);
  auto carry = std::make_shared<std::string>();
  // Streamed: one {"output"} line per read, the head sent with the first one.
  OutputSink output = [st, collected, truncated, carry, streamed](std::string_view bytes) {
    if (!streamed) {
      std::size_t room = kMaxCollected - std::min(kMaxCollected, collected->size());
      if (bytes.size() > room) *truncated = true;
      collected->append(bytes.substr(0, room));
      return !st->cancelled();
    }
    std::string text = whole_utf8(*carry, bytes);
    if (text.empty()) return !st->cancelled();
    st->begin(200, "application/x-ndjson");
    return st->write(dump(json{{"output", text}}) + "\n");
  };
  std::string name = w.name;
  auto done = [st, collected, truncated, carry, streamed, name](Result<ExecOutcome> r) {
    if (r.has_error()) {
      // The app stopped between the check above and the run: a conflict, like the check.
      bool gone = r.error().code == Errc::not_found;
      Errc code = gone ? Errc::conflict : r.error().code;
      std::string message =
          gone ? fmt::format("'{}' stopped before the command could run: start it and try again", name)
               : r.error().message;
      json err = {{"error", {{"code", errc_name(code)}, {"message", message}}}};
      st->begin(http_status_for(code), streamed ? "application/x-ndjson" : "application/json");
      st->write(dump(err) + (streamed ? "\n" : ""));
      st->finish();
      return;
    }
    json result = {{"exit_code", r.value().exit_code}, {"timed_out", r.value().timed_out}};
    if (streamed) {
      st->begin(200, "application/x-ndjson");
      if (!carry->empty()) st->write(dump(json{{"output", *carry}}) + "\n");
      st->write(dump(result) + "\n");
    } else {
      result["output"] = std::move(*collected);
      result["truncated"] = *truncated;
      st->begin(200, "application/json");
      st->write(dump(result));
    }
    st->finish();
  };
  services_.run(name, run.service, std::move(run.argv), run.timeout, std::move(output),
                std::move(done));
  http::Response res;
  res.stream = st;
  return res;
}

http::Response ControlApi::sync_workspace(const WorkspaceView& w) const {
  if (!services_.sync) return error_response(Errc::unavailable, "this control plane cannot sync");
  auto st = std::make_shared<http::ResponseStream>();
  std::string name = w.name;
  services_.sync(name, [st, name](Result<SyncOutcome> r) {
    if (r.has_error()) return st->respond(error_response(r.error().code, r.error().message));
    const auto& o = r.value();
    json body = {{"name", name}, {"storage", o.storage}};
    if (o.storage == "s3") {
      body["direction"] = "pull";
      body["pulled"] = o.pulled;
      body["removed"] = o.removed;
      body["failed"] = o.failed;
      body["files"] = o.files;
    } else {
      body["direction"] = "rescan";
    }
    if (o.git) {
      body["git"] = {{"updated", o.git_updated}, {"head", o.git_head}, {"changed", o.git_changed}};
    }
    st->respond(api::json_response(200, body));
  });
  http::Response res;
  res.stream = st;
  return res;
}

http::Response ControlApi::follow_log(const http::Request& req, const WorkspaceView& w) const {
  auto tail = parse_tail(http::query_param(req.query, "tail").value_or(""), kDefaultTail, kMaxTail);
  if (tail.has_error()) return error_response(tail.error().code, tail.error().message);
  if (!services_.log_path) return error_response(Errc::unavailable, "this control plane keeps no logs");
  auto follow = std::make_shared<LogFollow>();
  follow->path = services_.log_path(w.name);
  follow->open(-1);  // what comes after the tail below
  // ?service=NAME: a compose workspace's service only, its "NAME | " prefix removed.
  const std::string service = http::query_param(req.query, "service").value_or("");
  const std::string prefix = service.empty() ? "" : service + " | ";
  std::vector<std::string> lines;
  if (service.empty()) {
    lines = tail_lines(follow->path, static_cast<std::size_t>(tail.value()), 8u << 20);
  } else {
    for (auto& line : tail_lines(follow->path, std::size_t{1} << 20, 8u << 20)) {
      if (line.starts_with(prefix)) lines.push_back(line.substr(prefix.size()));
    }
    if (lines.size() > static_cast<std::size_t>(tail.value())) {
      lines.erase(lines.begin(), lines.end() - tail.value());
    }
  }
  std::string head;
  for (const auto& line : lines) head += line + "\n";
  auto st = std::make_shared<http::ResponseStream>();
  st->begin(200, "text/plain; charset=utf-8");
  st->write(head);
  auto partial = std::make_shared<std::string>();  // a line not yet ended (filtered only)
  poller_->add([st, follow, prefix, partial] {
    if (st->cancelled()) return false;
    std::string more = follow->read_new();
    if (more.empty()) return true;
    if (prefix.empty()) return st->write(more);
    partial->append(more);
    std::string out;
    std::size_t start = 0, nl;
    while ((nl = partial->find('\n', start)) != std::string::npos) {
      std::string_view line(partial->data() + start, nl - start);
      if (line.starts_with(prefix)) {
        out.append(line.substr(prefix.size()));
        out.push_back('\n');
      }
      start = nl + 1;
    }
    partial->erase(0, start);
    if (partial->size() > kMaxFollowRead) partial->clear();  // no line is that long: drop it
    return out.empty() || st->write(out);
  });
  http::Response res;
  res.stream = st;
  return res;
}

http::Response ControlApi::monitor_logs(const http::Request& req) const {
  auto tail = parse_tail(http::query_param(req.query, "tail").value_or(""), kDefaultTail,
                         static_cast<int>(log::kRingSize));
  if (tail.has_error()) return error_response(tail.error().code, tail.error().message);
  auto entry = [](const log::Record& r) {
    return json{{"seq", r.seq}, {"time", r.time}, {"level", r.level}, {"logger", r.logger}, {"msg", r.msg}};
  };
  auto records = log::recent(static_cast<std::size_t>(tail.value()));
  if (http::query_param(req.query, "follow").value_or("") != "1") {
    json out = json::array();
    for (const auto& r : records) out.push_back(entry(r));
    return api::json_response(200, {{"entries", out}});
  }
  // Followed: one JSON object per line, the tail first.
  auto st = std::make_shared<http::ResponseStream>();
  st->begin(200, "application/x-ndjson");
  auto last = std::make_shared<std::uint64_t>(0);
  auto send = [st, last, entry](const std::vector<log::Record>& batch) {
    std::string lines;
    for (const auto& r : batch) {
      lines += dump(entry(r)) + "\n";
      *last = r.seq;
    }
    return lines.empty() || st->write(lines);
  };
  send(records);
  if (records.empty()) {
    auto newest = log::recent(1);
    if (!newest.empty()) *last = newest.back().seq;
  }
  poller_->add([st, last, send] {
    if (st->cancelled()) return false;
    return send(log::recent(log::kRingSize, *last));
  });
  http::Response res;
  res.stream = st;
  return res;
}

}  // namespace ck
