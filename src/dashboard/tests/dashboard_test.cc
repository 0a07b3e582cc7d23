#include "dashboard/dashboard.h"

#include <gtest/gtest.h>

#include <string>

namespace ck::dashboard {
namespace {

http::Request get(std::string path, std::string query = "") {
  http::Request r;
  r.method = "GET";
  r.path = std::move(path);
  r.query = std::move(query);
  r.target = r.query.empty() ? r.path : r.path + "?" + r.query;
  return r;
}

std::string header(const http::Response& r, std::string_view name) {
  for (const auto& [k, v] : r.headers) {
    if (k == name) return v;
  }
  return "";
}

TEST(Dashboard, EmbedsEveryFileWithATypeAndAnETag) {
  for (const char* name : {"index.html", "app.js", "style.css"}) {
    const Asset* a = find(name);
    ASSERT_NE(a, nullptr) << name;
    EXPECT_GT(a->size, 0u) << name;
    EXPECT_EQ(a->etag.front(), '"');
    EXPECT_EQ(a->etag.back(), '"');
    EXPECT_EQ(a->data[a->size], 0) << "the arrays end with a NUL past the content";
  }
  EXPECT_EQ(find("app.js")->content_type, "text/javascript; charset=utf-8");
  EXPECT_EQ(find("style.css")->content_type, "text/css; charset=utf-8");
  EXPECT_EQ(find("nope.js"), nullptr);
}

TEST(Dashboard, ServesTheIndexWithPolicyHeaders) {
  auto r = serve(get("/monitor/"));
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->content_type, "text/html; charset=utf-8");
  EXPECT_NE(r->body.find("<!doctype html>"), std::string::npos);
  EXPECT_EQ(header(*r, "Cache-Control"), "no-cache");
  EXPECT_EQ(header(*r, "ETag"), find("index.html")->etag);
  auto csp = header(*r, "Content-Security-Policy");
  EXPECT_NE(csp.find("default-src 'self'"), std::string::npos);
  EXPECT_NE(csp.find("script-src 'self'"), std::string::npos);
  EXPECT_EQ(csp.find("unsafe"), std::string::npos);
}

TEST(Dashboard, ServesAssetsAndAnswers304ToAMatchingETag) {
  auto r = serve(get("/monitor/assets/app.js"));
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->body, find("app.js")->bytes());
  auto req = get("/monitor/assets/app.js");
  req.headers.emplace_back("If-None-Match", "\"other\", W/" + std::string(find("app.js")->etag));
  auto cached = serve(req);
  ASSERT_TRUE(cached);
  EXPECT_EQ(cached->status, 304);
  EXPECT_TRUE(cached->body.empty());
  req.headers.back().second = "\"stale\"";
  EXPECT_EQ(serve(req)->status, 200);
}

TEST(Dashboard, LeavesTheApiAloneAndRejectsWhatItDoesNotServe) {
  EXPECT_FALSE(serve(get("/monitor/api/v1/workspaces")));
  EXPECT_FALSE(serve(get("/monitor/ws")));
  EXPECT_FALSE(serve(get("/monitor/metrics")));
  EXPECT_EQ(serve(get("/monitor/assets/missing.js"))->status, 404);
  EXPECT_EQ(serve(get("/monitor/assets/../dashboard.cc"))->status, 404);
  EXPECT_EQ(serve(get("/monitor/assets/"))->status, 404);
  auto redirect = serve(get("/monitor", "x=1"));
  EXPECT_EQ(redirect->status, 301);
  EXPECT_EQ(header(*redirect, "Location"), "/monitor/?x=1");
  auto post = get("/monitor/");
  post.method = "POST";
  EXPECT_EQ(serve(post)->status, 405);
}

}  // namespace
}  // namespace ck::dashboard
