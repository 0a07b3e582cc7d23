#include "core/log.h"

#include <deque>
#include <mutex>
#include <nlohmann/json.hpp>
#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/base_sink.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <unistd.h>

namespace ck::log {
namespace {

// Formats each record as one JSON object per line: time, level, logger, msg.
// A record's time as RFC 3339 UTC with milliseconds.
std::string iso_time(std::chrono::system_clock::time_point at) {
  auto secs = std::chrono::time_point_cast<std::chrono::seconds>(at);
  auto millis = std::chrono::duration_cast<std::chrono::milliseconds>(at - secs).count();
  std::time_t t = std::chrono::system_clock::to_time_t(at);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char ts[64];
  std::snprintf(ts, sizeof ts, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
                tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                static_cast<int>(millis));
  return ts;
}

Record record_of(const spdlog::details::log_msg& msg) {
  Record r;
  r.time = iso_time(msg.time);
  auto lv = spdlog::level::to_string_view(msg.level);
  r.level = std::string(lv.data(), lv.size());
  r.logger = std::string(msg.logger_name.data(), msg.logger_name.size());
  r.msg = std::string(msg.payload.data(), msg.payload.size());
  return r;
}

class JsonFormatter final : public spdlog::formatter {
 public:
  void format(const spdlog::details::log_msg& msg, spdlog::memory_buf_t& dest) override {
    Record r = record_of(msg);
    nlohmann::json j;
    j["time"] = r.time;
    j["level"] = r.level;
    j["logger"] = r.logger;
    j["msg"] = r.msg;
    auto s = j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    dest.append(s.data(), s.data() + s.size());
    dest.push_back('\n');
  }
  std::unique_ptr<spdlog::formatter> clone() const override {
    return std::make_unique<JsonFormatter>();
  }
};

// The last kRingSize records, for the API's GET /logs.
class RingSink final : public spdlog::sinks::base_sink<std::mutex> {
 public:
  std::vector<Record> recent(std::size_t max, std::uint64_t after) {
    std::lock_guard lock(mutex_);
    std::vector<Record> out;
    for (auto it = ring_.rbegin(); it != ring_.rend() && out.size() < max && it->seq > after; ++it) {
      out.push_back(*it);
    }
    return {out.rbegin(), out.rend()};
  }

 protected:
  void sink_it_(const spdlog::details::log_msg& msg) override {
    Record r = record_of(msg);
    r.seq = ++seq_;
    if (ring_.size() == kRingSize) ring_.pop_front();
    ring_.push_back(std::move(r));
  }
  void flush_() override {}

 private:
  std::deque<Record> ring_;
  std::uint64_t seq_ = 0;
};

struct State {
  std::mutex mu;
  spdlog::sink_ptr sink;
  std::shared_ptr<RingSink> ring = std::make_shared<RingSink>();
  bool json = false;
  spdlog::level::level_enum level = spdlog::level::info;
};

State& state() {
  static State s;
  return s;
}

std::unique_ptr<spdlog::formatter> make_formatter(bool json) {
  if (json) return std::make_unique<JsonFormatter>();
  return std::make_unique<spdlog::pattern_formatter>("%Y-%m-%d %H:%M:%S.%e %^%-5l%$ [%n] %v");
}

spdlog::sink_ptr sink_locked(State& s) {
  if (!s.sink) {
    s.sink = std::make_shared<spdlog::sinks::stderr_color_sink_mt>(spdlog::color_mode::automatic);
    s.sink->set_formatter(make_formatter(s.json));
  }
  return s.sink;
}

}  // namespace

Result<void> setup(std::string_view format, std::string_view level) {
  auto& s = state();
  std::lock_guard lock(s.mu);
  if (format == "json") {
    s.json = true;
  } else if (format == "text" || format.empty()) {
    s.json = false;
  } else {
    return fail(Errc::invalid_argument,
                "log format '" + std::string(format) + "' is unknown: use text or json");
  }
  if (level == "debug") s.level = spdlog::level::debug;
  else if (level == "info" || level.empty()) s.level = spdlog::level::info;
  else if (level == "warn" || level == "warning") s.level = spdlog::level::warn;
  else if (level == "error") s.level = spdlog::level::err;
  else if (level == "trace") s.level = spdlog::level::trace;
  else {
    return fail(Errc::invalid_argument, "log level '" + std::string(level) +
                                            "' is unknown: use debug, info, warn or error");
  }
  sink_locked(s)->set_formatter(make_formatter(s.json));
  spdlog::apply_all([&](const std::shared_ptr<spdlog::logger>& l) { l->set_level(s.level); });
  return outcome::success();
}

std::shared_ptr<spdlog::logger> get(const std::string& module) {
  auto& s = state();
  std::lock_guard lock(s.mu);
  if (auto l = spdlog::get(module)) return l;
  auto l = std::make_shared<spdlog::logger>(module, spdlog::sinks_init_list{sink_locked(s), s.ring});
  l->set_level(s.level);
  l->flush_on(spdlog::level::trace);
  spdlog::register_logger(l);
  return l;
}

std::vector<Record> recent(std::size_t max, std::uint64_t after) {
  return state().ring->recent(max, after);
}

}  // namespace ck::log
