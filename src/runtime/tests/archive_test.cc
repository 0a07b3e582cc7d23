#include "runtime/docker/archive.h"

#include <archive.h>
#include <archive_entry.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <memory>

namespace ck {
namespace {
namespace fs = std::filesystem;

struct Read {
  std::string path;
  mode_t type = 0;
  int perm = 0;
  std::string content;
  std::string symlink;
  int64_t uid = -1, gid = -1;
  std::string uname;
  time_t mtime = 0;
};

// Reads a tar file back with libarchive, independently of the code under test.
std::vector<Read> read_tar(const fs::path& file) {
  std::unique_ptr<archive, decltype(&archive_read_free)> a(archive_read_new(), archive_read_free);
  archive_read_support_format_tar(a.get());
  EXPECT_EQ(archive_read_open_filename(a.get(), file.c_str(), 10240), ARCHIVE_OK);
  std::vector<Read> out;
  archive_entry* e = nullptr;
  int rc;
  while ((rc = archive_read_next_header(a.get(), &e)) == ARCHIVE_OK || rc == ARCHIVE_WARN) {
    Read r;
    const char* name = archive_entry_pathname_utf8(e);
    r.path = name ? name : archive_entry_pathname(e);
    r.type = archive_entry_filetype(e);
    r.perm = archive_entry_perm(e);
    r.uid = archive_entry_uid(e);
    r.gid = archive_entry_gid(e);
    r.uname = archive_entry_uname(e) ? archive_entry_uname(e) : "";
    r.mtime = archive_entry_mtime(e);
    if (archive_entry_symlink(e)) r.symlink = archive_entry_symlink(e);
    char buf[65536];
    for (la_ssize_t n; (n = archive_read_data(a.get(), buf, sizeof buf)) > 0;)
      r.content.append(buf, n);
    out.push_back(std::move(r));
  }
  EXPECT_EQ(rc, ARCHIVE_EOF) << archive_error_string(a.get());
  return out;
}

std::vector<std::string> paths(const std::vector<Read>& entries) {
  std::vector<std::string> out;
  for (const auto& e : entries) out.push_back(e.path);
  return out;
}

class Archive : public ::testing::Test {
 protected:
  void SetUp() override {
    base_ = fs::temp_directory_path() /
            ("ck-archive-" + std::to_string(::getpid()) + "-" +
             ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(base_);
    fs::create_directories(root_ = base_ / "root");
    out_ = base_ / "out.tar";
  }
  void TearDown() override { fs::remove_all(base_); }
  void write(const std::string& rel, const std::string& text = "") {
    fs::create_directories((root_ / rel).parent_path());
    std::ofstream(root_ / rel, std::ios::binary) << text;
  }
  std::vector<Read> tar(const TarFilter& filter = {}) {
    auto r = write_tar(root_, out_, filter);
    EXPECT_TRUE(r) << (r ? "" : r.error().message);
    return r ? read_tar(out_) : std::vector<Read>{};
  }
  fs::path base_, root_, out_;
};

TEST_F(Archive, RoundTripsATree) {
  std::string big(5 << 20, '\0');
  for (size_t i = 0; i < big.size(); ++i) big[i] = static_cast<char>((i * 7 + i / 4096) % 251);
  write("app.py", "print(1)\n");
  write("empty.txt");
  write("dir with space/caf\xc3\xa9 \xe2\x98\x83.txt", "unicode");
  write("src/lib/deep/x.js", "x");
  write("big.bin", big);
  write("bad\xff.bin", "not UTF-8");
  fs::create_symlink("app.py", root_ / "link");
  fs::create_symlink("/nonexistent/target", root_ / "src/dangling");
  fs::permissions(root_ / "app.py", fs::perms(0755));
  fs::last_write_time(root_ / "empty.txt",
                      fs::file_time_type::clock::now() - std::chrono::hours(24 * 400));
  ::mkfifo((root_ / "fifo").c_str(), 0644);

  auto entries = tar();
  EXPECT_EQ(paths(entries),
            (std::vector<std::string>{"app.py", "bad\xff.bin", "big.bin", "dir with space/",
                                      "dir with space/caf\xc3\xa9 \xe2\x98\x83.txt", "empty.txt",
                                      "link", "src/", "src/dangling", "src/lib/", "src/lib/deep/",
                                      "src/lib/deep/x.js"}));
  std::map<std::string, Read> by_path;
  for (auto& e : entries) by_path[e.path] = e;
  EXPECT_EQ(by_path["app.py"].content, "print(1)\n");
  EXPECT_EQ(by_path["app.py"].perm, 0755);
  EXPECT_EQ(by_path["empty.txt"].type, AE_IFREG);
  EXPECT_EQ(by_path["empty.txt"].content, "");
  struct stat st;
  ASSERT_EQ(::stat((root_ / "empty.txt").c_str(), &st), 0);
  EXPECT_EQ(by_path["empty.txt"].mtime, st.st_mtime);
  EXPECT_EQ(by_path["dir with space/caf\xc3\xa9 \xe2\x98\x83.txt"].content, "unicode");
  EXPECT_EQ(by_path["src/"].type, AE_IFDIR);
  EXPECT_EQ(by_path["link"].type, AE_IFLNK);
  EXPECT_EQ(by_path["link"].symlink, "app.py");
  EXPECT_EQ(by_path["link"].content, "");
  EXPECT_EQ(by_path["src/dangling"].symlink, "/nonexistent/target");
  EXPECT_TRUE(by_path["big.bin"].content == big) << "5 MB file differs";
  EXPECT_EQ(by_path["bad\xff.bin"].content, "not UTF-8");
  std::ifstream in(out_, std::ios::binary);
  std::string raw((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_NE(raw.find("hdrcharset"), std::string::npos);
  EXPECT_EQ(raw.find("hdrcharset"), raw.rfind("hdrcharset"))
      << "only on the name that is not UTF-8";
  for (const auto& e : entries) {
    EXPECT_EQ(e.uid, 0) << e.path;
    EXPECT_EQ(e.gid, 0) << e.path;
    EXPECT_EQ(e.uname, "root") << e.path;
  }
}

TEST_F(Archive, FilterSkipsADirectoryWithoutDescending) {
  write("app.js");
  write("node_modules/a/index.js");
  write("logs/x.log");
  std::vector<std::string> asked;
  auto entries = tar([&](const std::string& rel, bool is_dir) {
    asked.push_back(rel + (is_dir ? "/" : ""));
    return rel == "node_modules" ? TarPick::skip : TarPick::include;
  });
  EXPECT_EQ(paths(entries), (std::vector<std::string>{"app.js", "logs/", "logs/x.log"}));
  EXPECT_EQ(asked, (std::vector<std::string>{"app.js", "logs/", "logs/x.log", "node_modules/"}));
}

TEST_F(Archive, DescendOnlyWritesContentsWithoutTheDirectory) {
  write("build/keep.txt");
  write("build/drop.txt");
  auto entries = tar([](const std::string& rel, bool) {
    return rel == "build"            ? TarPick::descend_only
           : rel == "build/drop.txt" ? TarPick::skip
                                     : TarPick::include;
  });
  EXPECT_EQ(paths(entries), (std::vector<std::string>{"build/keep.txt"}));
}

TEST_F(Archive, OutputInsideRootIsNotArchived) {
  write("a.txt", "a");
  out_ = root_ / "context.tar";
  EXPECT_EQ(paths(tar()), (std::vector<std::string>{"a.txt"}));
}

TEST_F(Archive, ErrorsNameThePath) {
  auto r = write_tar(base_ / "missing", out_);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find((base_ / "missing").string()), std::string::npos)
      << r.error().message;

  write("a.txt");
  r = write_tar(root_, base_ / "no-such-dir" / "out.tar");
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("no-such-dir/out.tar"), std::string::npos) << r.error().message;

  // A file that disappears between listing and reading.
  write("gone.txt", "soon gone");
  r = write_tar(root_, out_, [&](const std::string& rel, bool) {
    if (rel == "gone.txt") fs::remove(root_ / rel);
    return TarPick::include;
  });
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Errc::io);
  EXPECT_NE(r.error().message.find((root_ / "gone.txt").string()), std::string::npos)
      << r.error().message;
  EXPECT_NE(r.error().message.find("No such file"), std::string::npos) << r.error().message;
  EXPECT_FALSE(fs::exists(out_)) << "a failed tar is removed";
}

TEST(TarOf, AddsParentsOnceAndLists) {
  auto tar = tar_of(
      {{"Dockerfile", "FROM scratch\n"}, {"src/app/main.py", "print()", 0755}, {"src/x.py", ""}});
  ASSERT_TRUE(tar) << tar.error().message;
  auto list = tar_list(tar.value());
  ASSERT_TRUE(list) << list.error().message;
  EXPECT_EQ(list.value(), (std::vector<std::string>{"Dockerfile", "src/", "src/app/",
                                                    "src/app/main.py", "src/x.py"}));
  EXPECT_EQ(tar.value(), tar_of({{"Dockerfile", "FROM scratch\n"},
                                 {"src/app/main.py", "print()", 0755},
                                 {"src/x.py", ""}})
                             .value())
      << "equal input, equal bytes";
  for (const char* bad : {"", "/abs", "../up", "a//b", "a/./b", "dir/"}) {
    auto r = tar_of({{bad, "x"}});
    ASSERT_FALSE(r) << bad;
    EXPECT_EQ(r.error().code, Errc::invalid_argument);
  }
  EXPECT_FALSE(tar_list("definitely not a tar archive, just some text that is long enough"));
  auto none = tar_of({});
  ASSERT_TRUE(none);
  EXPECT_TRUE(tar_list(none.value()).value().empty());
}

TEST(SymlinkStaysInside, ByTheTextOfTheTarget) {
  EXPECT_TRUE(symlink_stays_inside("link", "app.py"));
  EXPECT_TRUE(symlink_stays_inside("src/link", "../app.py"));
  EXPECT_TRUE(symlink_stays_inside("a/b/link", "../../c/./d"));
  EXPECT_TRUE(symlink_stays_inside("a/link", "x/../../y"));
  EXPECT_FALSE(symlink_stays_inside("leak", "/etc/shadow"));
  EXPECT_FALSE(symlink_stays_inside("leak", "../secret"));
  EXPECT_FALSE(symlink_stays_inside("src/leak", "../../secret"));
  EXPECT_FALSE(symlink_stays_inside("a/leak", "x/../../../y"));
  EXPECT_FALSE(symlink_stays_inside("leak", ""));
  EXPECT_FALSE(symlink_stays_inside("../leak", "x"));
}

// Row 5 of issue 13: an hmr copy never carries what a symlink leaving the folder points to.
TEST_F(Archive, HmrEntryRefusesSymlinksLeavingTheFolder) {
  write("app.js", "console.log(1)\n");
  ::chmod((root_ / "app.js").c_str(), 0755);
  write("src/x.js", "x");
  std::ofstream(base_ / "secret") << "TOP-SECRET";
  fs::create_symlink("/etc/shadow", root_ / "leak");
  fs::create_symlink("../secret", root_ / "up");
  fs::create_symlink(base_, root_ / "outdir");         // a folder outside
  fs::create_symlink("src", root_ / "indir");           // a folder inside
  fs::create_symlink("../app.js", root_ / "src/same");  // a file inside

  auto file = hmr_entry(root_, "app.js");
  ASSERT_EQ(file.kind, HmrEntry::Kind::copy);
  EXPECT_EQ(file.file.content, "console.log(1)\n");
  EXPECT_EQ(file.file.mode, 0755);
  EXPECT_TRUE(file.file.symlink.empty());

  for (const char* p : {"leak", "up", "outdir/secret", "indir/x.js", "../secret", "/etc/shadow"}) {
    auto e = hmr_entry(root_, p);
    EXPECT_EQ(e.kind, HmrEntry::Kind::refused) << p;
    EXPECT_TRUE(e.file.content.empty()) << p;
    EXPECT_FALSE(e.why.empty()) << p;
  }
  auto inside = hmr_entry(root_, "src/same");
  ASSERT_EQ(inside.kind, HmrEntry::Kind::copy);
  EXPECT_EQ(inside.file.symlink, "../app.js");
  EXPECT_TRUE(inside.file.content.empty());
  EXPECT_EQ(hmr_entry(root_, "missing.js").kind, HmrEntry::Kind::gone);
  EXPECT_EQ(hmr_entry(root_, "nodir/missing.js").kind, HmrEntry::Kind::gone);
  EXPECT_EQ(hmr_entry(root_, "src").kind, HmrEntry::Kind::ignored);

  // The tar of what is copied holds the inside link as a link, and nothing of the secrets.
  auto tar = tar_of({file.file, inside.file});
  ASSERT_TRUE(tar) << tar.error().message;
  std::ofstream(out_, std::ios::binary) << tar.value();
  auto entries = read_tar(out_);
  ASSERT_EQ(paths(entries), (std::vector<std::string>{"app.js", "src/", "src/same"}));
  EXPECT_EQ(entries[2].type, AE_IFLNK);
  EXPECT_EQ(entries[2].symlink, "../app.js");
  EXPECT_EQ(tar.value().find("TOP-SECRET"), std::string::npos);
}

// Each case: .dockerignore text, then paths and whether they are excluded.
struct IgnoreCase {
  const char* rules;
  std::vector<std::pair<const char*, bool>> paths;
};

TEST(DockerIgnore, MatchesLikeDocker) {
  const IgnoreCase cases[] = {
      {"*.log", {{"a.log", true}, {"dir/a.log", false}, {"a.logx", false}}},
      {"node_modules",
       {{"node_modules", true},
        {"node_modules/x/y.js", true},
        {"src/node_modules", false},
        {"node_modules_old", false}}},
      {"**/*.tmp", {{"a.tmp", true}, {"x/y/a.tmp", true}, {"x/a.tmpx", false}}},
      {"src/**/test", {{"src/test", true}, {"src/a/b/test/c.js", true}, {"srctest", false}}},
      {"/build", {{"build", true}, {"build/out.o", true}, {"src/build", false}}},
      {"*.log\n!keep.log", {{"keep.log", false}, {"other.log", true}}},
      {"!keep.log\n*.log", {{"keep.log", true}}},  // the last matching pattern wins
      {"docs/**\n!docs/README.md",
       {{"docs", false}, {"docs/a.md", true}, {"docs/x/y.md", true}, {"docs/README.md", false}}},
      {"node_modules\n!node_modules/keep",
       {{"node_modules/keep/a.js", false}, {"node_modules/other.js", true}}},
      {"# a comment\n#a.txt\n\n   \n\t\nb.txt\n #c.txt",
       {{"a.txt", false}, {"# a comment", false}, {"b.txt", true}, {"#c.txt", true}}},
      {"dir/", {{"dir", true}, {"dir/x", true}, {"dirx", false}}},
      {"[a-c].txt\n[^x-z].md",
       {{"a.txt", true}, {"c.txt", true}, {"d.txt", false}, {"b.md", true}, {"y.md", false}}},
      {"\\*.txt", {{"*.txt", true}, {"a.txt", false}}},
      {"?.md", {{"a.md", true}, {"\xc3\xa9.md", true}, {"ab.md", false}, {"/.md", false}}},
      {"  ./src/../out//  \r\nsrc//gen/", {{"out/x", true}, {"src/gen/a.c", true}, {"src", false}}},
      {"!\n[abc\ntrailing\\\nfoo",
       {{"foo", true}, {"[abc", false}, {"trailing\\", false}}},  // invalid ones ignored
      {"**", {{"anything/at/all", true}}},
  };
  for (const auto& c : cases) {
    auto ig = DockerIgnore::parse(c.rules);
    for (const auto& [path, excluded] : c.paths) {
      EXPECT_EQ(ig.excluded(path), excluded) << "rules:\n" << c.rules << "\npath: " << path;
    }
  }
  EXPECT_TRUE(DockerIgnore::parse("").empty());
  EXPECT_TRUE(DockerIgnore::parse("# only a comment\n\n").empty());
  EXPECT_FALSE(DockerIgnore::parse("x").empty());
}

TEST(DockerIgnore, KnowsWhenExceptionsReachBelowADirectory) {
  auto plain = DockerIgnore::parse("node_modules\n*.log");
  EXPECT_FALSE(plain.has_exceptions());
  EXPECT_FALSE(plain.may_include_below("node_modules"));
  auto top = DockerIgnore::parse("node_modules\n*.log\n!keep.log");
  EXPECT_TRUE(top.has_exceptions());
  EXPECT_FALSE(top.may_include_below("node_modules"));
  auto inside = DockerIgnore::parse("node_modules\n!node_modules/keep\n!n*/deep/x");
  EXPECT_TRUE(inside.may_include_below("node_modules"));
  EXPECT_TRUE(inside.may_include_below("node_modules/deep"));
  EXPECT_FALSE(inside.may_include_below("node_modules/keep"));  // only the dir itself
  EXPECT_FALSE(inside.may_include_below("other"));
  EXPECT_TRUE(DockerIgnore::parse("x\n!**/*.md").may_include_below("x/y/z"));
}

TEST_F(Archive, DockerContextFilter) {
  write("Dockerfile", "FROM scratch\n");
  write(".dockerignore",
        "Dockerfile\n.dockerignore\nnode_modules\n*.log\n!keep.log\nvendor\n!vendor/keep/\n");
  write("app.js");
  write("debug.log");
  write("keep.log");
  write("node_modules/a/index.js");
  write("vendor/drop.js");
  write("vendor/keep/x.js");
  auto filter = docker_context_filter(DockerIgnore::load(root_));
  EXPECT_EQ(filter("node_modules", true), TarPick::skip);
  EXPECT_EQ(filter("vendor", true), TarPick::descend_only);
  EXPECT_EQ(paths(tar(filter)),
            (std::vector<std::string>{".dockerignore", "Dockerfile", "app.js", "keep.log",
                                      "vendor/keep/", "vendor/keep/x.js"}));
  EXPECT_TRUE(DockerIgnore::load(base_ / "missing").empty());
}

}  // namespace
}  // namespace ck
