// `cloudyknight gc` over the API (issue 19): POST /cleanup (a dry run answers the plan; a run
// answers its job, followed until it ends), then the report from GET /cleanup.
#include <fmt/format.h>

#include <chrono>
#include <iostream>
#include <nlohmann/json.hpp>
#include <thread>

#include "cli/remote_cmd.h"
#include "cli/remote_internal.h"
#include "core/units.h"

namespace ck::cli {
using json = nlohmann::json;

std::string cleanup_text(const json& report) {
  std::string out;
  bool dry = report.value("dry_run", false);
  const char* verb = dry ? "would remove" : "removed";
  std::size_t ok = 0;
  if (report.contains("items") && report["items"].is_array()) {
    for (const auto& i : report["items"]) {
      if (!i.is_object()) continue;
      std::string kind = str(i, "kind"), name = str(i, "name");
      if (i.contains("error")) {
        out += fmt::format("could not remove {} {}: {}\n", kind, name, str(i, "error"));
        continue;
      }
      ++ok;
      out += fmt::format("{} {} {} ({}): {}\n", verb, kind, name, format_bytes(i.value("bytes", std::uint64_t{0})),
                         str(i, "reason"));
    }
  }
  if (report.contains("items_omitted")) out += fmt::format("... and {} more\n", report["items_omitted"].dump());
  if (report.contains("errors") && report["errors"].is_array()) {
    for (const auto& e : report["errors"]) {
      if (e.is_string()) out += "error: " + e.get<std::string>() + "\n";
    }
  }
  out += fmt::format("{} {} item(s), {} in all\n", dry ? "would reclaim:" : "reclaimed:", ok,
                     format_bytes(report.value("bytes", std::uint64_t{0})));
  return out;
}

int remote_gc(const Endpoint& e, bool dry_run, bool as_json) {
  ApiClient client(e);
  ApiRequest post{"POST", "/cleanup", std::string(dry_run ? R"({"dry_run":true})" : "{}")};
  post.timeout_ms = 600000;
  auto r = client.call(post);
  if (r.has_error()) return error(r.error().message);
  if (!r.value().ok()) return refused(r.value());
  json doc = parse_object(r.value().body);
  if (dry_run) {
    if (as_json) {
      std::cout << doc.dump(2) << std::endl;
    } else {
      std::cout << cleanup_text(doc) << std::flush;
    }
    return doc.contains("errors") && doc["errors"].is_array() && !doc["errors"].empty() ? kExitFailure : kExitOk;
  }
  long long id = doc.contains("job") && doc["job"].is_object() ? doc["job"].value("id", 0LL) : 0LL;
  if (id <= 0) return error("the server queued no cleanup job (its answer had no job id)");
  if (!as_json) std::cerr << fmt::format("cleanup job #{} queued; waiting for it to end\n", id);
  // Followed for at most 30 minutes (a cleanup walks the engine and DATA, usually seconds).
  auto deadline = std::chrono::steady_clock::now() + std::chrono::minutes(30);
  std::string state, last_error;
  while (std::chrono::steady_clock::now() < deadline) {
    auto j = client.call(ApiRequest{"GET", "/jobs/" + std::to_string(id)});
    if (j.has_error()) return error(j.error().message);
    if (!j.value().ok()) return refused(j.value());
    json job = parse_object(j.value().body);
    state = str(job, "state");
    last_error = str(job, "error");
    if (state == "done" || state == "dead" || state == "cancelled") break;
    std::this_thread::sleep_for(std::chrono::seconds(1));
  }
  if (state != "done" && state != "dead" && state != "cancelled") {
    return error(fmt::format("cleanup job #{} has not ended after 30 minutes (state {}); see `GET "
                             "/monitor/api/v1/jobs/{}` and the server's log",
                             id, state, id));
  }
  auto last = client.call(ApiRequest{"GET", "/cleanup"});
  if (last.has_error()) return error(last.error().message);
  if (!last.value().ok()) return refused(last.value());
  json report = parse_object(last.value().body);
  if (as_json) {
    std::cout << report.dump(2) << std::endl;
  } else {
    std::cout << cleanup_text(report) << std::flush;
  }
  if (state != "done") {
    return error(fmt::format("cleanup job #{} ended {}: {}", id, state, last_error.empty() ? "(no error given)" : last_error));
  }
  return kExitOk;
}

}  // namespace ck::cli
