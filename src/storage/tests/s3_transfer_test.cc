// The S3 client's whole-file transfers against a real s3rver (see s3_client_test.cc for how it
// is found): put_file in one PUT or in parts, get_to_file streamed to disk, the multipart steps
// and their failures. s3rver 3.7 has gaps that the tests work around, each noted where it
// matters: no AbortMultipartUpload (405) or ListMultipartUploads (501), and an
// MD5-of-the-whole-object ETag for multipart objects; FaultProxy answers with S3-shaped canned
// responses where S3 behaviour cannot come from s3rver.

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


constexpr std::size_t kMiB = 1 << 20;

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(),
                 [](unsigned char ch) { return static_cast<char>(std::tolower(ch)); });
  return s;
}

std::string random_bytes(std::size_t n, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::string s(n, '\0');
  for (std::size_t i = 0; i < n; i += 8) {
    std::uint64_t v = rng();
    std::memcpy(s.data() + i, &v, std::min<std::size_t>(8, n - i));
  }
  return s;
}

void write_file(const fs::path& p, std::string_view data) {
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out.write(data.data(), static_cast<std::streamsize>(data.size()));
}

std::string read_file(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

/// A scratch directory removed at the end of the test.
struct TempDir : ck::test_util::TempDir {
  TempDir() : ck::test_util::TempDir("s3-files") {}
};

/// The ETag AWS gives a multipart object: MD5 of the parts' raw MD5s, "-" and the part count.
std::string multipart_etag(std::string_view data, std::size_t part_size) {
  std::string md5s;
  std::size_t parts = 0;
  for (std::size_t off = 0; off < data.size(); off += part_size, ++parts) {
    md5s += md5_raw(data.substr(off, part_size));
  }
  return md5_hex(md5s) + "-" + std::to_string(parts);
}

Client::PutFileOptions small_parts() {
  Client::PutFileOptions o;
  o.multipart_threshold = 5 * kMiB;
  o.part_size = 1;  // raised to S3's minimum, 5 MiB
  o.part_concurrency = 3;
  return o;
}

TEST(S3Client, PutFileUploadsLargeFilesInPartsAndGetToFileStreamsThemBack) {
  REQUIRE_S3RVER();
  TempDir dir;
  Client direct(client_options(server().port));
  ASSERT_TRUE(direct.create_bucket("files"));
  const std::string data = random_bytes(50 * kMiB, 1);
  write_file(dir / "big.bin", data);

  FaultProxy proxy(server().port, std::vector<Rule>{});  // records only
  auto etag = Client(client_options(proxy.port())).put_file("files", "big/one.bin", dir / "big.bin");
  ASSERT_TRUE(etag) << etag.error().message;

  // The default 8 MiB parts: six full ones and 2 MiB, each with its own Content-MD5.
  constexpr std::size_t kPart = 8 * kMiB;
  for (std::size_t i = 0; i < 7; ++i) {
    std::string_view part = std::string_view(data).substr(i * kPart, kPart);
    auto reqs = proxy.requests_with(
        {"put /files/big/one.bin?partnumber=" + std::to_string(i + 1) + "&uploadid="});
    ASSERT_EQ(reqs.size(), 1u) << "part " << i + 1;
    EXPECT_NE(reqs[0].find("\r\ncontent-md5: " + lower(base64(md5_raw(part))) + "\r\n"),
              std::string::npos)
        << reqs[0];
    EXPECT_NE(reqs[0].find("\r\ncontent-length: " + std::to_string(part.size()) + "\r\n"),
              std::string::npos)
        << reqs[0];
  }
  EXPECT_TRUE(proxy.requests_with({"partnumber=8&"}).empty());
  EXPECT_EQ(proxy.requests_with({"post /files/big/one.bin?uploads= "}).size(), 1u);
  EXPECT_EQ(proxy.requests_with({"post /files/big/one.bin?uploadid="}).size(), 1u);
  EXPECT_TRUE(proxy.requests_with({"delete "}).empty());

  // AWS and MinIO answer the multipart form "<md5 of part md5s>-7"; s3rver 3 computes the MD5
  // of the whole object instead, so with s3rver only that can be checked.
  const std::string expected_multipart = multipart_etag(data, kPart);
  ASSERT_EQ(expected_multipart.substr(expected_multipart.size() - 2), "-7");
  if (etag.value().find('-') != std::string::npos) {
    EXPECT_EQ(etag.value(), expected_multipart);
  } else {
    EXPECT_EQ(etag.value(), md5_hex(data)) << "neither the multipart ETag " << expected_multipart
                                           << " nor the MD5 of the whole object (s3rver)";
  }

  auto info = direct.get_to_file("files", "big/one.bin", dir / "back.bin");
  ASSERT_TRUE(info) << info.error().message;
  EXPECT_EQ(info.value().key, "big/one.bin");
  EXPECT_EQ(info.value().size, data.size());
  EXPECT_EQ(info.value().etag, etag.value());
  EXPECT_GT(info.value().mtime_ms, 1'600'000'000'000);
  EXPECT_EQ(fs::file_size(dir / "back.bin"), data.size());
  EXPECT_EQ(sha256_hex(read_file(dir / "back.bin")), sha256_hex(data));
  auto head = direct.head_object("files", "big/one.bin");
  ASSERT_TRUE(head && head.value());
  EXPECT_EQ(head.value()->etag, etag.value());

  // Straight to s3rver (the proxy serves one connection at a time): 4 parts really in flight.
  auto again = direct.put_file("files", "big/two.bin", dir / "big.bin");
  ASSERT_TRUE(again) << again.error().message;
  EXPECT_EQ(again.value(), etag.value());
  auto info2 = direct.get_to_file("files", "big/two.bin", dir / "back2.bin");
  ASSERT_TRUE(info2) << info2.error().message;
  EXPECT_EQ(sha256_hex(read_file(dir / "back2.bin")), sha256_hex(data));
}

TEST(S3Client, PutFileBelowTheThresholdIsOnePutAndEmptyFilesWork) {
  REQUIRE_S3RVER();
  TempDir dir;
  Client direct(client_options(server().port));
  ASSERT_TRUE(direct.create_bucket("small"));
  {
    const std::string data = random_bytes(100 * 1024 + 3, 2);
    write_file(dir / "small.bin", data);
    FaultProxy proxy(server().port, std::vector<Rule>{});
    Client::PutFileOptions o;
    o.content_type = "text/plain";
    auto etag = Client(client_options(proxy.port())).put_file("small", "s.bin", dir / "small.bin", o);
    ASSERT_TRUE(etag) << etag.error().message;
    EXPECT_EQ(etag.value(), md5_hex(data));
    auto reqs = proxy.requests();
    ASSERT_EQ(reqs.size(), 1u);
    EXPECT_EQ(reqs[0].rfind("put /small/s.bin http/1.1\r\n", 0), 0u) << reqs[0];
    EXPECT_NE(reqs[0].find("\r\ncontent-type: text/plain\r\n"), std::string::npos) << reqs[0];
    EXPECT_NE(reqs[0].find("\r\ncontent-md5: " + lower(base64(md5_raw(data)))), std::string::npos);
    auto got = direct.get_object("small", "s.bin");
    ASSERT_TRUE(got);
    EXPECT_EQ(got.value(), data);
  }
  {
    // The threshold is inclusive: a file of exactly 5 MiB goes multipart, in one part; one byte
    // less is a plain PUT.
    const std::string data = random_bytes(5 * kMiB, 3);
    write_file(dir / "edge.bin", data);
    write_file(dir / "under.bin", std::string_view(data).substr(1));
    FaultProxy proxy(server().port, std::vector<Rule>{});
    Client c(client_options(proxy.port()));
    auto etag = c.put_file("small", "edge.bin", dir / "edge.bin", small_parts());
    ASSERT_TRUE(etag) << etag.error().message;
    EXPECT_EQ(proxy.requests_with({"put ", "partnumber=1&"}).size(), 1u);
    EXPECT_EQ(proxy.requests_with({"partnumber="}).size(), 1u);
    auto under = c.put_file("small", "under.bin", dir / "under.bin", small_parts());
    ASSERT_TRUE(under) << under.error().message;
    EXPECT_EQ(under.value(), md5_hex(std::string_view(data).substr(1)));
    EXPECT_EQ(proxy.requests_with({"put /small/under.bin http"}).size(), 1u);
    auto info = direct.get_to_file("small", "edge.bin", dir / "edge.back");
    ASSERT_TRUE(info) << info.error().message;
    EXPECT_EQ(read_file(dir / "edge.back"), data);
  }
  {
    write_file(dir / "empty", "");
    auto etag = direct.put_file("small", "empty", dir / "empty");
    ASSERT_TRUE(etag) << etag.error().message;
    EXPECT_EQ(etag.value(), "d41d8cd98f00b204e9800998ecf8427e");
    write_file(dir / "empty.back", "stale contents");
    auto info = direct.get_to_file("small", "empty", dir / "empty.back");
    ASSERT_TRUE(info) << info.error().message;
    EXPECT_EQ(info.value().size, 0u);
    EXPECT_EQ(info.value().etag, "d41d8cd98f00b204e9800998ecf8427e");
    EXPECT_EQ(fs::file_size(dir / "empty.back"), 0u);
  }
}

TEST(S3Client, PutFileRetriesAFailedPartAndADroppedConnection) {
  REQUIRE_S3RVER();
  TempDir dir;
  Client direct(client_options(server().port));
  ASSERT_TRUE(direct.create_bucket("flaky"));
  const std::string data = random_bytes(11 * kMiB, 4);  // parts of 5, 5 and 1 MiB
  write_file(dir / "f.bin", data);
  FaultProxy proxy(server().port, {Rule{{"put ", "partnumber=2&"}, Fault::k500, 1, {}},
                                   Rule{{"put ", "partnumber=1&"}, Fault::kCloseMidBody, 1, {}}});
  auto etag =
      Client(client_options(proxy.port())).put_file("flaky", "f.bin", dir / "f.bin", small_parts());
  ASSERT_TRUE(etag) << etag.error().message;
  EXPECT_EQ(proxy.requests_with({"put ", "partnumber=1&"}).size(), 2u);
  EXPECT_EQ(proxy.requests_with({"put ", "partnumber=2&"}).size(), 2u);
  EXPECT_EQ(proxy.requests_with({"put ", "partnumber=3&"}).size(), 1u);
  EXPECT_TRUE(proxy.requests_with({"partnumber=4&"}).empty());
  EXPECT_TRUE(proxy.requests_with({"delete "}).empty());
  auto info = direct.get_to_file("flaky", "f.bin", dir / "back.bin");
  ASSERT_TRUE(info) << info.error().message;
  EXPECT_EQ(sha256_hex(read_file(dir / "back.bin")), sha256_hex(data));
}

TEST(S3Client, PutFileAbortsTheUploadWhenAPartFailsForGood) {
  REQUIRE_S3RVER();
  TempDir dir;
  Client direct(client_options(server().port));
  ASSERT_TRUE(direct.create_bucket("doomed"));
  const std::string data = random_bytes(11 * kMiB, 5);
  write_file(dir / "d.bin", data);
  FaultProxy proxy(server().port, {Rule{{"put ", "partnumber=3&"}, Fault::k500, -1, {}}});
  auto etag =
      Client(client_options(proxy.port(), 1)).put_file("doomed", "d.bin", dir / "d.bin", small_parts());
  ASSERT_FALSE(etag);
  const std::string& msg = etag.error().message;
  EXPECT_EQ(etag.error().code, Errc::unavailable) << msg;
  EXPECT_NE(msg.find("part 3 of 3"), std::string::npos) << msg;
  EXPECT_NE(msg.find("bytes 10485760-11534335"), std::string::npos) << msg;
  EXPECT_NE(msg.find("InternalError"), std::string::npos) << msg;
  EXPECT_NE(msg.find("abort"), std::string::npos) << msg;
  EXPECT_EQ(proxy.requests_with({"put ", "partnumber=3&"}).size(), 2u);  // 1 retry
  EXPECT_EQ(proxy.requests_with({"delete /doomed/d.bin?uploadid="}).size(), 1u);
  EXPECT_TRUE(proxy.requests_with({"post ", "?uploadid="}).empty()) << "never completed";
  auto head = direct.head_object("doomed", "d.bin");
  ASSERT_TRUE(head) << head.error().message;
  EXPECT_FALSE(head.value().has_value());
}

TEST(S3Client, PutFileFailsWhenTheFileChangesSizeDuringTheUpload) {
  REQUIRE_S3RVER();
  TempDir dir;
  Client direct(client_options(server().port));
  ASSERT_TRUE(direct.create_bucket("growing"));
  write_file(dir / "g.bin", random_bytes(11 * kMiB, 6));
  FaultProxy proxy(server().port, std::vector<Rule>{});
  std::atomic<bool> grown{false};
  const fs::path file = dir / "g.bin";
  proxy.on_request([&](const std::string& head) {
    if (head.find("partnumber=1&") != std::string::npos && !grown.exchange(true)) {
      std::ofstream(file, std::ios::binary | std::ios::app) << 'x';
    }
  });
  auto etag = Client(client_options(proxy.port())).put_file("growing", "g.bin", file, small_parts());
  ASSERT_FALSE(etag);
  EXPECT_EQ(etag.error().code, Errc::io) << etag.error().message;
  EXPECT_NE(etag.error().message.find("changed size"), std::string::npos) << etag.error().message;
  EXPECT_NE(etag.error().message.find("11534336 bytes, then 11534337"), std::string::npos)
      << etag.error().message;
  EXPECT_EQ(proxy.requests_with({"delete /growing/g.bin?uploadid="}).size(), 1u);
  EXPECT_TRUE(proxy.requests_with({"post ", "?uploadid="}).empty());
  auto head = direct.head_object("growing", "g.bin");
  ASSERT_TRUE(head);
  EXPECT_FALSE(head.value().has_value());
}

TEST(S3Client, PutFileRejectsMissingFilesDirectoriesAndEmptyKeys) {
  TempDir dir;
  Client c(client_options(free_port(), 0));  // nothing listens: no request may be needed
  auto missing = c.put_file("b", "k", dir / "nope");
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code, Errc::not_found) << missing.error().message;
  EXPECT_NE(missing.error().message.find("nope"), std::string::npos);
  auto directory = c.put_file("b", "k", dir.path);
  ASSERT_FALSE(directory);
  EXPECT_EQ(directory.error().code, Errc::invalid_argument) << directory.error().message;
  write_file(dir / "f", "x");
  auto no_key = c.put_file("b", "", dir / "f");
  ASSERT_FALSE(no_key);
  EXPECT_EQ(no_key.error().code, Errc::invalid_argument);
}

TEST(S3Client, CompleteMultipartUploadTreatsA200ErrorAsAFailure) {
  REQUIRE_S3RVER();
  Client direct(client_options(server().port));
  ASSERT_TRUE(direct.create_bucket("complete"));
  const std::string p1 = random_bytes(5 * kMiB, 7), p2 = random_bytes(1000, 8);
  const std::string error_200 =
      "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>%s</Code><Message>injected after "
      "200</Message><RequestId>1</RequestId></Error>";
  auto with_code = [&](const std::string& code) {
    std::string body = error_200;
    body.replace(body.find("%s"), 2, code);
    return http_response(200, "OK", body);
  };
  {
    // InternalError and SlowDown in a 200 are retried like a 5xx.
    FaultProxy proxy(server().port,
                     {Rule{{"post ", "?uploadid="}, Fault::kCanned, 1, with_code("InternalError")},
                      Rule{{"post ", "?uploadid="}, Fault::kCanned, 1, with_code("SlowDown")}});
    Client c(client_options(proxy.port()));
    auto id = c.create_multipart_upload("complete", "ok.bin", "application/octet-stream");
    ASSERT_TRUE(id) << id.error().message;
    EXPECT_FALSE(id.value().empty());
    auto e1 = c.upload_part("complete", "ok.bin", id.value(), 1, p1);
    auto e2 = c.upload_part("complete", "ok.bin", id.value(), 2, p2);
    ASSERT_TRUE(e1 && e2);
    EXPECT_EQ(e1.value(), md5_hex(p1));
    EXPECT_EQ(e2.value(), md5_hex(p2));
    auto etag =
        c.complete_multipart_upload("complete", "ok.bin", id.value(), {e1.value(), e2.value()});
    ASSERT_TRUE(etag) << etag.error().message;
    EXPECT_EQ(proxy.requests_with({"post /complete/ok.bin?uploadid="}).size(), 3u);
    auto got = direct.get_object("complete", "ok.bin");
    ASSERT_TRUE(got);
    EXPECT_TRUE(got.value() == p1 + p2);
  }
  {
    // Any other code is a failure at once.
    FaultProxy proxy(server().port,
                     {Rule{{"post ", "?uploadid="}, Fault::kCanned, -1, with_code("InvalidPart")}});
    Client c(client_options(proxy.port()));
    auto id = c.create_multipart_upload("complete", "bad.bin");
    ASSERT_TRUE(id);
    auto e1 = c.upload_part("complete", "bad.bin", id.value(), 1, p2);
    ASSERT_TRUE(e1);
    auto etag = c.complete_multipart_upload("complete", "bad.bin", id.value(), {e1.value()});
    ASSERT_FALSE(etag);
    EXPECT_EQ(etag.error().code, Errc::invalid_argument) << etag.error().message;
    EXPECT_NE(etag.error().message.find("HTTP 200 InvalidPart"), std::string::npos)
        << etag.error().message;
    EXPECT_EQ(proxy.requests_with({"post ", "?uploadid="}).size(), 1u);
    (void)c.abort_multipart_upload("complete", "bad.bin", id.value());  // best effort
  }
}

TEST(S3Client, AbortMultipartUploadDropsTheUpload) {
  REQUIRE_S3RVER();
  Client c(client_options(server().port));
  ASSERT_TRUE(c.create_bucket("abort"));
  auto id = c.create_multipart_upload("abort", "a.bin");
  ASSERT_TRUE(id) << id.error().message;
  ASSERT_TRUE(c.upload_part("abort", "a.bin", id.value(), 1, "part one"));
  auto aborted = c.abort_multipart_upload("abort", "a.bin", id.value());
  if (aborted) {
    // S3 and MinIO: the upload and its parts are gone, so another part is refused.
    auto again = c.upload_part("abort", "a.bin", id.value(), 2, "part two");
    ASSERT_FALSE(again);
    EXPECT_EQ(again.error().code, Errc::not_found) << again.error().message;
    EXPECT_NE(again.error().message.find("NoSuchUpload"), std::string::npos);
  } else {
    // s3rver 3 does not implement AbortMultipartUpload (nor checks upload ids on UploadPart).
    EXPECT_NE(aborted.error().message.find("MethodNotAllowed"), std::string::npos)
        << aborted.error().message;
  }
  auto head = c.head_object("abort", "a.bin");
  ASSERT_TRUE(head);
  EXPECT_FALSE(head.value().has_value());
  auto bad = c.upload_part("abort", "a.bin", id.value(), 0, "x");
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().code, Errc::invalid_argument);
}

TEST(S3Client, ListMultipartUploadsPaginatesByMarkers) {
  REQUIRE_S3RVER();
  Client direct(client_options(server().port));
  ASSERT_TRUE(direct.create_bucket("uploads"));
  {
    // s3rver 3 answers 501 NotImplemented, which is not retried.
    FaultProxy proxy(server().port, std::vector<Rule>{});
    auto listed = Client(client_options(proxy.port())).list_multipart_uploads("uploads", "");
    if (!listed) {
      EXPECT_EQ(listed.error().code, Errc::invalid_argument) << listed.error().message;
      EXPECT_NE(listed.error().message.find("NotImplemented"), std::string::npos)
          << listed.error().message;
      EXPECT_EQ(proxy.requests().size(), 1u);
    }
  }
  const std::string head =
      "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<ListMultipartUploadsResult "
      "xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><Bucket>uploads</Bucket>";
  auto upload = [](const std::string& key, const std::string& id) {
    return "<Upload><Key>" + key + "</Key><UploadId>" + id +
           "</UploadId><Initiator><ID>i</ID><DisplayName>d</DisplayName></Initiator><Owner><ID>"
           "o</ID></Owner><StorageClass>STANDARD</StorageClass><Initiated>2026-01-01T00:00:00."
           "000Z</Initiated></Upload>";
  };
  const std::string page1 =
      head +
      "<KeyMarker></KeyMarker><UploadIdMarker></UploadIdMarker><NextKeyMarker>b/k2</"
      "NextKeyMarker><NextUploadIdMarker>id-2</NextUploadIdMarker><Prefix>b/</Prefix><MaxUploads>"
      "2</MaxUploads><IsTruncated>true</IsTruncated>" +
      upload("b/k1 &amp; more", "id-1") + upload("b/k2", "id-2") + "</ListMultipartUploadsResult>";
  const std::string page2 = head +
                            "<KeyMarker>b/k2</KeyMarker><UploadIdMarker>id-2</UploadIdMarker>"
                            "<Prefix>b/</Prefix><MaxUploads>2</MaxUploads><IsTruncated>false</"
                            "IsTruncated>" +
                            upload("b/k2", "id-3") + "</ListMultipartUploadsResult>";
  FaultProxy proxy(server().port,
                   {Rule{{"key-marker=b%2fk2"}, Fault::kCanned, 1, http_response(200, "OK", page2)},
                    Rule{{"uploads="}, Fault::kCanned, 1, http_response(200, "OK", page1)}});
  auto listed = Client(client_options(proxy.port())).list_multipart_uploads("uploads", "b/");
  ASSERT_TRUE(listed) << listed.error().message;
  ASSERT_EQ(listed.value().size(), 3u);
  EXPECT_EQ(listed.value()[0].key, "b/k1 & more");
  EXPECT_EQ(listed.value()[0].upload_id, "id-1");
  EXPECT_EQ(listed.value()[1].key, "b/k2");
  EXPECT_EQ(listed.value()[2].upload_id, "id-3");
  auto reqs = proxy.requests();
  ASSERT_EQ(reqs.size(), 2u);
  EXPECT_EQ(reqs[0].rfind("get /uploads?prefix=b%2f&uploads= http", 0), 0u) << reqs[0];
  EXPECT_EQ(reqs[1].rfind("get /uploads?key-marker=b%2fk2&prefix=b%2f&upload-id-marker=id-2&"
                          "uploads= http",
                          0),
            0u)
      << reqs[1];
}

TEST(S3Client, GetToFileOfAMissingKeyLeavesTheFileEmpty) {
  REQUIRE_S3RVER();
  TempDir dir;
  Client c(client_options(server().port));
  ASSERT_TRUE(c.create_bucket("gets"));
  write_file(dir / "out", "old contents");
  auto info = c.get_to_file("gets", "no/such key", dir / "out");
  ASSERT_FALSE(info);
  EXPECT_EQ(info.error().code, Errc::not_found) << info.error().message;
  EXPECT_NE(info.error().message.find("NoSuchKey"), std::string::npos) << info.error().message;
  ASSERT_TRUE(fs::exists(dir / "out"));
  EXPECT_EQ(fs::file_size(dir / "out"), 0u);
  auto nb = c.get_to_file("absent-bucket", "k", dir / "out2");
  ASSERT_FALSE(nb);
  EXPECT_EQ(nb.error().code, Errc::not_found);
  EXPECT_EQ(fs::file_size(dir / "out2"), 0u);
  auto no_dir = c.get_to_file("gets", "k", dir / "missing-dir" / "f");
  ASSERT_FALSE(no_dir);
  EXPECT_EQ(no_dir.error().code, Errc::io) << no_dir.error().message;
}

TEST(S3Client, GetToFileRestartsARetriedDownloadFromByteZero) {
  REQUIRE_S3RVER();
  TempDir dir;
  Client direct(client_options(server().port));
  ASSERT_TRUE(direct.create_bucket("restart"));
  const std::string data = random_bytes(3 * kMiB + 17, 9);
  ASSERT_TRUE(direct.put_object("restart", "cut.bin", data));
  {
    // The first answer stops after 200 KiB, the second is a 500; the third is whole.
    FaultProxy proxy(server().port, {Rule{{"get /restart/cut.bin "}, Fault::kCutResponse, 1, {}},
                                     Rule{{"get /restart/cut.bin "}, Fault::k500, 1, {}}});
    auto info = Client(client_options(proxy.port())).get_to_file("restart", "cut.bin", dir / "cut");
    ASSERT_TRUE(info) << info.error().message;
    EXPECT_EQ(proxy.requests().size(), 3u);
    EXPECT_EQ(info.value().size, data.size());
    EXPECT_EQ(info.value().etag, md5_hex(data));
    EXPECT_EQ(fs::file_size(dir / "cut"), data.size());
    EXPECT_TRUE(read_file(dir / "cut") == data);
  }
  {
    // Every answer is cut short: the call fails and leaves no partial object behind.
    FaultProxy proxy(server().port, {Rule{{"get "}, Fault::kCutResponse, -1, {}}});
    auto info = Client(client_options(proxy.port(), 1)).get_to_file("restart", "cut.bin", dir / "cut");
    ASSERT_FALSE(info);
    EXPECT_EQ(info.error().code, Errc::unavailable) << info.error().message;
    EXPECT_EQ(proxy.requests().size(), 2u);
    EXPECT_EQ(fs::file_size(dir / "cut"), 0u);
  }
  {
    // A local write error is not the network's: no retry, Errc::io. The file size limit makes
    // the write fail with EFBIG after 1 MiB (SIGXFSZ ignored meanwhile).
    FaultProxy proxy(server().port, std::vector<Rule>{});
    rlimit old{};
    ASSERT_EQ(::getrlimit(RLIMIT_FSIZE, &old), 0);
    rlimit small = old;
    small.rlim_cur = kMiB;
    auto* old_handler = ::signal(SIGXFSZ, SIG_IGN);
    ASSERT_EQ(::setrlimit(RLIMIT_FSIZE, &small), 0);
    auto info = Client(client_options(proxy.port())).get_to_file("restart", "cut.bin", dir / "limited");
    ::setrlimit(RLIMIT_FSIZE, &old);
    ::signal(SIGXFSZ, old_handler);
    ASSERT_FALSE(info);
    EXPECT_EQ(info.error().code, Errc::io) << info.error().message;
    EXPECT_NE(info.error().message.find("File too large"), std::string::npos)
        << info.error().message;
    EXPECT_EQ(proxy.requests().size(), 1u);
    EXPECT_EQ(fs::file_size(dir / "limited"), 0u);
  }
  {
    // Only a regular file can be truncated for a retry.
    auto info = direct.get_to_file("restart", "cut.bin", "/dev/null");
    ASSERT_FALSE(info);
    EXPECT_EQ(info.error().code, Errc::invalid_argument) << info.error().message;
  }
}

}  // namespace
}  // namespace ck::s3
