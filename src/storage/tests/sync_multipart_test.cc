// Multipart hygiene (issue 19, part 2): a push aborts the unfinished multipart uploads an earlier
// run left (recorded in its index) and those initiated over an hour ago, never a young one that
// another client may be sending. s3rver 3 has neither ListMultipartUploads (501) nor
// AbortMultipartUpload (405), so FaultProxy answers those two S3-shaped where S3 behaviour is
// needed, and the rest goes to the real s3rver.
#include <gtest/gtest.h>

#include <ctime>
#include <fstream>
#include <nlohmann/json.hpp>

#include "core/testing/temp_dir.h"
#include "core/units.h"
#include "storage/s3/client.h"
#include "storage/sync.h"
#include "storage/tests/fault_proxy.h"
#include "storage/tests/s3rver_fixture.h"

namespace ck::sync {
namespace {

namespace fs = std::filesystem;
using s3test::Fault;
using s3test::FaultProxy;
using s3test::http_response;
using s3test::Rule;
using s3test::server;
using test_util::TempDir;

std::string upload_xml(const std::string& key, const std::string& id, std::time_t initiated) {
  return "<Upload><Key>" + key + "</Key><UploadId>" + id + "</UploadId><Initiated>" + format_utc(initiated) +
         "</Initiated></Upload>";
}

std::string listing(const std::string& bucket, const std::string& uploads) {
  return "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<ListMultipartUploadsResult "
         "xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><Bucket>" +
         bucket + "</Bucket><IsTruncated>false</IsTruncated>" + uploads + "</ListMultipartUploadsResult>";
}

nlohmann::json read_json(const fs::path& p) {
  std::ifstream in(p);
  return nlohmann::json::parse(in, nullptr, false);
}

// The index a push killed in the middle of a multipart upload leaves: the upload's id.
void write_index(const fs::path& p, const std::string& key, const std::string& id) {
  nlohmann::json doc = {{"version", 1}, {"files", nlohmann::json::object()}, {"uploads", {{id, {key, 1}}}}};
  std::ofstream(p) << doc.dump();
}

struct Folder {
  TempDir tmp{"sync-mpu"};
  fs::path dir = tmp / "src";
  fs::path index = tmp / "index.json";
  Folder() {
    fs::create_directories(dir);
    std::ofstream(dir / "index.html") << "<h1>hi</h1>\n";
  }
};

TEST(SyncMultipart, PushAbortsRecordedAndOldUploadsButNotYoungForeignOnes) {
  REQUIRE_S3RVER();
  s3::Client direct(s3test::client_options(server().port));
  ASSERT_TRUE(direct.create_bucket("mpu-a"));
  Folder f;
  write_index(f.index, "ws/app/big.bin", "id-ours");
  const std::time_t now = std::time(nullptr);
  std::string uploads = upload_xml("ws/app/big.bin", "id-ours", now - 60) +
                        upload_xml("ws/app/old.bin", "id-old", now - 2 * 3600) +
                        upload_xml("ws/app/young.bin", "id-young", now - 60);
  FaultProxy proxy(server().port,
                   {Rule{{"get /mpu-a?", "uploads="}, Fault::kCanned, -1, http_response(200, "OK", listing("mpu-a", uploads))},
                    Rule{{"delete /mpu-a/", "uploadid="}, Fault::kCanned, -1, http_response(204, "No Content", "")}});
  s3::Client client(s3test::client_options(proxy.port()));
  Options opts;
  opts.index = f.index;
  auto r = push(Location{&client, "mpu-a", "ws/app/"}, f.dir, opts);
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r.value().aborted_uploads, 2u);
  EXPECT_EQ(proxy.requests_with({"delete /mpu-a/ws/app/big.bin?uploadid=id-ours"}).size(), 1u);
  EXPECT_EQ(proxy.requests_with({"delete /mpu-a/ws/app/old.bin?uploadid=id-old"}).size(), 1u);
  EXPECT_TRUE(proxy.requests_with({"uploadid=id-young"}).empty()) << "a young upload of another client was aborted";
  auto doc = read_json(f.index);
  ASSERT_TRUE(doc.is_object());
  EXPECT_TRUE(doc["uploads"].empty()) << doc.dump();
  EXPECT_TRUE(doc["files"].contains("index.html"));

  // On demand (`ws gc`), --all takes the young one too; a dry run only says so.
  auto planned = abort_stale_uploads(Location{&client, "mpu-a", "ws/app/"}, "", std::chrono::hours(1), true, true);
  ASSERT_TRUE(planned) << planned.error().message;
  EXPECT_EQ(planned.value().aborted.size(), 3u);
  EXPECT_TRUE(proxy.requests_with({"uploadid=id-young"}).empty());
  auto all = abort_stale_uploads(Location{&client, "mpu-a", "ws/app/"}, "", std::chrono::hours(1), true, false);
  ASSERT_TRUE(all) << all.error().message;
  EXPECT_EQ(all.value().aborted.size(), 3u);
  EXPECT_EQ(proxy.requests_with({"delete /mpu-a/ws/app/young.bin?uploadid=id-young"}).size(), 1u);
}

TEST(SyncMultipart, WithoutListingTheRecordedUploadsAreAborted) {
  REQUIRE_S3RVER();
  s3::Client direct(s3test::client_options(server().port));
  ASSERT_TRUE(direct.create_bucket("mpu-b"));
  Folder f;
  write_index(f.index, "ws/app/big.bin", "id-ours");
  // ListMultipartUploads goes to s3rver (501); the abort is answered like S3.
  FaultProxy proxy(server().port,
                   {Rule{{"delete /mpu-b/", "uploadid="}, Fault::kCanned, -1, http_response(204, "No Content", "")}});
  s3::Client client(s3test::client_options(proxy.port()));
  Options opts;
  opts.index = f.index;
  auto r = push(Location{&client, "mpu-b", "ws/app/"}, f.dir, opts);
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r.value().aborted_uploads, 1u);
  EXPECT_EQ(proxy.requests_with({"delete /mpu-b/ws/app/big.bin?uploadid=id-ours"}).size(), 1u);
  EXPECT_TRUE(read_json(f.index)["uploads"].empty());
}

TEST(SyncMultipart, AFailedAbortKeepsTheRecordForTheNextRun) {
  REQUIRE_S3RVER();
  s3::Client direct(s3test::client_options(server().port));
  ASSERT_TRUE(direct.create_bucket("mpu-c"));
  Folder f;
  write_index(f.index, "ws/app/big.bin", "id-ours");
  {
    FaultProxy proxy(server().port, {Rule{{"delete /mpu-c/", "uploadid="}, Fault::k500, -1, ""}});
    s3::Client client(s3test::client_options(proxy.port(), 0));
    Options opts;
    opts.index = f.index;
    auto r = push(Location{&client, "mpu-c", "ws/app/"}, f.dir, opts);
    ASSERT_TRUE(r) << r.error().message;  // the push itself goes on
    EXPECT_EQ(r.value().aborted_uploads, 0u);
    bool warned = false;
    for (const auto& w : r.value().warnings) warned |= w.find("id-ours") != std::string::npos;
    EXPECT_TRUE(warned);
    EXPECT_TRUE(read_json(f.index)["uploads"].contains("id-ours"));
  }
}

TEST(SyncMultipart, AnUploadThatFailsMidwayIsRecordedUntilAborted) {
  REQUIRE_S3RVER();
  s3::Client direct(s3test::client_options(server().port));
  ASSERT_TRUE(direct.create_bucket("mpu-d"));
  Folder f;
  std::string big(6u << 20, 'x');
  std::ofstream(f.dir / "big.bin", std::ios::binary) << big;
  {
    // Every part fails and so does the abort: the process might as well have been killed.
    FaultProxy proxy(server().port, {Rule{{"partnumber="}, Fault::k500, -1, ""},
                                     Rule{{"delete /mpu-d/", "uploadid="}, Fault::k500, -1, ""}});
    s3::Client client(s3test::client_options(proxy.port(), 0));
    Options opts;
    opts.index = f.index;
    opts.multipart_threshold = 5u << 20;
    opts.part_size = 5u << 20;
    auto r = push(Location{&client, "mpu-d", "ws/app/"}, f.dir, opts);
    ASSERT_FALSE(r);
    auto doc = read_json(f.index);
    ASSERT_EQ(doc["uploads"].size(), 1u) << doc.dump();
    EXPECT_EQ(doc["uploads"].begin().value()[0], "ws/app/big.bin");
  }
  // The next run aborts it (answered like S3) and uploads the file.
  FaultProxy proxy(server().port,
                   {Rule{{"delete /mpu-d/", "uploadid="}, Fault::kCanned, -1, http_response(204, "No Content", "")}});
  s3::Client client(s3test::client_options(proxy.port()));
  Options opts;
  opts.index = f.index;
  opts.multipart_threshold = 5u << 20;
  opts.part_size = 5u << 20;
  auto r = push(Location{&client, "mpu-d", "ws/app/"}, f.dir, opts);
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r.value().aborted_uploads, 1u);
  EXPECT_EQ(proxy.requests_with({"delete /mpu-d/ws/app/big.bin?uploadid="}).size(), 1u);
  EXPECT_TRUE(read_json(f.index)["uploads"].empty()) << read_json(f.index).dump();
}

}  // namespace
}  // namespace ck::sync
