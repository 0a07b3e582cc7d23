// Request targets and Host headers from the network: routing must never crash and must keep its
// invariants. The input is "<host>\n<target>" (no newline: the whole input is the target).
#include <cstdint>
#include <cstdlib>
#include <string>

#include "gateway/route.h"

namespace {

void check(const ck::RouteDecision& d, bool by_host_allowed) {
  if (d.kind == ck::RouteKind::workspace) {
    // The app always sees an origin-form path, and a prefix is "/<name>" or empty.
    if (d.upstream_target.empty() || d.upstream_target.front() != '/') std::abort();
    if (!d.prefix.empty() && d.prefix != "/" + d.workspace) std::abort();
    if (d.by_host && (!by_host_allowed || !d.prefix.empty())) std::abort();
    // Keep mode: the app of a named workspace sees a target under its base /<name>.
    ck::RouteDecision k = d;
    ck::keep_prefix(k);
    if (k.upstream_target.empty() || k.upstream_target.front() != '/') std::abort();
    if (d.workspace != "www") {
      std::string base = "/" + d.workspace;
      const std::string& t = k.upstream_target;
      if (t.rfind(base, 0) != 0 || (t.size() > base.size() && t[base.size()] != '/' &&
                                    t[base.size()] != '?')) {
        std::abort();
      }
    }
  }
  if (d.kind == ck::RouteKind::redirect && d.location.rfind("/app/", 0) != 0 &&
      d.location.rfind("/a-b/", 0) != 0 && d.location != "/monitor/") {
    std::abort();
  }
  // The dashboard is never served on a workspace's own host.
  if (d.kind == ck::RouteKind::control && d.by_host) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string input(reinterpret_cast<const char*>(data), size);
  std::string host, target = input;
  if (auto nl = input.find('\n'); nl != std::string::npos) {
    host = input.substr(0, nl);
    target = input.substr(nl + 1);
  }
  for (bool www : {false, true}) {
    auto exists = [&](std::string_view n) {
      return n == "app" || n == "a-b" || (www && n == "www");
    };
    check(ck::route_request(target, exists), false);
    check(ck::route_request(host, target, ck::HostRouting{}, exists), false);
    ck::HostRouting hosts{"example.test", "monitor.example.test"};
    auto d = ck::route_request(host, target, hosts, exists);
    check(d, true);
    // With a control host, the control plane is served on it and nowhere else.
    if (d.kind == ck::RouteKind::control &&
        ck::normalize_host(host) != "monitor.example.test") {
      std::abort();
    }
    check(ck::route_request(host, target, ck::HostRouting{"example.test", ""}, exists), true);
  }
  return 0;
}
