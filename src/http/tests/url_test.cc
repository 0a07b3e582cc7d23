#include <cstdlib>
#include <gtest/gtest.h>

#include "http/url.h"

namespace ck::http {
namespace {

TEST(Url, PercentDecode) {
  EXPECT_EQ(percent_decode("a%20b").value(), "a b");
  EXPECT_EQ(percent_decode("%2e%2E").value(), "..");
  EXPECT_EQ(percent_decode("a+b").value(), "a+b");
  EXPECT_EQ(percent_decode("%00").value(), std::string(1, '\0'));
  EXPECT_FALSE(percent_decode("%zz").has_value());
  EXPECT_FALSE(percent_decode("%4").has_value());
  EXPECT_FALSE(percent_decode("abc%").has_value());
}

TEST(Url, SplitAndQuery) {
  auto [p, q] = split_target("/a/b?x=1&y=two%20words");
  EXPECT_EQ(p, "/a/b");
  EXPECT_EQ(q, "x=1&y=two%20words");
  EXPECT_EQ(query_param(q, "y").value(), "two words");
  EXPECT_FALSE(query_param(q, "z").has_value());
}

TEST(Url, HtmlEscape) { EXPECT_EQ(html_escape("<a href=\"x\">&'"), "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"); }

TEST(Url, HttpDatesRoundTrip) {
  EXPECT_EQ(http_date(784111777), "Sun, 06 Nov 1994 08:49:37 GMT");
  EXPECT_EQ(parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT").value(), 784111777);
  EXPECT_FALSE(parse_http_date("yesterday").has_value());
}

TEST(Url, DateNowIsAnHttpDate) {
  const std::string& now = http_date_now();
  auto parsed = parse_http_date(now);
  ASSERT_TRUE(parsed.has_value()) << now;
  EXPECT_LE(std::abs(*parsed - std::time(nullptr)), 2);
}

TEST(Url, HeaderTokens) {
  EXPECT_TRUE(header_has_token("keep-alive, Upgrade", "upgrade"));
  EXPECT_FALSE(header_has_token("keep-alive", "upgrade"));
  EXPECT_TRUE(iequals("Content-Type", "content-type"));
}

TEST(Url, WithoutCookieDropsOnlyThatName) {
  EXPECT_EQ(without_cookie("a=1; ck_session=xyz; b=2", "ck_session"), "a=1; b=2");
  EXPECT_EQ(without_cookie("ck_session=xyz", "ck_session"), "");
  EXPECT_EQ(without_cookie("ck_session=1;ck_session=2;x=ck_session", "ck_session"), "x=ck_session");
  EXPECT_EQ(without_cookie("ck_sessionx=1; a=b=c", "ck_session"), "ck_sessionx=1; a=b=c");
  EXPECT_EQ(without_cookie(" ; a=1 ;; ", "ck_session"), "a=1");
  EXPECT_EQ(without_cookie("", "ck_session"), "");
}

TEST(Url, SetsCookieSeesTheNameABrowserWouldStore) {
  EXPECT_TRUE(sets_cookie("ck_session=evil; Path=/", "ck_session"));
  EXPECT_TRUE(sets_cookie("  ck_session = evil ; Path=/", "ck_session"));
  EXPECT_TRUE(sets_cookie("CK_Session=evil", "ck_session"));
  EXPECT_TRUE(sets_cookie("=ck_session=evil; Path=/", "ck_session"));
  EXPECT_TRUE(sets_cookie("ck_session; Path=/", "ck_session"));
  EXPECT_TRUE(sets_cookie("__Host-ck_session=x; Secure", "__Host-ck_session"));
  EXPECT_FALSE(sets_cookie("__Host-ck_session=x; Secure", "ck_session"));
  EXPECT_FALSE(sets_cookie("ck_session_pref=1", "ck_session"));
  EXPECT_FALSE(sets_cookie("app=ck_session", "ck_session"));
  EXPECT_FALSE(sets_cookie("app=1; Path=/ck_session", "ck_session"));
  EXPECT_FALSE(sets_cookie("", "ck_session"));
}

}  // namespace
}  // namespace ck::http
