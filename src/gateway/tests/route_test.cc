#include <gtest/gtest.h>
#include <set>

#include "gateway/route.h"

namespace ck {
namespace {

RouteDecision route(std::string_view target, std::set<std::string> known) {
  return route_request(target, [&](std::string_view n) { return known.count(std::string(n)) > 0; });
}

TEST(Route, MonitorGoesToTheControlPlane) {
  EXPECT_EQ(route("/monitor/api/v1/workspaces", {"www"}).kind, RouteKind::control);
  EXPECT_EQ(route("/monitor", {}).kind, RouteKind::control);
  EXPECT_EQ(route("/monitoring/x", {}).kind, RouteKind::not_found);
}

TEST(Route, WorkspacePrefixIsStripped) {
  auto d = route("/app/api/items?x=1", {"app"});
  EXPECT_EQ(d.kind, RouteKind::workspace);
  EXPECT_EQ(d.workspace, "app");
  EXPECT_EQ(d.upstream_target, "/api/items?x=1");
  EXPECT_EQ(d.prefix, "/app");
  EXPECT_EQ(route("/app/", {"app"}).upstream_target, "/");
  EXPECT_EQ(route("/app/?q", {"app"}).upstream_target, "/?q");
}

TEST(Route, BareNameRedirectsWithItsQuery) {
  auto d = route("/app", {"app"});
  EXPECT_EQ(d.kind, RouteKind::redirect);
  EXPECT_EQ(d.location, "/app/");
  EXPECT_EQ(route("/app?x=1", {"app"}).location, "/app/?x=1");
}

TEST(Route, RootGoesToWwwOrHome) {
  EXPECT_EQ(route("/", {"app"}).kind, RouteKind::home);
  auto d = route("/", {"www", "app"});
  EXPECT_EQ(d.kind, RouteKind::workspace);
  EXPECT_EQ(d.workspace, "www");
  EXPECT_EQ(d.upstream_target, "/");
  EXPECT_EQ(d.prefix, "");
}

TEST(Route, RootFilesGoToWww) {
  auto d = route("/style.css", {"www", "app"});
  EXPECT_EQ(d.kind, RouteKind::workspace);
  EXPECT_EQ(d.workspace, "www");
  EXPECT_EQ(d.upstream_target, "/style.css");
  EXPECT_EQ(route("/css/site.css?v=2", {"www"}).upstream_target, "/css/site.css?v=2");
  EXPECT_EQ(route("/style.css", {"app"}).kind, RouteKind::not_found);
}

TEST(Route, WwwIsNotReachableUnderItsOwnPrefix) {
  // /www/x would otherwise be a second address for the same files.
  auto d = route("/www/x", {"www"});
  EXPECT_EQ(d.workspace, "www");
  EXPECT_EQ(d.upstream_target, "/www/x");
}

TEST(Route, UnknownWorkspaceIsNotFound) {
  auto d = route("/nope/x", {"app"});
  EXPECT_EQ(d.kind, RouteKind::not_found);
  EXPECT_EQ(d.workspace, "nope");
  EXPECT_EQ(route("/Bad_Name/", {"app"}).kind, RouteKind::not_found);
}

TEST(Route, NonOriginTargetsAreBadRequests) {
  EXPECT_EQ(route("", {}).kind, RouteKind::bad_request);
  EXPECT_EQ(route("*", {}).kind, RouteKind::bad_request);
  EXPECT_EQ(route("http://evil/", {}).kind, RouteKind::bad_request);
}

}  // namespace
}  // namespace ck
