#include "core/log.h"

#include <mutex>
#include <nlohmann/json.hpp>
#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <unistd.h>

namespace ck::log {
namespace {

// Formats each record as one JSON object per line: time, level, logger, msg.
class JsonFormatter final : public spdlog::formatter {
 public:
  void format(const spdlog::details::log_msg& msg, spdlog::memory_buf_t& dest) override {
    auto secs = std::chrono::time_point_cast<std::chrono::seconds>(msg.time);
    auto millis = std::chrono::duration_cast<std::chrono::milliseconds>(msg.time - secs).count();
    std::time_t t = std::chrono::system_clock::to_time_t(msg.time);
    std::tm tm{};
    gmtime_r(&t, &tm);
    char ts[64];
    std::snprintf(ts, sizeof ts, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
                  tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                  static_cast<int>(millis));
    nlohmann::json j;
    j["time"] = ts;
    auto lv = spdlog::level::to_string_view(msg.level);
    j["level"] = std::string(lv.data(), lv.size());
    j["logger"] = std::string(msg.logger_name.data(), msg.logger_name.size());
    j["msg"] = std::string(msg.payload.data(), msg.payload.size());
    auto s = j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    dest.append(s.data(), s.data() + s.size());
    dest.push_back('\n');
  }
  std::unique_ptr<spdlog::formatter> clone() const override {
    return std::make_unique<JsonFormatter>();
  }
};

struct State {
  std::mutex mu;
  spdlog::sink_ptr sink;
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
  auto l = std::make_shared<spdlog::logger>(module, sink_locked(s));
  l->set_level(s.level);
  l->flush_on(spdlog::level::trace);
  spdlog::register_logger(l);
  return l;
}

}  // namespace ck::log
