#include <gtest/gtest.h>

#include "gateway/pages.h"

namespace ck {
namespace {

TEST(Pages, HomeListsEveryWorkspaceEscaped) {
  Snapshot s;
  s.storage_location = "/srv/ws";
  s.runtime_kind = "process";
  WorkspaceView a;
  a.name = "app";
  a.type = "node";
  a.matched = "package.json";
  a.status = "running";
  a.description = "<b>my</b> app";
  a.icon = "🚀";
  WorkspaceView b;
  b.name = "site";
  b.type = "static";
  b.matched = "index.html";
  b.status = "failed";
  b.error = "workspace.json: parse error at line 2";
  b.icon = "logo.png";
  s.workspaces = {a, b};
  s.invalid = {{"Bad_Name", "invalid workspace name"}};
  auto html = render_home_page(s);
  EXPECT_NE(html.find("href=\"/app/\""), std::string::npos);
  EXPECT_NE(html.find("node — package.json"), std::string::npos);
  EXPECT_NE(html.find("&lt;b&gt;my&lt;/b&gt; app"), std::string::npos);
  EXPECT_EQ(html.find("<b>my</b>"), std::string::npos);
  EXPECT_NE(html.find("src=\"/site/logo.png\""), std::string::npos);
  EXPECT_NE(html.find("parse error at line 2"), std::string::npos);
  EXPECT_NE(html.find("Bad_Name"), std::string::npos);
  EXPECT_NE(html.find("🚀"), std::string::npos);
}

TEST(Pages, HomeLinksFollowTheAddress) {
  Snapshot s;
  WorkspaceView a;
  a.name = "app";
  a.status = "running";
  s.workspaces = {a};
  auto domain = make_public_address("", "127.0.0.1", 8080, "example.test");
  ASSERT_TRUE(domain.has_value());
  auto html = render_home_page(s, domain.value());
  EXPECT_NE(html.find("href=\"http://app.example.test:8080/\""), std::string::npos) << html;
  EXPECT_EQ(html.find("href=\"/app/\""), std::string::npos);
  auto pub = make_public_address("https://ck.example.com", "127.0.0.1", 8080, "");
  ASSERT_TRUE(pub.has_value());
  EXPECT_NE(render_home_page(s, pub.value()).find("href=\"https://ck.example.com/app/\""),
            std::string::npos);
}

TEST(Pages, ErrorPageLinksHome) {
  EXPECT_NE(render_error_page(404, "Not Found", "m", "h").find("<a href=\"/\">All workspaces"),
            std::string::npos);
  EXPECT_NE(render_error_page(404, "Not Found", "m", "h", false, "http://example.test:8080/")
                .find("<a href=\"http://example.test:8080/\">All workspaces"),
            std::string::npos);
}

TEST(Pages, EmptyHomeSaysWhereToAddWorkspaces) {
  Snapshot s;
  s.storage_location = "/srv/ws";
  EXPECT_NE(render_home_page(s).find("/srv/ws"), std::string::npos);
}

TEST(Pages, ErrorPageCarriesMessageAndHint) {
  auto html = render_error_page(502, "Bad Gateway", "app <crashed>", "check its log", true);
  EXPECT_NE(html.find("502 Bad Gateway"), std::string::npos);
  EXPECT_NE(html.find("app &lt;crashed&gt;"), std::string::npos);
  EXPECT_NE(html.find("check its log"), std::string::npos);
  EXPECT_NE(html.find("http-equiv=\"refresh\""), std::string::npos);
}

TEST(Pages, ReloadScriptGoesBeforeTheLastBodyCloseInAnyCase) {
  auto html = inject_reload_script("<html><body><p>x</p></BODY></html>", "blog");
  auto script = html.find("<script data-cloudyknight");
  ASSERT_NE(script, std::string::npos);
  EXPECT_LT(script, html.find("</BODY>"));
  EXPECT_NE(html.find("const n=\"blog\""), std::string::npos);
  EXPECT_NE(html.find("/monitor/ws"), std::string::npos);
  EXPECT_EQ(html.find("<p>x</p>"), std::string("<html><body>").size());
}

TEST(Pages, ReloadScriptIsAppendedWhenThereIsNoBody) {
  auto html = inject_reload_script("<h1>hi</h1>", "a");
  EXPECT_EQ(html.rfind("<h1>hi</h1>", 0), 0u);
  EXPECT_NE(html.find("</script>"), std::string::npos);
  EXPECT_EQ(inject_reload_script("", "a"), reload_script("a"));
}

}  // namespace
}  // namespace ck
