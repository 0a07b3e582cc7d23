#include "cli/api_client.h"

#include <gtest/gtest.h>

namespace ck::cli {
namespace {

TEST(ApiClient, DescribesTheServersErrorInOneLine) {
  ApiResponse r{404, R"({"error":{"code":"not_found","message":"no workspace named 'x'"}})", {}};
  EXPECT_EQ(describe_failure(r), "no workspace named 'x' (not_found, HTTP 404)");
  ApiResponse html{502, "<html>\n<body>Bad gateway</body>\n</html>", {}};
  EXPECT_EQ(describe_failure(html), "<html> <body>Bad gateway</body> </html> (HTTP 502)");
  ApiResponse empty{500, "", {}};
  EXPECT_EQ(describe_failure(empty), "the server answered without an error message (HTTP 500)");
}

TEST(ApiClient, ExitCodes) {
  EXPECT_EQ(exit_code_for(404), 3);
  EXPECT_EQ(exit_code_for(401), 4);
  EXPECT_EQ(exit_code_for(403), 4);
  EXPECT_EQ(exit_code_for(409), 1);
  EXPECT_EQ(exit_code_for(500), 1);
}

TEST(ApiClient, HeadersAreCaseInsensitive) {
  ApiResponse r;
  r.headers = {{"set-cookie", "ck_session=abc; Path=/"}};
  EXPECT_EQ(r.header("Set-Cookie"), "ck_session=abc; Path=/");
  EXPECT_EQ(r.header("X-None"), "");
}

TEST(ApiClient, UrlEncode) {
  EXPECT_EQ(url_encode("a b/c?d"), "a%20b%2Fc%3Fd");
  EXPECT_EQ(url_encode("web-1_x.y~"), "web-1_x.y~");
}

}  // namespace
}  // namespace ck::cli
