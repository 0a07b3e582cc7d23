#include <filesystem>
#include <fstream>
#include <gtest/gtest.h>
#include <zlib.h>

#include "gateway/static_files.h"
#include "http/url.h"

namespace ck {
namespace {
namespace fs = std::filesystem;

class StaticPaths : public ::testing::Test {
 protected:
  void SetUp() override {
    base_ = fs::temp_directory_path() / ("ck-static-" + std::to_string(::getpid()));
    fs::remove_all(base_);
    root_ = base_ / "site";
    fs::create_directories(root_ / "docs" / "guide");
    fs::create_directories(root_ / "empty");
    fs::create_directories(root_ / ".git");
    std::ofstream(root_ / "index.html") << "home";
    std::ofstream(root_ / "docs" / "guide" / "index.html") << "guide";
    std::ofstream(root_ / "a b.txt") << "space";
    std::ofstream(root_ / ".git" / "config") << "secret";
    std::ofstream(base_ / "outside.txt") << "outside";
    fs::create_symlink(base_ / "outside.txt", root_ / "escape");
    fs::create_symlink("/etc", root_ / "etc");
    fs::create_symlink("index.html", root_ / "alias.html");
  }
  void TearDown() override { fs::remove_all(base_); }
  StaticLookup get(std::string_view p) { return resolve_static(root_, p); }
  fs::path base_, root_;
};

TEST_F(StaticPaths, ServesFilesAndIndexes) {
  EXPECT_EQ(get("/").kind, StaticLookup::file);
  EXPECT_EQ(get("/").path.filename(), "index.html");
  EXPECT_EQ(get("/docs/guide/").path, fs::canonical(root_ / "docs/guide/index.html"));
  EXPECT_EQ(get("/a%20b.txt").kind, StaticLookup::file);
  EXPECT_EQ(get("/./index.html").kind, StaticLookup::file);
  EXPECT_EQ(get("//index.html").kind, StaticLookup::file);
  EXPECT_EQ(get("/alias.html").kind, StaticLookup::file);  // a symlink inside is fine
}

TEST_F(StaticPaths, DirectoryWithoutSlashRedirects) {
  EXPECT_EQ(get("/docs").kind, StaticLookup::redirect_dir);
  EXPECT_EQ(get("/empty/").kind, StaticLookup::not_found);
}

TEST_F(StaticPaths, TraversalIsRefused) {
  for (const char* p : {"/../outside.txt", "/docs/../../outside.txt", "/%2e%2e/outside.txt",
                        "/%2E%2E/%2e%2E/etc/passwd", "/..%2foutside.txt", "/docs/..", "/%2e%2e"}) {
    auto r = get(p);
    EXPECT_EQ(r.kind, StaticLookup::bad_request) << p;
  }
  for (const char* p : {"/..\\outside.txt", "/..%5coutside.txt", "/index.html%00.png", "/%zz"}) {
    EXPECT_EQ(get(p).kind, StaticLookup::bad_request) << p;
  }
}

TEST_F(StaticPaths, SymlinksOutsideAreForbidden) {
  EXPECT_EQ(get("/escape").kind, StaticLookup::forbidden);
  EXPECT_EQ(get("/etc/passwd").kind, StaticLookup::forbidden);
}

TEST_F(StaticPaths, HiddenFilesAreNotServed) {
  EXPECT_EQ(get("/.git/config").kind, StaticLookup::not_found);
  EXPECT_EQ(get("/missing.html").kind, StaticLookup::not_found);
}

TEST(StaticTypes, ContentTypesAndCompression) {
  EXPECT_EQ(content_type_for("a.CSS"), "text/css; charset=utf-8");
  EXPECT_EQ(content_type_for("x.png"), "image/png");
  EXPECT_EQ(content_type_for("noext"), "application/octet-stream");
  EXPECT_TRUE(is_compressible("text/html; charset=utf-8"));
  EXPECT_TRUE(is_compressible("image/svg+xml"));
  EXPECT_FALSE(is_compressible("image/png"));
}

TEST(StaticRanges, Parsing) {
  ByteRange r;
  EXPECT_EQ(parse_range("bytes=0-9", 100, r), RangeResult::ok);
  EXPECT_EQ(r.first, 0u);
  EXPECT_EQ(r.last, 9u);
  EXPECT_EQ(parse_range("bytes=90-", 100, r), RangeResult::ok);
  EXPECT_EQ(r.last, 99u);
  EXPECT_EQ(parse_range("bytes=-10", 100, r), RangeResult::ok);
  EXPECT_EQ(r.first, 90u);
  EXPECT_EQ(parse_range("bytes=50-500", 100, r), RangeResult::ok);
  EXPECT_EQ(r.last, 99u);
  EXPECT_EQ(parse_range("bytes=100-", 100, r), RangeResult::unsatisfiable);
  EXPECT_EQ(parse_range("bytes=-0", 100, r), RangeResult::unsatisfiable);
  EXPECT_EQ(parse_range("bytes=5-1", 100, r), RangeResult::none);
  EXPECT_EQ(parse_range("bytes=0-1,5-6", 100, r), RangeResult::none);
  EXPECT_EQ(parse_range("items=0-1", 100, r), RangeResult::none);
  EXPECT_EQ(parse_range("bytes=x-1", 100, r), RangeResult::none);
}

TEST(StaticEtags, Matching) {
  auto e = make_etag(10, 123);
  EXPECT_EQ(e, "\"a-7b\"");
  EXPECT_TRUE(http::etag_matches(e, e));
  EXPECT_TRUE(http::etag_matches("\"x\", " + e, e));
  EXPECT_TRUE(http::etag_matches("W/" + e, e));
  EXPECT_TRUE(http::etag_matches("*", e));
  EXPECT_FALSE(http::etag_matches("\"other\"", e));
}

TEST(StaticGzip, AcceptEncoding) {
  EXPECT_TRUE(accepts_gzip("gzip"));
  EXPECT_TRUE(accepts_gzip("gzip, deflate, br"));
  EXPECT_TRUE(accepts_gzip("br;q=1.0, gzip;q=0.8"));
  EXPECT_TRUE(accepts_gzip("*"));
  EXPECT_FALSE(accepts_gzip("gzip;q=0"));
  EXPECT_FALSE(accepts_gzip("*, gzip;q=0"));
  EXPECT_FALSE(accepts_gzip("identity"));
  EXPECT_FALSE(accepts_gzip(""));
}

TEST(StaticGzip, RoundTrips) {
  std::string text(5000, 'a');
  auto z = gzip(text);
  ASSERT_FALSE(z.empty());
  EXPECT_LT(z.size(), text.size());
  EXPECT_EQ(static_cast<unsigned char>(z[0]), 0x1f);
  EXPECT_EQ(static_cast<unsigned char>(z[1]), 0x8b);
  std::string back(text.size(), '\0');
  z_stream zs{};
  inflateInit2(&zs, 15 + 16);
  zs.next_in = reinterpret_cast<Bytef*>(z.data());
  zs.avail_in = static_cast<uInt>(z.size());
  zs.next_out = reinterpret_cast<Bytef*>(back.data());
  zs.avail_out = static_cast<uInt>(back.size());
  EXPECT_EQ(inflate(&zs, Z_FINISH), Z_STREAM_END);
  inflateEnd(&zs);
  EXPECT_EQ(back, text);
}

}  // namespace
}  // namespace ck
