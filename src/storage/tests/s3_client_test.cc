// The S3 client's requests, retries, errors and answers (whole files: s3_transfer_test.cc),
// against a real s3rver (npm s3rver@3) on 127.0.0.1, started once per binary.
// s3rver is found through CK_S3RVER (the path of its bin, set by scripts/test.sh) or the cache
// that scripts/s3rver.sh installs into; without it every test is skipped with the reason.
// Where S3 behaviour cannot come from s3rver (delimited listings that are never truncated, a
// 200 with an error), FaultProxy answers with S3-shaped canned responses.

#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>

#include "core/testing/temp_dir.h"
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "storage/s3/answers.h"
#include "storage/s3/client.h"
#include "storage/s3/transport.h"
#include "storage/tests/fault_proxy.h"
#include "storage/tests/s3rver_fixture.h"

extern char** environ;

namespace ck::s3 {
namespace {

namespace fs = std::filesystem;
using s3test::connect_to;
using s3test::free_port;
using s3test::server;
using s3test::client_options;
using s3test::Fault;
using s3test::FaultProxy;
using s3test::http_response;
using s3test::md5_hex;
using s3test::Rule;
using s3test::write_all;


std::string binary_body(std::size_t n, unsigned seed) {
  std::string s;
  s.reserve(n);
  for (std::size_t i = 0; i < n; ++i) {
    s += static_cast<char>((i * 31 + seed) & 0xFF);
  }
  return s;
}

TEST(S3Client, RangedGet) {
  REQUIRE_S3RVER();
  Client c(client_options(server().port));
  ASSERT_TRUE(c.create_bucket("ranged"));
  std::string body = binary_body(100000, 7);
  ASSERT_TRUE(c.put_object("ranged", "obj", body));
  auto mid = c.get_object_range("ranged", "obj", 1234, 5678);
  ASSERT_TRUE(mid) << mid.error().message;
  EXPECT_EQ(mid.value(), body.substr(1234, 5678));
  auto tail = c.get_object_range("ranged", "obj", body.size() - 10, 10);
  ASSERT_TRUE(tail) << tail.error().message;
  EXPECT_EQ(tail.value(), body.substr(body.size() - 10));
  EXPECT_EQ(c.get_object_range("ranged", "obj", 5, 0).value(), "");
  // Past the end: an error, never fewer bytes passed off as the range.
  EXPECT_FALSE(c.get_object_range("ranged", "obj", body.size() - 10, 20));
  EXPECT_FALSE(c.get_object_range("ranged", "obj", body.size() + 10, 20));
  // A server that ignores Range (FaultProxy answers the whole object with 200): sliced.
  std::string whole = "0123456789abcdef";
  FaultProxy proxy(server().port, {Rule{{"range:"}, Fault::kCanned, -1,
                                        "HTTP/1.1 200 OK\r\nContent-Length: 16\r\n"
                                        "Connection: close\r\n\r\n" + whole}});
  Client via(client_options(proxy.port()));
  auto sliced = via.get_object_range("ranged", "obj", 3, 4);
  ASSERT_TRUE(sliced) << sliced.error().message;
  EXPECT_EQ(sliced.value(), "3456");
}

TEST(S3Client, RoundTripOfAwkwardKeysAndBodies) {
  REQUIRE_S3RVER();
  Client c(client_options(server().port));
  ASSERT_TRUE(c.create_bucket("roundtrip")) << c.create_bucket("roundtrip").error().message;
  const std::vector<std::string> keys = {
      "plain.txt",
      "with space/and  two spaces.bin",
      "unicode/h\xC3\xA9llo w\xC3\xB6rld \xE2\x98\x83 \xE6\x97\xA5\xE6\x9C\xAC.txt",
      "chars/+ & = ( ) ! * '.dat",
      "deep/ly/nested/sl/ash/es/file",
      "tilde~and,comma;semi@at$dollar",
      "empty",
  };
  for (std::size_t i = 0; i < keys.size(); ++i) {
    const std::string& key = keys[i];
    std::string body = key == "empty" ? std::string() : binary_body(1000 + i * 777, unsigned(i));
    auto etag = c.put_object("roundtrip", key, body, key == "plain.txt" ? "text/plain" : "");
    ASSERT_TRUE(etag) << key << ": " << etag.error().message;
    EXPECT_EQ(etag.value(), md5_hex(body)) << key;
    auto got = c.get_object("roundtrip", key);
    ASSERT_TRUE(got) << key << ": " << got.error().message;
    EXPECT_EQ(got.value(), body) << key;
    auto head = c.head_object("roundtrip", key);
    ASSERT_TRUE(head) << key << ": " << head.error().message;
    ASSERT_TRUE(head.value().has_value()) << key;
    EXPECT_EQ(head.value()->size, body.size()) << key;
    EXPECT_EQ(head.value()->etag, md5_hex(body)) << key;
    EXPECT_GT(head.value()->mtime_ms, 1'600'000'000'000) << key;
  }
  auto listed = c.list_objects("roundtrip", "");
  ASSERT_TRUE(listed) << listed.error().message;
  std::vector<std::string> names;
  for (const auto& o : listed.value()) {
    names.push_back(o.key);
    EXPECT_EQ(o.etag.size(), 32u) << o.key;
    EXPECT_GT(o.mtime_ms, 1'600'000'000'000) << o.key;
  }
  std::vector<std::string> expected = keys;
  std::sort(expected.begin(), expected.end());
  std::sort(names.begin(), names.end());
  EXPECT_EQ(names, expected);

  for (const auto& key : keys) {
    ASSERT_TRUE(c.delete_object("roundtrip", key)) << key;
    auto head = c.head_object("roundtrip", key);
    ASSERT_TRUE(head);
    EXPECT_FALSE(head.value().has_value()) << key;
  }
}

TEST(S3Client, ListPaginatesAndDeleteObjectsBatches) {
  REQUIRE_S3RVER();
  Client c(client_options(server().port));
  ASSERT_TRUE(c.create_bucket("many"));
  constexpr int kCount = 2500;
  std::vector<std::string> keys;
  for (int i = 0; i < kCount; ++i) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "k/%05d", i);
    keys.emplace_back(buf);
  }
  std::atomic<int> next{0};
  std::atomic<int> failures{0};
  std::vector<std::thread> workers;
  for (int t = 0; t < 8; ++t) {
    workers.emplace_back([&] {
      for (int i = next++; i < kCount; i = next++) {
        if (!c.put_object("many", keys[i], keys[i])) {
          ++failures;
        }
      }
    });
  }
  for (auto& w : workers) {
    w.join();
  }
  ASSERT_EQ(failures.load(), 0);
  for (const char* k : {"other/a", "other/b", "other/c"}) {
    ASSERT_TRUE(c.put_object("many", k, "x"));
  }

  auto all = c.list_objects("many", "k/");
  ASSERT_TRUE(all) << all.error().message;
  ASSERT_EQ(all.value().size(), static_cast<std::size_t>(kCount));
  std::vector<std::string> names;
  for (const auto& o : all.value()) {
    names.push_back(o.key);
    EXPECT_EQ(o.size, o.key.size());
  }
  std::sort(names.begin(), names.end());
  EXPECT_EQ(names, keys);
  {
    // Through a recording proxy: s3rver pages at 1000 keys, so 2,500 keys take three pages.
    FaultProxy proxy(server().port, 0, false);
    auto paged = Client(client_options(proxy.port())).list_objects("many", "k/");
    ASSERT_TRUE(paged) << paged.error().message;
    EXPECT_EQ(paged.value().size(), static_cast<std::size_t>(kCount));
    auto reqs = proxy.requests();
    ASSERT_EQ(reqs.size(), 3u);
    EXPECT_EQ(reqs[0].find("continuation-token"), std::string::npos);
    EXPECT_NE(reqs[1].find("continuation-token="), std::string::npos) << reqs[1];
    EXPECT_NE(reqs[2].find("continuation-token="), std::string::npos) << reqs[2];
  }
  auto other = c.list_objects("many", "other/");
  ASSERT_TRUE(other);
  EXPECT_EQ(other.value().size(), 3u);
  auto everything = c.list_objects("many", "");
  ASSERT_TRUE(everything);
  EXPECT_EQ(everything.value().size(), static_cast<std::size_t>(kCount + 3));

  auto deleted = c.delete_objects("many", keys);
  ASSERT_TRUE(deleted) << deleted.error().message;
  auto left = c.list_objects("many", "");
  ASSERT_TRUE(left);
  ASSERT_EQ(left.value().size(), 3u);
  EXPECT_EQ(left.value()[0].key.substr(0, 6), "other/");
  EXPECT_TRUE(c.delete_objects("many", {}));
}

TEST(S3Client, MissingKeysAndBucketsAreNotFound) {
  REQUIRE_S3RVER();
  Client c(client_options(server().port));
  ASSERT_TRUE(c.create_bucket("present"));
  auto head = c.head_object("present", "no/such key");
  ASSERT_TRUE(head) << head.error().message;
  EXPECT_FALSE(head.value().has_value());

  auto got = c.get_object("present", "no/such key");
  ASSERT_FALSE(got);
  EXPECT_EQ(got.error().code, Errc::not_found);
  EXPECT_NE(got.error().message.find("NoSuchKey"), std::string::npos) << got.error().message;
  EXPECT_NE(got.error().message.find("no/such key"), std::string::npos) << got.error().message;
  EXPECT_NE(got.error().message.find("404"), std::string::npos) << got.error().message;

  auto nb = c.get_object("absent-bucket", "k");
  ASSERT_FALSE(nb);
  EXPECT_EQ(nb.error().code, Errc::not_found);
  EXPECT_NE(nb.error().message.find("absent-bucket"), std::string::npos) << nb.error().message;
  EXPECT_NE(nb.error().message.find("NoSuchBucket"), std::string::npos) << nb.error().message;
  EXPECT_NE(nb.error().message.find("create the bucket"), std::string::npos) << nb.error().message;

  auto list = c.list_objects("absent-bucket", "");
  ASSERT_FALSE(list);
  EXPECT_EQ(list.error().code, Errc::not_found);
  EXPECT_NE(list.error().message.find("absent-bucket"), std::string::npos);
}

TEST(S3Client, RetriesServerErrorsAndDroppedConnections) {
  REQUIRE_S3RVER();
  ASSERT_TRUE(Client(client_options(server().port)).create_bucket("retry"));
  Client direct(client_options(server().port));
  const std::string body = binary_body(5000, 7);
  for (bool close_mode : {false, true}) {
    FaultProxy proxy(server().port, 2, close_mode);
    Client c(client_options(proxy.port(), 4));
    std::string key = close_mode ? "after/closes" : "after/500s";
    auto etag = c.put_object("retry", key, body);
    ASSERT_TRUE(etag) << etag.error().message;
    EXPECT_EQ(etag.value(), md5_hex(body));
    auto got = direct.get_object("retry", key);
    ASSERT_TRUE(got) << got.error().message;
    EXPECT_EQ(got.value(), body);
    auto reqs = proxy.requests();
    ASSERT_EQ(reqs.size(), 3u);
    for (const auto& r : reqs) {
      EXPECT_NE(r.find("\r\nauthorization: aws4-hmac-sha256 credential=s3rver/"), std::string::npos)
          << r;
      EXPECT_NE(r.find("\r\nx-amz-content-sha256: " + sha256_hex(body)), std::string::npos) << r;
      EXPECT_NE(r.find("\r\ncontent-md5: "), std::string::npos) << r;
    }
  }
  for (bool close_mode : {false, true}) {
    FaultProxy proxy(server().port, 1, close_mode);
    Client c(client_options(proxy.port(), 0));
    auto etag = c.put_object("retry", "never", body);
    ASSERT_FALSE(etag);
    EXPECT_EQ(etag.error().code, Errc::unavailable) << etag.error().message;
    EXPECT_EQ(proxy.requests().size(), 1u);
  }
}

TEST(S3Client, TimeoutsAndUnreachableEndpoints) {
  // A socket that listens but never answers: the request times out.
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
  ::listen(fd, 4);
  socklen_t len = sizeof a;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  ClientOptions o = client_options(ntohs(a.sin_port), 0);
  o.timeout = std::chrono::milliseconds(300);
  auto got = Client(o).get_object("b", "k");
  ::close(fd);
  ASSERT_FALSE(got);
  EXPECT_EQ(got.error().code, Errc::timeout) << got.error().message;

  // Nothing listens: connection refused, retried, then unavailable.
  auto refused = Client(client_options(free_port(), 1)).get_object("b", "k");
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().code, Errc::unavailable) << refused.error().message;
  EXPECT_NE(refused.error().message.find("2 attempts"), std::string::npos)
      << refused.error().message;

  ClientOptions bad;
  bad.endpoint = "127.0.0.1:1";
  auto invalid = Client(bad).get_object("b", "k");
  ASSERT_FALSE(invalid);
  EXPECT_EQ(invalid.error().code, Errc::invalid_argument);
}


TEST(S3Client, AnObjectThatReadsLikeSlowDownIsNotRetried) {
  REQUIRE_S3RVER();
  Client direct(client_options(server().port));
  ASSERT_TRUE(direct.create_bucket("slowdown"));
  const std::string body = "<Error><Code>SlowDown</Code><Message>just data</Message></Error>";
  ASSERT_TRUE(direct.put_object("slowdown", "looks-like-an-error.xml", body));
  FaultProxy proxy(server().port, std::vector<Rule>{});
  auto got = Client(client_options(proxy.port())).get_object("slowdown", "looks-like-an-error.xml");
  ASSERT_TRUE(got) << got.error().message;
  EXPECT_EQ(got.value(), body);
  EXPECT_EQ(proxy.requests().size(), 1u);
}

TEST(S3Client, ListCommonPrefixesReturnsEveryFolder) {
  REQUIRE_S3RVER();
  Client c(client_options(server().port));
  ASSERT_TRUE(c.create_bucket("folders"));
  constexpr int kFolders = 1100;
  std::vector<std::string> expected;
  for (int i = 0; i < kFolders; ++i) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "p/w%04d/", i);
    expected.emplace_back(buf);
  }
  std::atomic<int> next{0};
  std::atomic<int> failures{0};
  std::vector<std::thread> workers;
  for (int t = 0; t < 16; ++t) {
    workers.emplace_back([&] {
      for (int i = next++; i < kFolders; i = next++) {
        if (!c.put_object("folders", expected[static_cast<std::size_t>(i)] + "f", "x")) {
          ++failures;
        }
      }
    });
  }
  for (auto& w : workers) {
    w.join();
  }
  ASSERT_EQ(failures.load(), 0);
  // Not "q/w/f" alone: s3rver 3 skips folders two levels below the listed prefix, so it would
  // miss "q/" (S3 would not).
  for (const char* k : {"p/w0000/g", "p/w0001/deeper/h", "p/direct.txt", "q/f", "q/w/f"}) {
    ASSERT_TRUE(c.put_object("folders", k, "y"));
  }
  auto listed = c.list_common_prefixes("folders", "p/");
  ASSERT_TRUE(listed) << listed.error().message;
  std::vector<std::string> got = listed.value();
  std::sort(got.begin(), got.end());
  EXPECT_EQ(got, expected);
  auto top = c.list_common_prefixes("folders", "");
  ASSERT_TRUE(top) << top.error().message;
  EXPECT_EQ(top.value(), (std::vector<std::string>{"p/", "q/"}));
  auto none = c.list_common_prefixes("folders", "p/w0002/");
  ASSERT_TRUE(none);
  EXPECT_TRUE(none.value().empty());
  auto missing = c.list_common_prefixes("absent-bucket", "");
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code, Errc::not_found);
}

TEST(S3Client, ListCommonPrefixesFollowsContinuationTokens) {
  REQUIRE_S3RVER();
  // s3rver never truncates a delimited listing (its max-keys counts keys, not prefixes), so the
  // pages come from the proxy, shaped like S3's.
  const std::string head =
      "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<ListBucketResult "
      "xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><Name>b</Name><Prefix>a/</Prefix>"
      "<Delimiter>/</Delimiter><MaxKeys>3</MaxKeys>";
  const std::string page1 =
      head +
      "<KeyCount>3</KeyCount><IsTruncated>true</IsTruncated><NextContinuationToken>tok+2/=</"
      "NextContinuationToken><Contents><Key>a/file</Key><Size>1</Size></Contents>"
      "<CommonPrefixes><Prefix>a/x/</Prefix></CommonPrefixes><CommonPrefixes><Prefix>a/y &amp; "
      "z/</Prefix></CommonPrefixes></ListBucketResult>";
  const std::string page2 = head +
                            "<KeyCount>1</KeyCount><IsTruncated>false</IsTruncated>"
                            "<CommonPrefixes><Prefix>a/z/</Prefix></CommonPrefixes>"
                            "</ListBucketResult>";
  {
    FaultProxy proxy(server().port,
                     {Rule{{"continuation-token=tok%2b2%2f%3d"},
                           Fault::kCanned,
                           1,
                           http_response(200, "OK", page2)},
                      Rule{{"list-type=2"}, Fault::kCanned, 1, http_response(200, "OK", page1)}});
    auto listed = Client(client_options(proxy.port())).list_common_prefixes("b", "a/");
    ASSERT_TRUE(listed) << listed.error().message;
    EXPECT_EQ(listed.value(), (std::vector<std::string>{"a/x/", "a/y & z/", "a/z/"}));
    auto reqs = proxy.requests();
    ASSERT_EQ(reqs.size(), 2u);
    EXPECT_EQ(reqs[0].rfind("get /b?delimiter=%2f&list-type=2&prefix=a%2f http", 0), 0u) << reqs[0];
  }
  {
    // A failed second page fails the whole call (never a partial list).
    FaultProxy proxy(server().port,
                     {Rule{{"continuation-token="}, Fault::k500, -1, {}},
                      Rule{{"list-type=2"}, Fault::kCanned, 1, http_response(200, "OK", page1)}});
    auto listed = Client(client_options(proxy.port(), 1)).list_common_prefixes("b", "a/");
    ASSERT_FALSE(listed);
    EXPECT_EQ(listed.error().code, Errc::unavailable) << listed.error().message;
    EXPECT_NE(listed.error().message.find("listing page 2"), std::string::npos)
        << listed.error().message;
  }
}

TEST(S3Client, AnAnswerLargerThanAnyListingIsRefusedNotHeld) {
  REQUIRE_S3RVER();
  // A listing page past kMaxAnswer (an endpoint that is broken or hostile): one request, a
  // clear error, nothing kept. An object asked for by name has no such cap.
  Client direct(client_options(server().port));
  ASSERT_TRUE(direct.create_bucket("huge"));
  std::string page = "<ListBucketResult><IsTruncated>false</IsTruncated>";
  while (page.size() <= kMaxAnswer) page += "<Contents><Key>" + std::string(1000, 'k') + "</Key></Contents>";
  page += "</ListBucketResult>";
  const std::string object(kMaxAnswer + 4096, 'o');
  ASSERT_TRUE(direct.put_object("huge", "big", object));
  FaultProxy proxy(server().port,
                   {Rule{{"list-type=2"}, Fault::kCanned, -1, http_response(200, "OK", page)}});
  Client client(client_options(proxy.port()));
  auto listed = client.list_objects("huge", "");
  ASSERT_FALSE(listed);
  EXPECT_EQ(listed.error().code, Errc::unavailable);
  EXPECT_NE(listed.error().message.find("larger than 32 MiB"), std::string::npos)
      << listed.error().message;
  EXPECT_NE(listed.error().message.find("is the endpoint S3?"), std::string::npos);
  EXPECT_EQ(proxy.requests().size(), 1u) << "a refused answer is not asked for again";
  auto got = client.get_object("huge", "big");
  ASSERT_TRUE(got) << got.error().message;
  EXPECT_EQ(got.value().size(), object.size());
}

TEST(S3Xml, ReadsListingAndUploadPages) {
  ListPage page = read_list_page(
      "<ListBucketResult><Prefix>a/</Prefix><IsTruncated>true</IsTruncated>"
      "<NextContinuationToken>t&amp;1</NextContinuationToken><Contents><Key>a/x &amp; y</Key>"
      "<LastModified>2026-11-25T22:38:09.120Z</LastModified><ETag>&quot;abc&quot;</ETag>"
      "<Size>5</Size></Contents><Contents><Key>a/z</Key><LastModified>99999-1-1T0:0:0Z"
      "</LastModified></Contents><CommonPrefixes><Prefix>a/p/</Prefix></CommonPrefixes>"
      "</ListBucketResult>");
  ASSERT_EQ(page.objects.size(), 2u);
  EXPECT_EQ(page.objects[0].key, "a/x & y");
  EXPECT_EQ(page.objects[0].etag, "abc");
  EXPECT_EQ(page.objects[0].size, 5u);
  EXPECT_EQ(page.objects[0].mtime_ms, 1795646289120);
  EXPECT_EQ(page.objects[1].mtime_ms, 0) << "a five-digit year is not a date S3 writes";
  EXPECT_EQ(page.prefixes, std::vector<std::string>{"a/p/"}) << "the top-level <Prefix> is not a folder";
  EXPECT_TRUE(page.truncated);
  EXPECT_EQ(page.next_token, "t&1");
  UploadsPage up = read_uploads_page(
      "<ListMultipartUploadsResult><IsTruncated>false</IsTruncated><Upload><Key>k</Key>"
      "<UploadId>u</UploadId></Upload></ListMultipartUploadsResult>");
  ASSERT_EQ(up.uploads.size(), 1u);
  EXPECT_EQ(up.uploads[0].key, "k");
  EXPECT_EQ(up.uploads[0].upload_id, "u");
  EXPECT_FALSE(up.truncated);
}

TEST(S3Xml, DecodesEntities) {
  EXPECT_EQ(xml::decode_entities("a&amp;b&lt;c&gt;d&quot;e&apos;f"), "a&b<c>d\"e'f");
  EXPECT_EQ(xml::decode_entities("&#65;&#x42;&#xe9;&#x2603;"), "AB\xC3\xA9\xE2\x98\x83");
  EXPECT_EQ(xml::decode_entities("&bogus; & &#xZZ;"), "&bogus; & &#xZZ;");
  EXPECT_EQ(xml::escape("<a&'\">"), "&lt;a&amp;&apos;&quot;&gt;");
}

}  // namespace
}  // namespace ck::s3
