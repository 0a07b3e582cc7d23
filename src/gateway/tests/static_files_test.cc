#include "gateway/static_files.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <cerrno>
#include <ctime>
#include <filesystem>
#include <fstream>

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

TEST_F(StaticPaths, LexicalChecksGiveTheRelativePath) {
  std::string rel = "stale";
  EXPECT_FALSE(check_static_path("/", rel));
  EXPECT_EQ(rel, "");
  EXPECT_FALSE(check_static_path("/docs/guide/", rel));
  EXPECT_EQ(rel, "docs/guide");
  EXPECT_FALSE(check_static_path("//./a%20b.txt", rel));
  EXPECT_EQ(rel, "a b.txt");
  EXPECT_FALSE(check_static_path("/.well-known/x.json", rel));
  EXPECT_EQ(rel, ".well-known/x.json");
  // The same refusals as resolve_static(), before the filesystem is touched.
  for (const char* p : {"/../outside.txt", "/%2e%2e/outside.txt", "/..%2foutside.txt", "/docs/..",
                        "/..%5coutside.txt", "/index.html%00.png", "/%zz"}) {
    auto r = check_static_path(p, rel);
    ASSERT_TRUE(r) << p;
    EXPECT_EQ(r->kind, StaticLookup::bad_request) << p;
    EXPECT_EQ(r->kind, get(p).kind) << p;
  }
  auto hidden = check_static_path("/.git/config", rel);
  ASSERT_TRUE(hidden);
  EXPECT_EQ(hidden->kind, StaticLookup::not_found);
}

TEST_F(StaticPaths, OpenBeneathOpensFilesAndRefusesEverySymlink) {
  int root = ::open(root_.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);
  ASSERT_GE(root, 0);
  auto read_all = [](int fd) {
    std::string out(64, '\0');
    ssize_t n = ::pread(fd, out.data(), out.size(), 0);
    out.resize(n > 0 ? static_cast<std::size_t>(n) : 0);
    ::close(fd);
    return out;
  };
  int fd = open_beneath(root, "docs/guide/index.html");
  ASSERT_GE(fd, 0);
  EXPECT_EQ(read_all(fd), "guide");
  fd = open_beneath(root, "a b.txt");
  ASSERT_GE(fd, 0);
  EXPECT_EQ(read_all(fd), "space");
  fd = open_beneath(root, "");  // the folder itself
  ASSERT_GE(fd, 0);
  struct stat st {};
  EXPECT_EQ(::fstat(fd, &st), 0);
  EXPECT_TRUE(S_ISDIR(st.st_mode));
  ::close(fd);
  // Symlinks are refused wherever they are, inside or out (the caller's full checks decide).
  for (const char* p : {"escape", "etc/passwd", "alias.html"}) {
    errno = 0;
    EXPECT_LT(open_beneath(root, p), 0) << p;
    EXPECT_TRUE(errno == ELOOP || errno == EXDEV) << p << ": " << errno;
  }
  errno = 0;
  EXPECT_LT(open_beneath(root, "missing.html"), 0);
  EXPECT_EQ(errno, ENOENT);
  errno = 0;
  EXPECT_LT(open_beneath(root, "../outside.txt"), 0);  // never given one, refused anyway
  EXPECT_NE(errno, 0);
  // A FIFO planted in the folder opens at once (non-blocking) instead of stalling a worker.
  ASSERT_EQ(::mkfifo((root_ / "pipe").c_str(), 0644), 0);
  fd = open_beneath(root, "pipe");
  ASSERT_GE(fd, 0);
  EXPECT_EQ(::fstat(fd, &st), 0);
  EXPECT_FALSE(S_ISREG(st.st_mode));
  ::close(fd);
  ::close(root);
}

TEST_F(StaticPaths, RootCacheFollowsAFolderReplaced) {
  StaticRootCache roots;
  auto read_index = [&](int root) {
    int fd = open_beneath(root, "index.html");
    std::string out(64, '\0');
    ssize_t n = fd < 0 ? -1 : ::pread(fd, out.data(), out.size(), 0);
    if (fd >= 0) ::close(fd);
    out.resize(n > 0 ? static_cast<std::size_t>(n) : 0);
    return out;
  };
  const std::string path = root_.string();
  int a = roots.get(path);
  ASSERT_GE(a, 0);
  EXPECT_EQ(roots.get(path), a);  // kept
  EXPECT_EQ(read_index(a), "home");
  // Deployed by swapping folders: the next request sees the new one.
  fs::create_directories(base_ / "next");
  std::ofstream(base_ / "next" / "index.html") << "next";
  fs::rename(root_, base_ / "old");
  fs::rename(base_ / "next", root_);
  int b = roots.get(path);
  ASSERT_GE(b, 0);
  EXPECT_EQ(read_index(b), "next");
  EXPECT_EQ(roots.size(), 1u);
  // Through a symlink pointed elsewhere.
  fs::create_symlink(base_ / "old", base_ / "link");
  int c = roots.get((base_ / "link").string());
  EXPECT_EQ(read_index(c), "home");
  fs::remove(base_ / "link");
  fs::create_symlink(root_, base_ / "link");
  EXPECT_EQ(read_index(roots.get((base_ / "link").string())), "next");
  // Gone: an error, not the old folder.
  fs::remove_all(root_);
  errno = 0;
  EXPECT_EQ(roots.get(path), -1);
  EXPECT_EQ(errno, ENOENT);
  // A file is not a folder.
  EXPECT_EQ(roots.get((base_ / "outside.txt").string()), -1);
}

TEST(StaticTypes, ContentTypesAndCompression) {
  EXPECT_EQ(content_type_for("a.CSS"), "text/css; charset=utf-8");
  EXPECT_EQ(content_type_for("x.png"), "image/png");
  EXPECT_EQ(content_type_for("noext"), "application/octet-stream");
  // By name, as std::filesystem::path::extension() reads it.
  EXPECT_EQ(content_type_for_name("css/a.CSS"), "text/css; charset=utf-8");
  EXPECT_EQ(content_type_for_name("dir.d/file"), "application/octet-stream");
  EXPECT_EQ(content_type_for_name(".well-known/.profile"), "application/octet-stream");
  EXPECT_EQ(content_type_for_name("a.tar.gz"), "application/gzip");
  EXPECT_EQ(content_type_for_name("index.html"), "text/html; charset=utf-8");
  for (const char* n : {"a.js", "b.min.mjs", "c.WOFF2", "d.", "e", ".hidden", "f.svg"}) {
    EXPECT_EQ(content_type_for_name(n), content_type_for(std::filesystem::path(n))) << n;
  }
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

TEST(StaticHead, FullAnswer) {
  StaticResponseHead h;
  h.date = "Sun, 06 Dec 2026 02:00:00 GMT";
  h.content_type = "text/css; charset=utf-8";
  h.content_length = 4096;
  h.etag = "\"1000-5\"";
  h.last_modified = "Sat, 05 Dec 2026 01:00:00 GMT";
  h.vary = true;
  std::string out = "kept";
  append_static_response_head(h, out);
  EXPECT_EQ(out,
            "keptHTTP/1.1 200 OK\r\nServer: cloudyknight\r\nDate: Sun, 06 Dec 2026 02:00:00 GMT\r\n"
            "Content-Type: text/css; charset=utf-8\r\nContent-Length: 4096\r\nETag: \"1000-5\"\r\n"
            "Last-Modified: Sat, 05 Dec 2026 01:00:00 GMT\r\nCache-Control: no-cache\r\n"
            "Accept-Ranges: bytes\r\nVary: Accept-Encoding\r\n\r\n");
}

TEST(StaticHead, StatusesRangesAndConnection) {
  StaticResponseHead h;
  h.date = "D";
  h.etag = "\"e\"";
  h.last_modified = "L";
  h.status = 304;  // no type, no length
  std::string out;
  append_static_response_head(h, out);
  EXPECT_EQ(out.rfind("HTTP/1.1 304 Not Modified\r\n", 0), 0u);
  EXPECT_EQ(out.find("Content-Length"), std::string::npos);
  EXPECT_EQ(out.find("Content-Type"), std::string::npos);
  EXPECT_EQ(out.find("Connection"), std::string::npos);

  h.status = 206;
  h.content_type = "image/png";
  h.content_length = 10;
  h.range = StaticResponseHead::Range::partial;
  h.bytes = {5, 14};
  h.total = 100;
  h.gzip = false;
  h.keep_alive = false;
  h.hsts = "max-age=60";
  out.clear();
  append_static_response_head(h, out);
  EXPECT_EQ(out.rfind("HTTP/1.1 206 Partial Content\r\n", 0), 0u);
  EXPECT_NE(out.find("\r\nContent-Range: bytes 5-14/100\r\n"), std::string::npos);
  EXPECT_NE(out.find("\r\nContent-Length: 10\r\n"), std::string::npos);
  EXPECT_NE(out.find("\r\nStrict-Transport-Security: max-age=60\r\n"), std::string::npos);
  EXPECT_NE(out.find("\r\nConnection: close\r\n\r\n"), std::string::npos);
  EXPECT_EQ(out.find("Vary"), std::string::npos);

  h.status = 416;
  h.range = StaticResponseHead::Range::unsatisfiable;
  h.content_length = 0;
  out.clear();
  append_static_response_head(h, out);
  EXPECT_EQ(out.rfind("HTTP/1.1 416 Range Not Satisfiable\r\n", 0), 0u);
  EXPECT_NE(out.find("\r\nContent-Range: bytes */100\r\n"), std::string::npos);

  h.status = 200;
  h.range = StaticResponseHead::Range::none;
  h.version = 10;
  h.keep_alive = true;
  h.gzip = true;
  out.clear();
  append_static_response_head(h, out);
  EXPECT_EQ(out.rfind("HTTP/1.0 200 OK\r\n", 0), 0u);
  EXPECT_NE(out.find("\r\nContent-Encoding: gzip\r\n"), std::string::npos);
  EXPECT_NE(out.find("\r\nConnection: keep-alive\r\n\r\n"), std::string::npos);
  EXPECT_EQ(out.find("Content-Range"), std::string::npos);
}

StaticFileEntry entry_of(std::string body, std::int64_t mtime_ns, std::int64_t ctime_ns) {
  StaticFileEntry e;
  e.size = body.size();
  e.mtime_ns = mtime_ns;
  e.ctime_ns = ctime_ns;
  e.body = std::move(body);
  e.etag = make_etag(e.size, mtime_ns);
  return e;
}

TEST(StaticCache, HitsOnlyTheSameVersion) {
  StaticFileCache c;
  EXPECT_EQ(c.find(1, 2, 3, 10, 20), nullptr);
  auto e = c.put(1, 2, entry_of("abc", 10, 20));
  ASSERT_NE(e, nullptr);
  auto hit = c.find(1, 2, 3, 10, 20);
  ASSERT_NE(hit, nullptr);
  EXPECT_EQ(hit->body, "abc");
  EXPECT_EQ(c.find(1, 2, 3, 10, 21), nullptr);  // rewritten with its mtime set back: new ctime
  EXPECT_EQ(c.find(1, 2, 4, 10, 20), nullptr);  // another size
  EXPECT_EQ(c.find(1, 2, 3, 11, 20), nullptr);  // another mtime
  EXPECT_EQ(c.find(9, 2, 3, 10, 20), nullptr);  // another device
  EXPECT_EQ(c.find(1, 3, 3, 10, 20), nullptr);  // another file
  // A newer version replaces the old one; the entry held by a request being sent survives.
  c.put(1, 2, entry_of("abcd", 30, 40));
  EXPECT_EQ(c.size(), 1u);
  EXPECT_EQ(c.bytes(), 4u);
  EXPECT_EQ(hit->body, "abc");
  EXPECT_EQ(c.find(1, 2, 3, 10, 20), nullptr);
  ASSERT_NE(c.find(1, 2, 4, 30, 40), nullptr);
}

TEST(StaticCache, BoundedInBytes) {
  StaticFileCache c;
  std::string big(StaticFileCache::kMaxFileBytes, 'x');
  std::uint64_t n = StaticFileCache::kMaxBytes / big.size() + 2;
  for (std::uint64_t i = 0; i < n; ++i) c.put(1, static_cast<ino_t>(i + 1), entry_of(big, 1, 1));
  EXPECT_LE(c.bytes(), StaticFileCache::kMaxBytes);
  EXPECT_NE(c.find(1, static_cast<ino_t>(n), big.size(), 1, 1), nullptr);  // the newest is kept
}

TEST(StaticCache, RecentlyChangedOrLargeFilesAreNotCached) {
  std::int64_t now = 1'800'000'000;
  std::int64_t sec = 1'000'000'000;
  EXPECT_TRUE(StaticFileCache::cacheable(4096, (now - 2) * sec, now));
  EXPECT_TRUE(StaticFileCache::cacheable(StaticFileCache::kMaxFileBytes, (now - 60) * sec, now));
  EXPECT_FALSE(StaticFileCache::cacheable(4096, (now - 1) * sec + 999'999'999, now));
  EXPECT_FALSE(StaticFileCache::cacheable(4096, now * sec, now));
  EXPECT_FALSE(
      StaticFileCache::cacheable(StaticFileCache::kMaxFileBytes + 1, (now - 60) * sec, now));
}

}  // namespace
}  // namespace ck
