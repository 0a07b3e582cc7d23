// POST /monitor/api/v1/storage/events: MinIO bucket notifications parsed and handed to the
// daemon's hook (which pokes the S3 mirror).

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "api/api.h"

namespace ck {
namespace {

using json = nlohmann::json;

constexpr const char* kPath = "/monitor/api/v1/storage/events";

// What MinIO's webhook target sends for one PUT (trimmed to the fields that matter plus a few).
constexpr const char* kMinioPut = R"({
  "EventName": "s3:ObjectCreated:Put",
  "Key": "bkt/ws/site/index.html",
  "Records": [{
    "eventVersion": "2.0", "eventSource": "minio:s3", "eventName": "s3:ObjectCreated:Put",
    "s3": {"s3SchemaVersion": "1.0", "configurationId": "Config",
           "bucket": {"name": "bkt", "arn": "arn:aws:s3:::bkt"},
           "object": {"key": "ws%2Fsite%2Fhello+world%2B1.html", "size": 12,
                      "eTag": "d41d8cd98f00b204e9800998ecf8427e"}}
  }]
})";

http::Request post(std::string body, std::string method = "POST") {
  http::Request r;
  r.method = std::move(method);
  r.target = kPath;
  r.path = kPath;
  r.body = std::move(body);
  return r;
}

TEST(BucketNotification, ParsesMinioRecordsAndDecodesKeys) {
  auto n = parse_bucket_notification(kMinioPut);
  ASSERT_TRUE(n.has_value()) << n.error().message;
  EXPECT_EQ(n.value().events, 1u);
  EXPECT_EQ(n.value().keys, (std::vector<std::string>{"bkt/ws/site/hello world+1.html"}));
}

TEST(BucketNotification, TestEventsAndTheShortForm) {
  for (const char* body : {"", " \n\t", "{}", R"({"Records": null})", R"({"Records": []})"}) {
    auto n = parse_bucket_notification(body);
    ASSERT_TRUE(n.has_value()) << body;
    EXPECT_EQ(n.value().events, 0u) << body;
  }
  auto n =
      parse_bucket_notification(R"({"EventName": "s3:ObjectRemoved:Delete", "Key": "bkt/ws/a"})");
  ASSERT_TRUE(n.has_value());
  EXPECT_EQ(n.value().events, 1u);
  EXPECT_EQ(n.value().keys, (std::vector<std::string>{"bkt/ws/a"}));
}

TEST(BucketNotification, RecordsWithoutKeysStillCount) {
  auto n = parse_bucket_notification(
      R"({"Records": [{}, 5, {"s3": {}}, {"s3": {"object": {"key": 7}}}]})");
  ASSERT_TRUE(n.has_value());
  EXPECT_EQ(n.value().events, 4u);
  EXPECT_TRUE(n.value().keys.empty());
}

TEST(BucketNotification, MalformedBodiesAreInvalidArgument) {
  for (const char* body :
       {"{", "[1]", "\"x\"", "42", R"({"Records": 5})", R"({"Records": {}})", "\xff"}) {
    auto n = parse_bucket_notification(body);
    ASSERT_TRUE(n.has_error()) << body;
    EXPECT_EQ(n.error().code, Errc::invalid_argument);
  }
}

TEST(StorageEventsRoute, CallsTheHookAndAnswers202) {
  SnapshotHolder snaps;
  std::vector<std::vector<std::string>> calls;
  ControlApi api(snaps, ApiInfo{}, nullptr,
                 [&](const std::vector<std::string>& keys) { calls.push_back(keys); });
  auto r = api.handle(post(kMinioPut));
  EXPECT_EQ(r.status, 202) << r.body;
  EXPECT_EQ(json::parse(r.body), json({{"accepted", 1}}));
  ASSERT_EQ(calls.size(), 1u);
  EXPECT_EQ(calls[0].size(), 1u);

  r = api.handle(post(""));  // MinIO's test event when the target is configured
  EXPECT_EQ(r.status, 202);
  EXPECT_EQ(json::parse(r.body), json({{"accepted", 0}}));
  EXPECT_EQ(calls.size(), 2u) << "a test event lists too";
}

TEST(StorageEventsRoute, ErrorsAreJson) {
  SnapshotHolder snaps;
  int calls = 0;
  ControlApi api(snaps, ApiInfo{}, nullptr, [&](const std::vector<std::string>&) { ++calls; });
  auto r = api.handle(post("{not json"));
  EXPECT_EQ(r.status, 400);
  auto body = json::parse(r.body);
  EXPECT_EQ(body["error"]["code"], "invalid_argument");
  EXPECT_FALSE(body["error"]["message"].get<std::string>().empty());

  r = api.handle(post(std::string(kMaxNotificationBody + 1, ' ')));
  EXPECT_EQ(r.status, 413);
  EXPECT_TRUE(json::parse(r.body).contains("error"));

  r = api.handle(post("", "GET"));
  EXPECT_EQ(r.status, 405);
  EXPECT_EQ(calls, 0);
}

TEST(StorageEventsRoute, DirStorageAnswers409) {
  SnapshotHolder snaps;
  ControlApi api(snaps, ApiInfo{});
  auto r = api.handle(post(kMinioPut));
  EXPECT_EQ(r.status, 409);
  EXPECT_NE(json::parse(r.body)["error"]["message"].get<std::string>().find("S3 storage"),
            std::string::npos);
}

}  // namespace
}  // namespace ck
