// The OpenAPI document against the real routing table (routes()) and the real handlers
// (ControlApi::handle), the route matcher, GET /workspaces pagination and the ETag/304 of GETs.

#include <gtest/gtest.h>

#include <algorithm>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <utility>

#include "api/api.h"
#include "api/routes.h"
#include "api/tests/api_fixture.h"
#include "auth/auth.h"

namespace ck {
namespace {

using json = nlohmann::json;
using RouteSet = std::set<std::pair<std::string, std::string>>;

constexpr const char* kApi = "/monitor/api/v1";

class ApiTest : public test_util::ApiFixture {
 protected:
  void SetUp() override {
    std::vector<WorkspaceView> all;
    for (const char* n : {"alpha", "bravo", "charlie", "delta", "site"}) all.push_back(app(n));
    start(all);
    auto t = service->create_token("admin", auth::Scopes::parse("admin").value());
    ASSERT_TRUE(t.has_value());
    admin = t.value().plaintext;
  }

  http::Response call(const std::string& method, const std::string& target,
                      const std::string& bearer = "", const std::string& body = "",
                      const std::string& if_none_match = "") {
    Headers h;
    if (!if_none_match.empty()) h.emplace_back("If-None-Match", if_none_match);
    return ApiFixture::call(method, target, bearer, body, h);
  }

  std::string admin;
};

json document() {
  auto doc = json::parse(openapi_document(), nullptr, false);
  EXPECT_FALSE(doc.is_discarded()) << "src/api/openapi.json is not JSON";
  return doc;
}

RouteSet table_routes() {
  RouteSet out;
  for (const auto& r : routes()) out.emplace(std::string(r.method), std::string(r.path));
  return out;
}

TEST(OpenApi, IsAnOpenApi3Document) {
  auto doc = document();
  EXPECT_EQ(doc.value("openapi", ""), "3.0.3");
  EXPECT_TRUE(doc["info"].contains("title"));
  EXPECT_TRUE(doc["info"].contains("version"));
  auto schemes = doc["components"]["securitySchemes"];
  EXPECT_EQ(schemes["bearer"]["scheme"], "bearer");
  EXPECT_EQ(schemes["cookie"]["in"], "cookie");
  for (const char* s :
       {"Workspace", "WorkspaceList", "Error", "Job", "Token", "User", "AuditEntry"}) {
    EXPECT_TRUE(doc["components"]["schemas"].contains(s)) << s;
  }
  EXPECT_EQ(doc["components"]["schemas"]["WorkspaceList"]["required"],
            json::array({"workspaces", "next"}));
}

// Every operation says which scope it needs, and every $ref resolves.
TEST(OpenApi, OperationsNameTheirScopeAndRefsResolve) {
  auto doc = document();
  for (const auto& [path, item] : doc["paths"].items()) {
    for (const auto& [method, op] : item.items()) {
      std::string s = op.value("x-scope", "");
      EXPECT_TRUE(s == "none" || s == "any" || s == "read" || s == "deploy" || s == "admin")
          << method << " " << path;
      EXPECT_TRUE(op.contains("responses")) << method << " " << path;
      if (method == "post" && path != std::string(kApi) + "/auth/logout" &&
          !path.ends_with("/start") && !path.ends_with("/stop") && !path.ends_with("/restart") &&
          !path.ends_with("/sync")) {
        EXPECT_TRUE(op.contains("requestBody")) << method << " " << path;
      }
    }
  }
  std::vector<std::string> refs;
  auto walk = [&](const json& j, auto& self) -> void {
    if (j.is_object()) {
      for (const auto& [k, v] : j.items()) {
        if (k == "$ref" && v.is_string()) refs.push_back(v.template get<std::string>());
        self(v, self);
      }
    } else if (j.is_array()) {
      for (const auto& v : j) self(v, self);
    }
  };
  walk(doc, walk);
  EXPECT_FALSE(refs.empty());
  for (const auto& r : refs) {
    ASSERT_TRUE(r.starts_with("#/")) << r;
    EXPECT_TRUE(doc.contains(json::json_pointer(r.substr(1)))) << "dangling $ref " << r;
  }
}

TEST(OpenApi, DocumentsExactlyTheRoutingTable) {
  auto doc = document();
  RouteSet documented;
  for (const auto& [path, item] : doc["paths"].items()) {
    for (const auto& [method, op] : item.items()) {
      std::string m = method;
      std::transform(m.begin(), m.end(), m.begin(), ::toupper);
      documented.emplace(m, path);
    }
  }
  RouteSet table = table_routes();
  for (const auto& r : table)
    EXPECT_TRUE(documented.count(r)) << "undocumented: " << r.first << " " << r.second;
  for (const auto& r : documented)
    EXPECT_TRUE(table.count(r)) << "not served: " << r.first << " " << r.second;
}

// Each documented path parameter is declared, and each declared one is in the path.
TEST(OpenApi, PathParametersMatchTheTemplates) {
  auto doc = document();
  for (const auto& [path, item] : doc["paths"].items()) {
    for (const auto& [method, op] : item.items()) {
      std::set<std::string> declared;
      for (const auto& p : op.value("parameters", json::array())) {
        json param = p;
        if (p.contains("$ref")) {
          param = doc.at(json::json_pointer(p["$ref"].get<std::string>().substr(1)));
        }
        if (param["in"] == "path") declared.insert(param["name"].get<std::string>());
      }
      std::set<std::string> in_path;
      for (std::size_t i = path.find('{'); i != std::string::npos; i = path.find('{', i + 1)) {
        in_path.insert(path.substr(i + 1, path.find('}', i) - i - 1));
      }
      EXPECT_EQ(declared, in_path) << method << " " << path;
    }
  }
}

// The other direction: the handlers behind the table answer every route (not the router's
// 404, not a handler's "no such endpoint", not a 405).
TEST_F(ApiTest, EveryRouteReachesAHandler) {
  for (const auto& r : routes()) {
    std::string path(r.path);
    for (auto [from, to] : {std::pair<std::string, std::string>{"{name}", "site"}, {"{id}", "1"}, {"{path}", "index.html"}, {"{repo}", "site.git"}}) {
      if (auto i = path.find(from); i != std::string::npos) path.replace(i, from.size(), to);
    }
    auto res = call(std::string(r.method), path, admin, "{}");
    std::string what =
        std::string(r.method) + " " + path + " -> " + std::to_string(res.status) + " " + res.body;
    EXPECT_NE(res.status, 405) << what;
    if (res.status == 404 && path.starts_with("/monitor/git/")) {  // text/plain, for git
      EXPECT_EQ(res.body.find("no such route"), std::string::npos) << what;
    } else if (res.status == 404) {
      auto err = json::parse(res.body, nullptr, false);
      ASSERT_FALSE(err.is_discarded()) << what;
      std::string message = err["error"].value("message", "");
      EXPECT_EQ(message.find("no such route"), std::string::npos) << what;
      EXPECT_EQ(message.find("no such endpoint"), std::string::npos) << what;
    }
  }
}

TEST_F(ApiTest, UnknownPathsAndMethodsAreRefusedByTheTable) {
  auto r = call("GET", std::string(kApi) + "/nope");
  EXPECT_EQ(r.status, 404);
  EXPECT_NE(json::parse(r.body)["error"]["message"].get<std::string>().find("no such route"),
            std::string::npos);
  EXPECT_EQ(call("GET", std::string(kApi) + "/workspaces/site/bogus").status, 404);
  EXPECT_EQ(call("GET", std::string(kApi) + "/workspaces/").status, 404);
  r = call("PUT", std::string(kApi) + "/workspaces/site", admin);
  EXPECT_EQ(r.status, 405);
  EXPECT_EQ(header(r, "Allow"), "GET, DELETE");
  r = call("GET", std::string(kApi) + "/workspaces/site/stop", admin);
  EXPECT_EQ(r.status, 405);
  EXPECT_EQ(header(r, "Allow"), "POST");
  EXPECT_EQ(call("HEAD", std::string(kApi) + "/status").status, 200);
}

TEST(RouteMatch, Templates) {
  EXPECT_TRUE(path_matches("/a/{x}/b", "/a/1/b"));
  EXPECT_FALSE(path_matches("/a/{x}/b", "/a//b"));
  EXPECT_FALSE(path_matches("/a/{x}/b", "/a/1/b/"));
  EXPECT_FALSE(path_matches("/a/{x}", "/a/1/b"));
  EXPECT_FALSE(path_matches("/a", "/a/"));
  EXPECT_FALSE(path_matches("/a/b", "/a/c"));
  EXPECT_TRUE(path_matches("/a", "/a"));
  // A last {path} takes the rest of the path, any depth, empty included; nothing less.
  EXPECT_TRUE(path_matches("/a/{x}/f/{path}", "/a/1/f/"));
  EXPECT_TRUE(path_matches("/a/{x}/f/{path}", "/a/1/f/b"));
  EXPECT_TRUE(path_matches("/a/{x}/f/{path}", "/a/1/f/b/c/d.txt"));
  EXPECT_FALSE(path_matches("/a/{x}/f/{path}", "/a/1/f"));
  EXPECT_FALSE(path_matches("/a/{x}/f/{path}", "/a//f/b"));
  EXPECT_FALSE(path_matches("/a/{x}/f/{path}", "/a/1/g/b"));
  EXPECT_FALSE(path_matches("/a/{path}/b", "/a/x/y/b"));  // only a last {path} takes more
  auto m = match_route("POST", "/monitor/api/v1/tokens");
  EXPECT_TRUE(m.path_known && m.allowed);
  EXPECT_EQ(m.allow, "GET, POST");
}

TEST_F(ApiTest, OpenApiIsServed) {
  auto r = call("GET", std::string(kApi) + "/openapi.json");
  ASSERT_EQ(r.status, 200);
  EXPECT_EQ(r.content_type, "application/json");
  EXPECT_EQ(r.body, openapi_document());
  EXPECT_FALSE(header(r, "ETag").empty());
}

// ---- pagination ----

std::vector<std::string> names(const json& page) {
  std::vector<std::string> out;
  for (const auto& w : page["workspaces"]) out.push_back(w["name"]);
  return out;
}

TEST_F(ApiTest, WorkspacesPageByName) {
  std::string list = std::string(kApi) + "/workspaces";
  auto all = json::parse(call("GET", list).body);
  EXPECT_EQ(names(all), (std::vector<std::string>{"alpha", "bravo", "charlie", "delta", "site"}));
  EXPECT_TRUE(all["next"].is_null());

  auto p1 = json::parse(call("GET", list + "?limit=2").body);
  EXPECT_EQ(names(p1), (std::vector<std::string>{"alpha", "bravo"}));
  EXPECT_EQ(p1["next"], "bravo");
  auto p2 = json::parse(call("GET", list + "?limit=2&after=bravo").body);
  EXPECT_EQ(names(p2), (std::vector<std::string>{"charlie", "delta"}));
  EXPECT_EQ(p2["next"], "delta");
  auto p3 = json::parse(call("GET", list + "?limit=2&after=delta").body);
  EXPECT_EQ(names(p3), (std::vector<std::string>{"site"}));
  EXPECT_TRUE(p3["next"].is_null());
  // An exact fit has no next page either, and a cursor that is gone still works.
  EXPECT_TRUE(json::parse(call("GET", list + "?limit=5").body)["next"].is_null());
  EXPECT_EQ(names(json::parse(call("GET", list + "?after=b").body)).front(), "bravo");
  EXPECT_TRUE(names(json::parse(call("GET", list + "?after=zzz").body)).empty());
}

TEST_F(ApiTest, BadLimitsAre400) {
  for (const char* q : {"limit=0", "limit=1001", "limit=x", "limit=-1", "limit=5x"}) {
    auto r = call("GET", std::string(kApi) + "/workspaces?" + q);
    EXPECT_EQ(r.status, 400) << q;
    EXPECT_EQ(json::parse(r.body)["error"]["code"], "invalid_argument") << q;
  }
  EXPECT_EQ(call("GET", std::string(kApi) + "/workspaces?limit=1000").status, 200);
}

// Jobs and audit page with the same {"<items>": [...], "next"} shape.
TEST_F(ApiTest, JobsAndAuditShareTheListShape) {
  auto jobs = json::parse(call("GET", std::string(kApi) + "/jobs?limit=1").body);
  EXPECT_TRUE(jobs["jobs"].is_array());
  EXPECT_TRUE(jobs.contains("next"));
  auto audit = json::parse(call("GET", std::string(kApi) + "/audit?limit=1", admin).body);
  EXPECT_TRUE(audit["entries"].is_array());
  EXPECT_TRUE(audit.contains("next"));
}

// ---- ETag ----

TEST_F(ApiTest, GetsCarryAStrongETagAndAnswer304) {
  std::string path = std::string(kApi) + "/workspaces/site";
  auto r = call("GET", path);
  ASSERT_EQ(r.status, 200);
  std::string etag = header(r, "ETag");
  ASSERT_EQ(etag.size(), 18u) << etag;
  EXPECT_EQ(etag.front(), '"');
  EXPECT_EQ(header(r, "Cache-Control"), "no-cache");
  EXPECT_EQ(std::count_if(r.headers.begin(), r.headers.end(),
                          [](const auto& h) { return h.first == "Cache-Control"; }),
            1);
  EXPECT_EQ(header(call("GET", path), "ETag"), etag) << "the same body has the same ETag";

  auto nm = call("GET", path, "", "", etag);
  EXPECT_EQ(nm.status, 304);
  EXPECT_TRUE(nm.body.empty());
  EXPECT_EQ(header(nm, "ETag"), etag);
  EXPECT_EQ(call("GET", path, "", "", "\"other\", " + etag).status, 304);
  EXPECT_EQ(call("GET", path, "", "", "W/" + etag).status, 304);
  EXPECT_EQ(call("GET", path, "", "", "\"other\"").status, 200);

  // A change in the body changes the ETag.
  auto snap = std::make_shared<Snapshot>(*snaps.load());
  snap->workspaces.back().status = "stopped";  // "site"
  snaps.store(snap);
  auto changed = call("GET", path, "", "", etag);
  EXPECT_EQ(changed.status, 200);
  EXPECT_NE(header(changed, "ETag"), etag);
}

TEST_F(ApiTest, OnlySuccessfulGetsHaveETags) {
  EXPECT_TRUE(header(call("GET", std::string(kApi) + "/workspaces/nope"), "ETag").empty());
  EXPECT_TRUE(header(call("GET", std::string(kApi) + "/tokens"), "ETag").empty());  // 401
  EXPECT_TRUE(header(call("POST", std::string(kApi) + "/auth/logout"), "ETag").empty());
  EXPECT_TRUE(header(call("GET", "/monitor/metrics"), "ETag").empty());  // not JSON
  EXPECT_FALSE(header(call("GET", "/monitor/healthz"), "ETag").empty());
}

TEST_F(ApiTest, PersonalAnswersStayOutOfCaches) {
  // The token list (and sessions, users, the audit log) belong to one caller: no-store, no ETag.
  auto tokens = call("GET", std::string(kApi) + "/tokens", admin);
  EXPECT_EQ(tokens.status, 200);
  EXPECT_TRUE(header(tokens, "ETag").empty());
  EXPECT_EQ(header(tokens, "Cache-Control"), "no-store");
  EXPECT_EQ(header(call("GET", std::string(kApi) + "/workspaces"), "Cache-Control"), "no-cache");
}

}  // namespace
}  // namespace ck
