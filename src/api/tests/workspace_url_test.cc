#include <gtest/gtest.h>

#include "api/api.h"

namespace ck {
namespace {

TEST(WorkspaceUrl, PathRoutingIsRelative) {
  ApiInfo info;
  info.port = 8443;
  info.tls = true;
  EXPECT_EQ(workspace_url("site", info), "/site/");
  EXPECT_EQ(workspace_url("www", info), "/");
}

TEST(WorkspaceUrl, HostRoutingFollowsTheScheme) {
  ApiInfo info;
  info.domain = "example.test";
  info.port = 8080;
  EXPECT_EQ(workspace_url("site", info), "http://site.example.test:8080/");
  info.port = 80;
  EXPECT_EQ(workspace_url("www", info), "http://example.test/");
  info.tls = true;
  EXPECT_EQ(workspace_url("site", info), "https://site.example.test:80/");
  info.port = 443;
  EXPECT_EQ(workspace_url("site", info), "https://site.example.test/");
  EXPECT_EQ(workspace_url("www", info), "https://example.test/");
  info.port = 8443;
  EXPECT_EQ(workspace_url("site", info), "https://site.example.test:8443/");
}

}  // namespace
}  // namespace ck
