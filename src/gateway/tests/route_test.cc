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


RouteDecision by_host(std::string_view host, std::string_view target, std::set<std::string> known,
                      std::string control = "monitor.example.test") {
  HostRouting hosts{"example.test", std::move(control)};
  return route_request(host, target, hosts,
                       [&](std::string_view n) { return known.count(std::string(n)) > 0; });
}

TEST(RouteHost, NormalizeHost) {
  EXPECT_EQ(normalize_host("App.Example.TEST"), "app.example.test");
  EXPECT_EQ(normalize_host("app.example.test:8080"), "app.example.test");
  EXPECT_EQ(normalize_host("app.example.test.:8080"), "app.example.test");
  EXPECT_EQ(normalize_host("app.example.test."), "app.example.test");
  EXPECT_EQ(normalize_host("[::1]:8080"), "[::1]");
  EXPECT_EQ(normalize_host(""), "");
  EXPECT_EQ(normalize_host("."), "");
  EXPECT_EQ(normalize_host("a b.example.test"), "");
  EXPECT_EQ(normalize_host("evil@app.example.test"), "");
  EXPECT_EQ(normalize_host(std::string(300, 'a')), "");
}

TEST(RouteHost, WorkspaceHostIsServedAtItsRoot) {
  for (auto host : {"app.example.test", "APP.Example.Test:8080", "app.example.test.",
                    "app.example.test.:80"}) {
    auto d = by_host(host, "/api/items?x=1", {"app"});
    EXPECT_EQ(d.kind, RouteKind::workspace) << host;
    EXPECT_EQ(d.workspace, "app");
    EXPECT_EQ(d.upstream_target, "/api/items?x=1");  // nothing stripped
    EXPECT_EQ(d.prefix, "");                         // no X-Forwarded-Prefix
    EXPECT_TRUE(d.by_host);
  }
  EXPECT_EQ(by_host("app.example.test", "/", {"app"}).upstream_target, "/");
  // A path naming another workspace is still this workspace's path.
  auto d = by_host("app.example.test", "/other/x", {"app", "other"});
  EXPECT_EQ(d.workspace, "app");
  EXPECT_EQ(d.upstream_target, "/other/x");
}

TEST(RouteHost, UnknownNameUnderTheDomainIsNotFound) {
  auto d = by_host("nope.example.test", "/", {"app"});
  EXPECT_EQ(d.kind, RouteKind::not_found);
  EXPECT_EQ(d.workspace, "nope");
  EXPECT_TRUE(d.by_host);
  EXPECT_EQ(by_host("a.b.example.test", "/", {"app"}).kind, RouteKind::not_found);
  EXPECT_EQ(by_host("monitor.example.test.evil", "/monitor/", {"app"}).kind,
            RouteKind::dashboard_elsewhere);
  // A suffix that is not a whole label is not under the domain.
  EXPECT_EQ(by_host("appexample.test", "/app/", {"app"}).kind, RouteKind::workspace);
  EXPECT_EQ(by_host("appexample.test", "/app/", {"app"}).prefix, "/app");
}

TEST(RouteHost, TheDomainItselfRoutesByPath) {
  EXPECT_EQ(by_host("example.test", "/", {"app"}).kind, RouteKind::home);
  EXPECT_EQ(by_host("example.test:8080", "/", {"www"}).workspace, "www");
  EXPECT_EQ(by_host("www.example.test", "/", {"www"}).workspace, "www");
  EXPECT_EQ(by_host("www.example.test", "/", {"app"}).kind, RouteKind::home);
  auto d = by_host("example.test", "/app/x", {"app"});
  EXPECT_EQ(d.kind, RouteKind::workspace);
  EXPECT_EQ(d.prefix, "/app");
  EXPECT_EQ(d.upstream_target, "/x");
}

TEST(RouteHost, OtherHostsRouteByPathAsBefore) {
  auto d = by_host("127.0.0.1:8080", "/app/x", {"app"});
  EXPECT_EQ(d.kind, RouteKind::workspace);
  EXPECT_EQ(d.upstream_target, "/x");
  EXPECT_FALSE(d.by_host);
  EXPECT_EQ(by_host("", "/app/x", {"app"}).kind, RouteKind::workspace);
}

TEST(RouteHost, ControlHostServesOnlyTheControlPlane) {
  EXPECT_EQ(by_host("monitor.example.test", "/monitor/api/v1/auth/me", {"app"}).kind,
            RouteKind::control);
  EXPECT_EQ(by_host("Monitor.Example.Test.:8080", "/monitor/", {"app"}).kind, RouteKind::control);
  auto root = by_host("monitor.example.test", "/", {"www"});
  EXPECT_EQ(root.kind, RouteKind::redirect);
  EXPECT_EQ(root.location, "/monitor/");
  EXPECT_EQ(by_host("monitor.example.test", "/app/", {"app"}).kind, RouteKind::control_host_only);
  EXPECT_EQ(by_host("monitor.example.test", "/style.css", {"www"}).kind,
            RouteKind::control_host_only);
}

TEST(RouteHost, DashboardIsNowhereElseWithAControlHost) {
  for (auto host : {"127.0.0.1:8080", "app.example.test", "example.test", "", "nope.example.test"}) {
    auto d = by_host(host, "/monitor/api/v1/auth/me", {"app"});
    EXPECT_EQ(d.kind, RouteKind::dashboard_elsewhere) << host;
    EXPECT_EQ(d.location, "monitor.example.test");
  }
  EXPECT_EQ(by_host("127.0.0.1", "/monitor", {"app"}).kind, RouteKind::dashboard_elsewhere);
}

TEST(RouteHost, WithoutAControlHostAWorkspaceHostStillNeverServesTheDashboard) {
  auto d = by_host("app.example.test", "/monitor/api/v1/auth/me", {"app"}, "");
  EXPECT_EQ(d.kind, RouteKind::workspace);
  EXPECT_EQ(d.upstream_target, "/monitor/api/v1/auth/me");
  EXPECT_EQ(by_host("127.0.0.1", "/monitor/", {"app"}, "").kind, RouteKind::control);
  EXPECT_EQ(by_host("example.test", "/monitor/", {"app"}, "").kind, RouteKind::control);
}

TEST(RouteHost, NoHostRoutingConfiguredIsThePathRouter) {
  auto d = route_request("app.example.test", "/app/x", HostRouting{},
                         [](std::string_view n) { return n == "app"; });
  EXPECT_EQ(d.kind, RouteKind::workspace);
  EXPECT_EQ(d.prefix, "/app");
  EXPECT_EQ(route_request("x", "http://evil/", HostRouting{"example.test", ""},
                          [](std::string_view) { return true; })
                .kind,
            RouteKind::bad_request);
}

RouteDecision kept(RouteDecision d) {
  keep_prefix(d);
  return d;
}

TEST(RouteKeep, ByPathTheAppSeesItsPrefix) {
  auto d = kept(route("/app/api/items?x=1", {"app"}));
  EXPECT_EQ(d.kind, RouteKind::workspace);
  EXPECT_EQ(d.upstream_target, "/app/api/items?x=1");
  EXPECT_EQ(d.prefix, "/app");  // still sent as X-Forwarded-Prefix
  EXPECT_EQ(kept(route("/app/", {"app"})).upstream_target, "/app/");
  EXPECT_EQ(kept(route("/app/?q", {"app"})).upstream_target, "/app/?q");
  EXPECT_EQ(kept(route("/app/@vite/client", {"app"})).upstream_target, "/app/@vite/client");
  // The bare name still redirects first.
  auto r = kept(route("/app", {"app"}));
  EXPECT_EQ(r.kind, RouteKind::redirect);
  EXPECT_EQ(r.location, "/app/");
}

TEST(RouteKeep, WwwAndOtherDecisionsAreUntouched) {
  EXPECT_EQ(kept(route("/style.css", {"www", "app"})).upstream_target, "/style.css");
  EXPECT_EQ(kept(route("/", {"www"})).upstream_target, "/");
  EXPECT_EQ(kept(by_host("www.example.test", "/x", {"www"})).upstream_target, "/x");
  EXPECT_EQ(kept(route("/nope/x", {"app"})).kind, RouteKind::not_found);
}

TEST(RouteKeep, ByHostStripIsThePathAsSent) {
  auto d = by_host("app.example.test", "/app/x?y", {"app"});
  EXPECT_EQ(d.upstream_target, "/app/x?y");
  EXPECT_EQ(by_host("app.example.test", "/", {"app"}).upstream_target, "/");
}

TEST(RouteKeep, ByHostThePrefixIsAddedWhereMissing) {
  auto d = kept(by_host("app.example.test", "/", {"app"}));
  EXPECT_EQ(d.kind, RouteKind::workspace);
  EXPECT_EQ(d.upstream_target, "/app/");
  EXPECT_EQ(d.prefix, "");  // nothing was stripped: no X-Forwarded-Prefix
  EXPECT_EQ(kept(by_host("app.example.test", "/src/main.js?t=1", {"app"})).upstream_target,
            "/app/src/main.js?t=1");
  EXPECT_EQ(kept(by_host("app.example.test", "/?q=1", {"app"})).upstream_target, "/app/?q=1");
  // The app's own absolute URLs are under its base already.
  EXPECT_EQ(kept(by_host("app.example.test", "/app/@vite/client", {"app"})).upstream_target,
            "/app/@vite/client");
  EXPECT_EQ(kept(by_host("app.example.test", "/app", {"app"})).upstream_target, "/app");
  EXPECT_EQ(kept(by_host("app.example.test", "/app?x", {"app"})).upstream_target, "/app?x");
  // Only a whole segment counts.
  EXPECT_EQ(kept(by_host("app.example.test", "/apple", {"app"})).upstream_target, "/app/apple");
}

}  // namespace
}  // namespace ck

TEST(FilesUpload, OnlyPutsToAWorkspacesFiles) {
  EXPECT_TRUE(ck::is_files_upload("PUT", "/monitor/api/v1/workspaces/blog/files/index.html"));
  EXPECT_TRUE(ck::is_files_upload("PUT", "/monitor/api/v1/workspaces/blog/files/a/b.txt?x=1"));
  EXPECT_FALSE(ck::is_files_upload("GET", "/monitor/api/v1/workspaces/blog/files/index.html"));
  EXPECT_FALSE(ck::is_files_upload("POST", "/monitor/api/v1/workspaces/blog/files/index.html"));
  EXPECT_FALSE(ck::is_files_upload("PUT", "/monitor/api/v1/workspaces/blog/run"));
  EXPECT_FALSE(ck::is_files_upload("PUT", "/monitor/api/v1/workspaces//files/x"));
  EXPECT_FALSE(ck::is_files_upload("PUT", "/monitor/api/v1/workspaces/files/x"));
  EXPECT_FALSE(ck::is_files_upload("PUT", "/blog/monitor/api/v1/workspaces/blog/files/x"));
}

TEST(SourceUpload, OnlyPutsOfAWorkspacesSource) {
  EXPECT_TRUE(ck::is_source_upload("PUT", "/monitor/api/v1/workspaces/blog/source"));
  EXPECT_TRUE(ck::is_source_upload("PUT", "/monitor/api/v1/workspaces/blog/source?follow=0"));
  EXPECT_FALSE(ck::is_source_upload("GET", "/monitor/api/v1/workspaces/blog/source"));
  EXPECT_FALSE(ck::is_source_upload("PUT", "/monitor/api/v1/workspaces/blog/source/x"));
  EXPECT_FALSE(ck::is_source_upload("PUT", "/monitor/api/v1/workspaces/blog/sources"));
  EXPECT_FALSE(ck::is_source_upload("PUT", "/monitor/api/v1/workspaces//source"));
  EXPECT_FALSE(ck::is_source_upload("PUT", "/monitor/api/v1/workspaces/source"));
  EXPECT_FALSE(ck::is_source_upload("PUT", "/blog/monitor/api/v1/workspaces/blog/source"));
}

TEST(GitUpload, OnlyPostsOfASmartHttpService) {
  EXPECT_TRUE(ck::is_git_upload("POST", "/monitor/git/blog.git/git-receive-pack"));
  EXPECT_TRUE(ck::is_git_upload("POST", "/monitor/git/blog.git/git-upload-pack"));
  EXPECT_FALSE(ck::is_git_upload("GET", "/monitor/git/blog.git/git-receive-pack"));
  EXPECT_FALSE(ck::is_git_upload("POST", "/monitor/git/blog.git/git-receive-pack?x=1"));
  EXPECT_FALSE(ck::is_git_upload("POST", "/monitor/git/blog.git/info/refs"));
  EXPECT_FALSE(ck::is_git_upload("POST", "/monitor/git//git-receive-pack"));
  EXPECT_FALSE(ck::is_git_upload("POST", "/monitor/git/git-receive-pack"));
  EXPECT_FALSE(ck::is_git_upload("POST", "/monitor/api/v1/workspaces"));
  EXPECT_FALSE(ck::is_git_upload("POST", "/blog/monitor/git/blog.git/git-receive-pack"));
}
