#include <gtest/gtest.h>

#include "api/api.h"
#include "core/public_url.h"

namespace ck {
namespace {

ApiInfo info_for(std::string_view domain, std::uint16_t port, bool tls) {
  ApiInfo info;
  info.port = port;
  info.address = make_public_address("", "127.0.0.1", port, domain, tls).value();
  return info;
}

TEST(WorkspaceUrl, PathRoutingIsRelative) {
  auto info = info_for("", 8443, true);
  EXPECT_EQ(workspace_url("site", info), "/site/");
  EXPECT_EQ(workspace_url("www", info), "/");
}

TEST(WorkspaceUrl, HostRoutingFollowsTheScheme) {
  EXPECT_EQ(workspace_url("site", info_for("example.test", 8080, false)),
            "http://site.example.test:8080/");
  EXPECT_EQ(workspace_url("www", info_for("example.test", 80, false)), "http://example.test/");
  EXPECT_EQ(workspace_url("site", info_for("example.test", 80, true)),
            "https://site.example.test:80/");
  EXPECT_EQ(workspace_url("site", info_for("example.test", 443, true)),
            "https://site.example.test/");
  EXPECT_EQ(workspace_url("www", info_for("example.test", 443, true)), "https://example.test/");
  EXPECT_EQ(workspace_url("site", info_for("example.test", 8443, true)),
            "https://site.example.test:8443/");
}

TEST(WorkspaceUrl, PublicUrlKeepsItsSchemeUnderTls) {
  ApiInfo info;
  info.address = make_public_address("http://ck.example.com", "127.0.0.1", 8443, "", true).value();
  EXPECT_EQ(workspace_url("site", info), "http://ck.example.com/site/");
}

}  // namespace
}  // namespace ck
