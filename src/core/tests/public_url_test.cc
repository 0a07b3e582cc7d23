#include "core/public_url.h"

#include <gtest/gtest.h>

namespace ck {
namespace {

PublicAddress address(std::string_view url, std::string_view host, std::uint16_t port,
                      std::string_view domain = "") {
  auto a = make_public_address(url, host, port, domain);
  EXPECT_TRUE(a.has_value()) << url;
  return a.has_value() ? a.value() : PublicAddress{};
}

TEST(PublicUrl, DefaultsToTheListenAddress) {
  auto a = address("", "127.0.0.1", 8080);
  EXPECT_FALSE(a.configured);
  EXPECT_EQ(workspace_url("app", a), "http://127.0.0.1:8080/app/");
  EXPECT_EQ(workspace_url("www", a), "http://127.0.0.1:8080/");
  EXPECT_EQ(home_url(a), "http://127.0.0.1:8080/");
  // Relative links when nothing says where the gateway is reached.
  EXPECT_EQ(workspace_link("app", a), "/app/");
  EXPECT_EQ(home_link(a), "/");
  EXPECT_EQ(workspace_url("app", address("", "0.0.0.0", 80)), "http://127.0.0.1/app/");
  EXPECT_EQ(workspace_url("app", address("", "::", 9000)), "http://127.0.0.1:9000/app/");
  EXPECT_EQ(workspace_url("app", address("", "::1", 9000)), "http://[::1]:9000/app/");
}

TEST(PublicUrl, PublicUrlWins) {
  auto a = address("https://CK.example.com/", "0.0.0.0", 8080);
  EXPECT_TRUE(a.configured);
  EXPECT_EQ(workspace_url("app", a), "https://ck.example.com/app/");
  EXPECT_EQ(workspace_link("app", a), "https://ck.example.com/app/");
  EXPECT_EQ(workspace_url("www", a), "https://ck.example.com/");
  EXPECT_EQ(workspace_url("app", address("http://10.0.0.5:8080/ck//", "", 1)),
            "http://10.0.0.5:8080/ck/app/");
  EXPECT_EQ(workspace_url("app", address("https://h.test:443", "", 1)), "https://h.test/app/");
  EXPECT_EQ(workspace_url("app", address("http://[::1]:81", "", 1)), "http://[::1]:81/app/");
}

TEST(PublicUrl, DomainGivesEachWorkspaceItsHost) {
  auto a = address("", "0.0.0.0", 8080, "example.test");
  EXPECT_TRUE(a.configured);
  EXPECT_EQ(workspace_url("app", a), "http://app.example.test:8080/");
  EXPECT_EQ(workspace_url("www", a), "http://example.test:8080/");
  EXPECT_EQ(home_url(a), "http://example.test:8080/");
  EXPECT_EQ(workspace_url("app", address("", "0.0.0.0", 80, "example.test")),
            "http://app.example.test/");
  // The public URL's scheme and port serve the host URLs too.
  EXPECT_EQ(workspace_url("app", address("https://ck.example.test", "", 8080, "example.test")),
            "https://app.example.test/");
}

TEST(PublicUrl, BasePath) {
  EXPECT_EQ(workspace_base_path("app"), "/app/");
  EXPECT_EQ(workspace_base_path("www"), "/");
}

TEST(PublicUrl, MalformedUrlsAreRefused) {
  for (std::string_view bad :
       {"ck.example.com", "ftp://x", "http://", "http://:80", "http://h:0", "http://h:99999",
        "http://h:8x", "http://h/?q", "http://u@h", "http://h h", "http://h#f"}) {
    auto a = make_public_address(bad, "", 0, "");
    ASSERT_TRUE(a.has_error()) << bad;
    EXPECT_NE(a.error().message.find("public URL"), std::string::npos);
  }
}

}  // namespace
}  // namespace ck
