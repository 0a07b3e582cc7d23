// The API's credential helpers (cookies, bearer tokens, log tails) and the auth rules of the
// secured endpoints, over an in-memory state.db (tokens only: no argon2 work).

#include "api/auth_http.h"

#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "api/api.h"
#include "auth/auth.h"
#include "api/tests/api_fixture.h"
#include "core/testing/temp_dir.h"

namespace ck {
namespace {

using json = nlohmann::json;
using Lines = std::vector<std::string>;

TEST(CookieValue, FindsTheNamedCookie) {
  EXPECT_EQ(cookie_value("ck_session=abc", "ck_session"), "abc");
  EXPECT_EQ(cookie_value("a=1; ck_session=abc; b=2", "ck_session"), "abc");
  EXPECT_EQ(cookie_value("a=1;ck_session=\"abc\"", "ck_session"), "abc");
  EXPECT_EQ(cookie_value("ck_session=first; ck_session=second", "ck_session"), "first");
  EXPECT_EQ(cookie_value("ck_session=", "ck_session"), "");
}

TEST(CookieValue, MissingOrSimilarNamesAreNotIt) {
  EXPECT_FALSE(cookie_value("", "ck_session"));
  EXPECT_FALSE(cookie_value("x_ck_session=1; ck_sessionx=2", "ck_session"));
  EXPECT_FALSE(cookie_value("CK_SESSION=1", "ck_session"));
  EXPECT_FALSE(cookie_value("ck_session; other=1", "ck_session"));
  EXPECT_FALSE(cookie_value(";;;", "ck_session"));
}

TEST(BearerToken, ParsesTheScheme) {
  EXPECT_EQ(bearer_token("Bearer ck_abc"), "ck_abc");
  EXPECT_EQ(bearer_token("bearer   ck_abc  "), "ck_abc");
  EXPECT_EQ(bearer_token("BEARER ck_abc"), "ck_abc");
  EXPECT_FALSE(bearer_token("Basic dXNlcjpwYXNz"));
  EXPECT_FALSE(bearer_token("Bearer"));
  EXPECT_FALSE(bearer_token("Bearer "));
  EXPECT_FALSE(bearer_token("Bearerck_abc"));
  EXPECT_FALSE(bearer_token("Bearer a b"));
  EXPECT_FALSE(bearer_token(""));
}

TEST(LastLines, TakesTheEnd) {
  EXPECT_EQ(last_lines("a\nb\nc\n", 2), (Lines{"b", "c"}));
  EXPECT_EQ(last_lines("a\nb\nc", 5), (Lines{"a", "b", "c"}));
  EXPECT_EQ(last_lines("a\r\nb\r\n", 5), (Lines{"a", "b"}));
  EXPECT_EQ(last_lines("a\n\nb\n", 2), (Lines{"", "b"}));
  EXPECT_EQ(last_lines("\nb", 5), (Lines{"", "b"}));
  EXPECT_EQ(last_lines("", 5), Lines{});
  EXPECT_EQ(last_lines("\n", 5), Lines{});
  EXPECT_EQ(last_lines("a\nb", 0), Lines{});
}

TEST(TailLines, ReadsTheEndOfAFileAndDropsACutLine) {
  test_util::TempDir dir("tail");
  auto file = dir / "app.log";
  {
    std::ofstream out(file);
    for (int i = 0; i < 1000; ++i) out << "line " << i << "\n";
  }
  EXPECT_EQ(tail_lines(file, 2, 1 << 20), (Lines{"line 998", "line 999"}));
  auto few = tail_lines(file, 1000, 30);  // 30 bytes: "...\nline 997\nline 998\nline 999\n"
  ASSERT_FALSE(few.empty());
  EXPECT_EQ(few.back(), "line 999");
  for (const auto& l : few) EXPECT_EQ(l.rfind("line 9", 0), 0u) << l;
  EXPECT_EQ(tail_lines(dir / "missing.log", 10, 100), Lines{});
}

TEST(ParseTail, RangeAndDefault) {
  EXPECT_EQ(parse_tail("", 200, 5000).value(), 200);
  EXPECT_EQ(parse_tail("1", 200, 5000).value(), 1);
  EXPECT_EQ(parse_tail("5000", 200, 5000).value(), 5000);
  for (const char* bad : {"0", "5001", "-1", "abc", "10x", " 5"}) {
    EXPECT_TRUE(parse_tail(bad, 200, 5000).has_error()) << bad;
  }
}

// ---- the rules, through ControlApi::handle ----

class SecuredApiTest : public test_util::ApiFixture {
 protected:
  void SetUp() override {
    ApiServices services;
    services.act = [this](const std::string& name, WorkspaceAction a) {
      acted.emplace_back(name, a);
    };
    start({app("site")}, services);
  }

  std::string token(auth::Scopes scopes) {
    auto t = service->create_token("t", scopes);
    EXPECT_TRUE(t.has_value());
    return t.value().plaintext;
  }

  std::vector<std::pair<std::string, WorkspaceAction>> acted;
};

TEST_F(SecuredApiTest, MutationsNeedCredentials) {
  auto r = call("POST", "/monitor/api/v1/workspaces/site/stop");
  EXPECT_EQ(r.status, 401);
  EXPECT_EQ(header(r, "WWW-Authenticate"), "Bearer");
  EXPECT_EQ(json::parse(r.body)["error"]["code"], "unauthenticated");
  EXPECT_EQ(call("POST", "/monitor/api/v1/workspaces/site/stop", "ck_wrong").status, 401);
  EXPECT_TRUE(acted.empty());
  // Reads stay open, except the auth endpoints.
  EXPECT_EQ(call("GET", "/monitor/api/v1/workspaces/site").status, 200);
  EXPECT_EQ(call("GET", "/monitor/api/v1/tokens").status, 401);
  EXPECT_EQ(call("GET", "/monitor/api/v1/audit").status, 401);
}

TEST_F(SecuredApiTest, ScopesDecide) {
  auto reader = token({auth::Scope::read});
  auto deployer = token({auth::Scope::deploy});
  auto r = call("POST", "/monitor/api/v1/workspaces/site/stop", reader);
  EXPECT_EQ(r.status, 403);
  EXPECT_EQ(json::parse(r.body)["error"]["code"], "forbidden");
  EXPECT_EQ(call("GET", "/monitor/api/v1/tokens", deployer).status, 403);
  r = call("POST", "/monitor/api/v1/workspaces/site/restart", deployer);
  EXPECT_EQ(r.status, 202);
  EXPECT_EQ(json::parse(r.body)["workspace"]["name"], "site");
  ASSERT_EQ(acted.size(), 1u);
  EXPECT_EQ(acted[0].second, WorkspaceAction::restart);
  EXPECT_EQ(call("POST", "/monitor/api/v1/workspaces/nope/start", deployer).status, 404);
  EXPECT_EQ(call("POST", "/monitor/api/v1/workspaces/Bad_Name/start", deployer).status, 400);
  EXPECT_EQ(call("GET", "/monitor/api/v1/workspaces/site/stop", deployer).status, 405);
  auto log = service->audit_log(10);
  ASSERT_TRUE(log.has_value());
  ASSERT_EQ(log.value().size(), 1u);
  EXPECT_EQ(log.value()[0].action, "workspace.restart");
  EXPECT_EQ(log.value()[0].target, "site");
  EXPECT_EQ(log.value()[0].ip, "127.0.0.1");
}

TEST_F(SecuredApiTest, AdminManagesTokens) {
  auto admin = token({auth::Scope::admin});
  EXPECT_EQ(call("POST", "/monitor/api/v1/tokens", admin, "{nope").status, 400);
  EXPECT_EQ(
      call("POST", "/monitor/api/v1/tokens", admin, R"({"name":"x","scopes":["root"]})").status,
      400);
  auto r = call("POST", "/monitor/api/v1/tokens", admin,
                R"({"name":"ci","scopes":["deploy"],"ttl":"30d"})");
  ASSERT_EQ(r.status, 201) << r.body;
  auto created = json::parse(r.body);
  EXPECT_EQ(created["scopes"], json::array({"read", "deploy"}));
  auto secret = created["token"].get<std::string>();
  auto list = call("GET", "/monitor/api/v1/tokens", admin);
  EXPECT_EQ(list.body.find(secret), std::string::npos);
  EXPECT_EQ(json::parse(call("GET", "/monitor/api/v1/auth/me", secret).body)["token"]["name"],
            "ci");
  EXPECT_EQ(
      call("DELETE", "/monitor/api/v1/tokens/" + created["id"].get<std::string>(), admin).status,
      204);
  EXPECT_EQ(call("GET", "/monitor/api/v1/auth/me", secret).status, 401);
  EXPECT_EQ(call("DELETE", "/monitor/api/v1/tokens/tok_nope", admin).status, 404);
}

}  // namespace
}  // namespace ck
