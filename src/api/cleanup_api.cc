// The cleanup over the API (issue 19): GET|POST /monitor/api/v1/cleanup, for admins (auth_api.cc
// checked). The work is the daemon's cleanup service (ApiServices::Cleanup).
#include <fmt/format.h>

#include "api/api.h"
#include "api/respond.h"
#include "http/stream.h"

namespace ck {
using json = nlohmann::json;
using api::json_response;

http::Response ControlApi::cleanup_request(const http::Request& req, const std::function<void(json)>& audit) const {
  const auto& c = services_.cleanup;
  if (!c.start || !c.plan || !c.last) return error_response(Errc::unavailable, "this control plane runs no cleanup");
  if (req.method == "GET" || req.method == "HEAD") return json_response(200, c.last());
  if (req.body.size() > 1024) {
    return error_response(Errc::too_large, "the request body is over 1024 bytes; send at most {\"dry_run\": true}");
  }
  auto body = api::body_object(req, true);
  if (body.has_error()) return error_response(body.error().code, body.error().message);
  bool dry = false;
  for (const auto& [key, value] : body.value().items()) {
    if (key != "dry_run") {
      return error_response(Errc::invalid_argument,
                            fmt::format("unknown field '{}': a cleanup takes only dry_run (true or false)", key));
    }
    if (!value.is_null() && !value.is_boolean()) {
      return error_response(Errc::invalid_argument, "'dry_run' must be true or false");
    }
    dry = value.is_boolean() && value.get<bool>();
  }
  if (!dry) {
    auto job = c.start();
    if (job.has_error()) return error_response(job.error().code, job.error().message);
    audit(json::object());
    return json_response(202, job.value());
  }
  auto st = std::make_shared<http::ResponseStream>();
  c.plan([st](Result<json> r) {
    if (r.has_error()) return st->respond(error_response(r.error().code, r.error().message));
    st->respond(json_response(200, r.value()));
  });
  http::Response res;
  res.stream = st;
  return res;
}

}  // namespace ck
