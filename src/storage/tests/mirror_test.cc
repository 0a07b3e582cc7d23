// S3Mirror against a real s3rver (s3rver_fixture.h): what lands in DATA/mirror for a bucket
// prefix, incremental passes, removal, and that a failed listing changes nothing.

#include "storage/s3/mirror.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "storage/s3/client.h"
#include "storage/tests/s3rver_fixture.h"

namespace ck {
namespace {

namespace fs = std::filesystem;
using s3test::client_options;
using s3test::server;

std::string slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

// Polls `pred` every 20 ms for up to `limit`.
template <class Pred>
bool eventually(Pred pred, std::chrono::milliseconds limit = std::chrono::milliseconds(10000)) {
  auto deadline = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < deadline) {
    if (pred()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return pred();
}

class MirrorTest : public ::testing::Test {
 protected:
  void SetUp() override {
    REQUIRE_S3RVER();
    client_ = std::make_unique<s3::Client>(client_options(server().port));
    // One bucket per test: "mirror-<test name>".
    std::string name = ::testing::UnitTest::GetInstance()->current_test_info()->name();
    bucket_ = "mirror-";
    for (char c : name) {
      auto u = static_cast<unsigned char>(c);
      bucket_ += std::isalnum(u) ? static_cast<char>(std::tolower(u)) : '-';
    }
    bucket_ = bucket_.substr(0, 60);
    ASSERT_TRUE(client_->create_bucket(bucket_).has_value());
    char tmpl[] = "/tmp/ck-mirror-test-XXXXXX";
    data_ = ::mkdtemp(tmpl);
  }

  void TearDown() override {
    std::error_code ec;
    if (!data_.empty()) fs::remove_all(data_, ec);
  }

  void put(const std::string& key, const std::string& body) {
    auto r = client_->put_object(bucket_, key, body);
    ASSERT_TRUE(r.has_value()) << r.error().message;
  }

  void remove(const std::string& key) {
    auto r = client_->delete_object(bucket_, key);
    ASSERT_TRUE(r.has_value()) << r.error().message;
  }

  S3MirrorOptions options(std::chrono::milliseconds interval = std::chrono::milliseconds(60000)) {
    S3MirrorOptions o;
    o.bucket = bucket_;
    o.prefix = "ws";
    o.data = data_;
    o.interval = interval;
    return o;
  }

  fs::path mirror() const { return data_ / "mirror"; }

  std::unique_ptr<s3::Client> client_;
  std::string bucket_;
  fs::path data_;
};

TEST_F(MirrorTest, MirrorsEveryWorkspaceUnderThePrefixAndNothingElse) {
  put("ws/site/index.html", "<h1>site</h1>");
  put("ws/site/css/style.css", "body{}");
  put("ws/site/empty.txt", "");
  put("ws/app/app.py", "print('hi')\n");
  put("ws/app/.env", "SECRET=1\n");  // a mirror holds exactly what the bucket holds
  put("ws/app/node_modules/x.js", "x");
  put("ws/.cloudyknight/manifests/site.json", "{}");  // metadata, not a workspace
  put("ws/Bad_Name/index.html", "bad");               // invalid name: skipped with a warning
  put("ws/monitor/index.html", "reserved");
  put("ws/readme.txt", "beside the workspaces");
  put("other/site/index.html", "outside the prefix");

  S3Mirror m(*client_, options());
  EXPECT_EQ(m.url(), "s3://" + bucket_ + "/ws");
  auto pass = m.run_pass();
  ASSERT_TRUE(pass.has_value()) << pass.error().message;
  EXPECT_EQ(pass.value().workspaces, 2u);
  EXPECT_EQ(pass.value().pulled, 2u);
  EXPECT_EQ(pass.value().failed, 0u);
  EXPECT_EQ(pass.value().files, 6u);

  EXPECT_EQ(slurp(mirror() / "site/index.html"), "<h1>site</h1>");
  EXPECT_EQ(slurp(mirror() / "site/css/style.css"), "body{}");
  EXPECT_TRUE(fs::is_regular_file(mirror() / "site/empty.txt"));
  EXPECT_EQ(fs::file_size(mirror() / "site/empty.txt"), 0u);
  EXPECT_EQ(slurp(mirror() / "app/app.py"), "print('hi')\n");
  EXPECT_EQ(slurp(mirror() / "app/.env"), "SECRET=1\n");
  EXPECT_EQ(slurp(mirror() / "app/node_modules/x.js"), "x");
  std::vector<std::string> top;
  for (const auto& e : fs::directory_iterator(mirror())) {
    top.push_back(e.path().filename().string());
  }
  std::sort(top.begin(), top.end());
  EXPECT_EQ(top, (std::vector<std::string>{"app", "site"}));
  EXPECT_TRUE(fs::exists(data_ / "mirror-index/site.json"));
  EXPECT_TRUE(fs::exists(data_ / "mirror-index/app.json"));
  EXPECT_TRUE(fs::is_empty(data_ / "mirror-staging")) << "first downloads are moved into place";
  EXPECT_EQ(m.last_error(), "");
}

TEST_F(MirrorTest, PullsOnlyWorkspacesThatChangedAndDeletesRemovedFiles) {
  put("ws/site/index.html", "v1");
  put("ws/site/old.txt", "old");
  put("ws/app/app.py", "app");
  S3Mirror m(*client_, options());
  ASSERT_TRUE(m.run_pass().has_value());

  auto again = m.run_pass();
  ASSERT_TRUE(again.has_value());
  EXPECT_EQ(again.value().pulled, 0u) << "nothing changed: no pull";
  EXPECT_EQ(again.value().files, 0u);

  put("ws/site/index.html", "v2 is longer");
  remove("ws/site/old.txt");
  put("ws/site/new/deep.txt", "deep");
  auto changed = m.run_pass();
  ASSERT_TRUE(changed.has_value());
  EXPECT_EQ(changed.value().pulled, 1u) << "only site changed";
  EXPECT_EQ(changed.value().files, 3u);  // 2 downloads + 1 delete
  EXPECT_EQ(slurp(mirror() / "site/index.html"), "v2 is longer");
  EXPECT_FALSE(fs::exists(mirror() / "site/old.txt"));
  EXPECT_EQ(slurp(mirror() / "site/new/deep.txt"), "deep");
  EXPECT_EQ(slurp(mirror() / "app/app.py"), "app");

  // Same size, different content: the ETag tells.
  put("ws/site/index.html", "v3 is longer");
  ASSERT_TRUE(m.run_pass().has_value());
  EXPECT_EQ(slurp(mirror() / "site/index.html"), "v3 is longer");

  // A restarted daemon (a new mirror over the same data) finds the mirror up to date.
  S3Mirror restarted(*client_, options());
  auto after_restart = restarted.run_pass();
  ASSERT_TRUE(after_restart.has_value());
  EXPECT_EQ(after_restart.value().files, 0u) << "the index and ETags say nothing changed";
}

TEST_F(MirrorTest, RemovesAWorkspaceWhoseKeysAreAllGone) {
  put("ws/site/index.html", "site");
  put("ws/app/app.py", "app");
  put("ws/app/lib/util.py", "util");
  S3Mirror m(*client_, options());
  ASSERT_TRUE(m.run_pass().has_value());
  ASSERT_TRUE(fs::exists(mirror() / "app/lib/util.py"));

  remove("ws/app/app.py");
  remove("ws/app/lib/util.py");
  auto pass = m.run_pass();
  ASSERT_TRUE(pass.has_value());
  EXPECT_EQ(pass.value().removed, 1u);
  EXPECT_FALSE(fs::exists(mirror() / "app"));
  EXPECT_FALSE(fs::exists(data_ / "mirror-index/app.json"));
  EXPECT_TRUE(fs::exists(mirror() / "site/index.html"));

  // It comes back whole when its objects do.
  put("ws/app/app.py", "app again");
  ASSERT_TRUE(m.run_pass().has_value());
  EXPECT_EQ(slurp(mirror() / "app/app.py"), "app again");
}

TEST_F(MirrorTest, AFailedListingChangesNothingLocally) {
  put("ws/site/index.html", "site");
  put("ws/app/app.py", "app");
  S3Mirror m(*client_, options());
  ASSERT_TRUE(m.run_pass().has_value());
  remove("ws/app/app.py");
  put("ws/site/index.html", "changed");

  // The same data folder through a client that reaches no server: the pass fails as a whole.
  auto opts = client_options(s3test::free_port(), 0);
  opts.timeout = std::chrono::milliseconds(2000);
  s3::Client dead(opts);
  S3Mirror unreachable(dead, options());
  auto pass = unreachable.run_pass();
  ASSERT_TRUE(pass.has_error());
  EXPECT_NE(unreachable.last_error(), "");
  EXPECT_EQ(slurp(mirror() / "app/app.py"), "app")
      << "a failed listing is not 'everything was deleted'";
  EXPECT_EQ(slurp(mirror() / "site/index.html"), "site");

  // The server itself goes away, then comes back on the same port.
  server().kill();
  auto down = m.run_pass();
  EXPECT_TRUE(down.has_error());
  EXPECT_NE(m.last_error(), "");
  EXPECT_TRUE(fs::exists(mirror() / "app/app.py"));
  server().start();
  ASSERT_EQ(server().skip_reason, "");
  auto back = m.run_pass();
  ASSERT_TRUE(back.has_value()) << back.error().message;
  EXPECT_EQ(m.last_error(), "");
  EXPECT_FALSE(fs::exists(mirror() / "app"));
  EXPECT_EQ(slurp(mirror() / "site/index.html"), "changed");
}

TEST_F(MirrorTest, NeverWritesOutsideTheMirror) {
  put("ws/site/index.html", "site");
  // Whether a key with ".." reaches the server as written depends on the HTTP stack; when it
  // does, the mirror must refuse it.
  put("ws/site/../../evil.txt", "evil");
  S3Mirror m(*client_, options());
  auto pass = m.run_pass();
  ASSERT_TRUE(pass.has_value());
  EXPECT_EQ(slurp(mirror() / "site/index.html"), "site");
  for (const auto& e : fs::recursive_directory_iterator(data_)) {
    EXPECT_EQ(e.path().filename().string().find("evil"), std::string::npos) << e.path();
  }
  EXPECT_FALSE(fs::exists(data_.parent_path() / "evil.txt"));
  EXPECT_FALSE(fs::exists(data_ / "evil.txt"));
}

TEST_F(MirrorTest, TheThreadPassesOnPokeAndOnItsInterval) {
  put("ws/site/index.html", "v1");
  {
    S3Mirror m(*client_, options(std::chrono::milliseconds(60000)));
    ASSERT_TRUE(m.run_pass().has_value());
    m.start();
    put("ws/site/index.html", "poked");
    m.notify({bucket_ + "/ws/site/index.html"});
    EXPECT_TRUE(eventually([&] { return slurp(mirror() / "site/index.html") == "poked"; }))
        << "a poke runs a pass at once (the interval is a minute)";
    m.stop();
    m.stop();  // idempotent
  }
  {
    S3Mirror m(*client_, options(std::chrono::milliseconds(200)));
    m.start();
    put("ws/blog/index.html", "blog");
    EXPECT_TRUE(eventually([&] { return slurp(mirror() / "blog/index.html") == "blog"; }));
  }  // the destructor stops the thread
}

}  // namespace
}  // namespace ck
