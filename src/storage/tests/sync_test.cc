// The sync engine's pure parts: key layout, path safety, MD5 and multipart ETags (expected
// values computed independently with Python's hashlib), and the index file location.
#include "storage/sync.h"

#include <gtest/gtest.h>

#include <fstream>

namespace ck::sync {
namespace {

namespace fs = std::filesystem;

fs::path temp_file(const std::string& name, const std::string& content) {
  fs::path p = fs::temp_directory_path() / ("ck-sync-test-" + std::to_string(::getpid()) + "-" + name);
  std::ofstream(p, std::ios::binary) << content;
  return p;
}

TEST(SyncLayout, PrefixesAndManifest) {
  EXPECT_EQ(workspace_prefix("", "app"), "app/");
  EXPECT_EQ(workspace_prefix("ws", "app"), "ws/app/");
  EXPECT_EQ(workspace_prefix("/a/b/", "app"), "a/b/app/");
  EXPECT_EQ(root_prefix(""), "");
  EXPECT_EQ(root_prefix("a/b/"), "a/b/");
  EXPECT_EQ(manifest_key("ws", "app"), "ws/.cloudyknight/manifests/app.json");
  EXPECT_EQ(manifest_key("", "app"), ".cloudyknight/manifests/app.json");
  EXPECT_EQ(op_name(Op::delete_remote), "delete");
}

TEST(SyncLayout, SafeRelativePaths) {
  for (const char* ok : {"a", "a/b.txt", "x y/ü 日本/+&=()!*'.txt", ".hidden", "a/..b", "...", "a/.b/c"}) {
    EXPECT_TRUE(safe_relative_path(ok)) << ok;
  }
  for (const char* bad : {"", "/etc/passwd", "..", "../x", "a/../../x", "a/..", "./a", "a/./b", "a//b", "a/",
                          "a\\..\\b"}) {
    EXPECT_FALSE(safe_relative_path(bad)) << bad;
  }
  EXPECT_FALSE(safe_relative_path(std::string_view("a\0b", 3)));
}

TEST(SyncHash, Md5AndMultipartEtags) {
  fs::path abc = temp_file("abc", "abc");
  EXPECT_EQ(file_md5(abc).value(), "900150983cd24fb0d6963f7d28e17f72");
  fs::path empty = temp_file("empty", "");
  EXPECT_EQ(file_md5(empty).value(), "d41d8cd98f00b204e9800998ecf8427e");

  std::string data(11 * 1024 * 1024 + 5, '\0');
  for (std::size_t i = 0; i < data.size(); ++i) data[i] = static_cast<char>(i % 251);
  fs::path big = temp_file("big", data);
  EXPECT_EQ(file_md5(big).value(), "3f8fec0ad132f06ee16f4822b507cc82");
  EXPECT_EQ(file_multipart_etag(big, 5 * 1024 * 1024).value(), "22323914eec01263015fb4e2f0f07a9d-3");

  auto missing = file_md5("/nonexistent/ck-sync-test");
  ASSERT_TRUE(missing.has_error());
  EXPECT_NE(missing.error().message.find("/nonexistent/ck-sync-test"), std::string::npos);
  for (const auto& p : {abc, empty, big}) fs::remove(p);
}

TEST(SyncIndex, PathDependsOnEverythingThatIdentifiesTheSync) {
  ::setenv("XDG_CACHE_HOME", "/tmp/ck-cache", 1);
  fs::path a = default_index_path("http://h:1", "bkt", "ws/app/", "/tmp/x");
  EXPECT_EQ(a.parent_path(), fs::path("/tmp/ck-cache/cloudyknight/sync"));
  EXPECT_EQ(a, default_index_path("http://h:1", "bkt", "ws/app/", "/tmp/x/"));
  EXPECT_NE(a, default_index_path("http://h:2", "bkt", "ws/app/", "/tmp/x"));
  EXPECT_NE(a, default_index_path("http://h:1", "bkt2", "ws/app/", "/tmp/x"));
  EXPECT_NE(a, default_index_path("http://h:1", "bkt", "ws/other/", "/tmp/x"));
  EXPECT_NE(a, default_index_path("http://h:1", "bkt", "ws/app/", "/tmp/y"));
  ::unsetenv("XDG_CACHE_HOME");
}

}  // namespace
}  // namespace ck::sync
