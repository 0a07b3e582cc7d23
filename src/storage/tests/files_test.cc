// storage/files.h: the pure ETag and If-Match helpers, and read/write/remove beneath a folder
// descriptor in a temporary folder: atomic writes, preconditions, symlinks on the way or at the
// end, and the commit hook (what S3 storage uploads through) cancelling a change.

#include "storage/files.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "core/beneath.h"

namespace ck {
namespace {

namespace fs = std::filesystem;

class FilesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    base = fs::temp_directory_path() /
           ("ck-files-test-" + std::to_string(::getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(base);
    fs::create_directories(base / "ws" / "sub");
    spit(base / "outside.txt", "outside");
    spit(base / "ws" / "a.txt", "hello");
    fs::create_symlink(base / "outside.txt", base / "ws" / "link.txt");
    fs::create_directory_symlink(base, base / "ws" / "up");
    root = ::open((base / "ws").c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    ASSERT_GE(root, 0);
  }
  void TearDown() override {
    ::close(root);
    fs::remove_all(base);
  }
  static void spit(const fs::path& p, const std::string& s) {
    std::ofstream(p, std::ios::binary) << s;
  }
  static std::string slurp(const fs::path& p) {
    std::ifstream in(p, std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  }
  fs::path base;
  int root = -1;
};

TEST(FilesEtag, IsAQuotedSha256OfTheContent) {
  EXPECT_EQ(files::content_etag(""),
            "\"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\"");
  EXPECT_NE(files::content_etag("a"), files::content_etag("b"));
}

TEST(FilesEtag, IfMatchIsStrong) {
  const std::string e = files::content_etag("x");
  EXPECT_TRUE(files::if_match_allows(e, e));
  EXPECT_TRUE(files::if_match_allows("\"other\", " + e, e));
  EXPECT_TRUE(files::if_match_allows("*", e));
  EXPECT_FALSE(files::if_match_allows("W/" + e, e));
  EXPECT_FALSE(files::if_match_allows("\"other\"", e));
  EXPECT_FALSE(files::if_match_allows("*", std::nullopt));  // missing: nothing matches
  EXPECT_FALSE(files::if_match_allows(e, std::nullopt));
  EXPECT_FALSE(files::if_match_allows("", e));
  EXPECT_FALSE(files::if_match_allows("\"\"", std::string("")));  // a folder has no ETag
}

TEST(BeneathPath, FilesApiRulesAllowDotfilesOnly) {
  std::string rel;
  EXPECT_EQ(check_relative_path(".gitignore", true, rel), PathRefusal::none);
  EXPECT_EQ(rel, ".gitignore");
  EXPECT_EQ(check_relative_path(".gitignore", false, rel), PathRefusal::hidden);
  EXPECT_EQ(check_relative_path("a/../b", true, rel), PathRefusal::dot_dot);
  EXPECT_EQ(check_relative_path(std::string_view("a\0b", 3), true, rel), PathRefusal::bad_bytes);
  EXPECT_EQ(check_relative_path("a\\b", true, rel), PathRefusal::bad_bytes);
  EXPECT_EQ(check_relative_path("./a//b/", true, rel), PathRefusal::none);
  EXPECT_EQ(rel, "a/b");
}

TEST_F(FilesTest, ReadsFilesAndListsFolders) {
  auto f = files::read(root, "a.txt", 100, "k");
  ASSERT_TRUE(f.has_value()) << f.error().message;
  EXPECT_EQ(f.value().body, "hello");
  EXPECT_EQ(f.value().etag, files::content_etag("hello"));
  auto d = files::read(root, "", 100, "k");
  ASSERT_TRUE(d.has_value());
  ASSERT_TRUE(d.value().dir);
  std::vector<std::string> names;
  for (const auto& e : d.value().entries) names.push_back(e.name + ":" + e.type);
  EXPECT_EQ(names,
            (std::vector<std::string>{"a.txt:file", "link.txt:symlink", "sub:dir", "up:symlink"}));
  EXPECT_EQ(d.value().entries[0].etag, files::content_etag("hello"));
  auto big = files::read(root, "a.txt", 4, "gateway.max_file_body");
  ASSERT_TRUE(big.has_error());
  EXPECT_EQ(big.error().code, Errc::too_large);
  EXPECT_NE(big.error().message.find("gateway.max_file_body"), std::string::npos);
  EXPECT_EQ(files::read(root, "nope", 100, "k").error().code, Errc::not_found);
}

TEST_F(FilesTest, SymlinksAreNeverFollowed) {
  EXPECT_EQ(files::read(root, "link.txt", 100, "k").error().code, Errc::forbidden);
  EXPECT_EQ(files::read(root, "up/outside.txt", 100, "k").error().code, Errc::forbidden);
  std::string cur;
  auto w = files::write(root, "link.txt", "pwned", {}, {}, &cur);
  ASSERT_TRUE(w.has_error());
  EXPECT_EQ(w.error().code, Errc::forbidden);
  w = files::write(root, "up/outside.txt", "pwned", {}, {}, &cur);
  ASSERT_TRUE(w.has_error());
  EXPECT_EQ(w.error().code, Errc::forbidden);
  w = files::write(root, "up/new/x.txt", "pwned", {}, {}, &cur);
  EXPECT_EQ(w.error().code, Errc::forbidden);
  EXPECT_FALSE(fs::exists(base / "new"));
  EXPECT_EQ(files::remove(root, "link.txt", {}, {}, &cur).error().code, Errc::forbidden);
  EXPECT_EQ(files::remove(root, "up/outside.txt", {}, {}, &cur).error().code, Errc::forbidden);
  EXPECT_EQ(slurp(base / "outside.txt"), "outside");
  EXPECT_TRUE(fs::is_symlink(base / "ws" / "link.txt"));
}

TEST_F(FilesTest, WritesAtomicallyWithPreconditions) {
  std::string cur;
  auto w = files::write(root, "x/y/z.txt", "one", {}, {}, &cur);
  ASSERT_TRUE(w.has_value()) << w.error().message;
  EXPECT_TRUE(w.value().created);
  EXPECT_EQ(slurp(base / "ws" / "x" / "y" / "z.txt"), "one");
  files::Conditions stale;
  stale.if_match = files::content_etag("zero");
  w = files::write(root, "x/y/z.txt", "two", stale, {}, &cur);
  ASSERT_TRUE(w.has_error());
  EXPECT_EQ(w.error().code, Errc::precondition_failed);
  EXPECT_EQ(cur, files::content_etag("one"));
  files::Conditions fresh;
  fresh.if_match = files::content_etag("one");
  w = files::write(root, "x/y/z.txt", "two", fresh, {}, &cur);
  ASSERT_TRUE(w.has_value());
  EXPECT_FALSE(w.value().created);
  files::Conditions create;
  create.if_none_match_any = true;
  EXPECT_EQ(files::write(root, "x/y/z.txt", "3", create, {}, &cur).error().code,
            Errc::precondition_failed);
  EXPECT_EQ(files::write(root, "x", "3", {}, {}, &cur).error().code, Errc::conflict);
  EXPECT_EQ(files::write(root, "a.txt/b", "3", {}, {}, &cur).error().code, Errc::conflict);
  EXPECT_EQ(slurp(base / "ws" / "x" / "y" / "z.txt"), "two");
  // A stale If-Match on a missing file creates nothing, not even its folders.
  EXPECT_EQ(files::write(root, "m/n.txt", "3", fresh, {}, &cur).error().code,
            Errc::precondition_failed);
  EXPECT_FALSE(fs::exists(base / "ws" / "m"));
  // No temporary file is left anywhere.
  for (const auto& e : fs::recursive_directory_iterator(base / "ws")) {
    EXPECT_EQ(e.path().filename().string().find(".ck-write-"), std::string::npos) << e.path();
  }
}

TEST_F(FilesTest, AFailedCommitChangesNothing) {
  std::string cur;
  auto refuse = []() -> Result<void> { return fail(Errc::unavailable, "the bucket said no"); };
  auto w = files::write(root, "a.txt", "changed", {}, refuse, &cur);
  ASSERT_TRUE(w.has_error());
  EXPECT_EQ(w.error().message, "the bucket said no");
  EXPECT_EQ(slurp(base / "ws" / "a.txt"), "hello");
  for (const auto& e : fs::directory_iterator(base / "ws")) {
    EXPECT_EQ(e.path().filename().string().find(".ck-write-"), std::string::npos) << e.path();
  }
  auto refuse_rm = [](bool) -> Result<void> { return fail(Errc::unavailable, "no"); };
  EXPECT_TRUE(files::remove(root, "a.txt", {}, refuse_rm, &cur).has_error());
  EXPECT_TRUE(fs::exists(base / "ws" / "a.txt"));
}

TEST_F(FilesTest, RemovesFilesAndEmptyFolders) {
  std::string cur;
  EXPECT_EQ(files::remove(root, "nope", {}, {}, &cur).error().code, Errc::not_found);
  EXPECT_EQ(files::remove(root, "nope/deeper", {}, {}, &cur).error().code, Errc::not_found);
  spit(base / "ws" / "sub" / "f", "f");
  EXPECT_EQ(files::remove(root, "sub", {}, {}, &cur).error().code, Errc::conflict);
  files::Conditions stale;
  stale.if_match = files::content_etag("g");
  EXPECT_EQ(files::remove(root, "sub/f", stale, {}, &cur).error().code, Errc::precondition_failed);
  EXPECT_TRUE(files::remove(root, "sub/f", {}, {}, &cur).has_value());
  bool told_dir = false;
  auto commit = [&](bool dir) -> Result<void> {
    told_dir = dir;
    return outcome::success();
  };
  EXPECT_TRUE(files::remove(root, "sub", {}, commit, &cur).has_value());
  EXPECT_TRUE(told_dir);
  EXPECT_FALSE(fs::exists(base / "ws" / "sub"));
  EXPECT_EQ(files::remove(root, "", {}, {}, &cur).error().code, Errc::invalid_argument);
}

}  // namespace
}  // namespace ck

namespace ck {
namespace {

TEST_F(FilesTest, AReplaceKeepsTheOwnerAndMode) {
  if (::geteuid() != 0) GTEST_SKIP() << "only root can give files away";
  ASSERT_EQ(::chown((base / "ws" / "a.txt").c_str(), 12345, 23456), 0);
  ASSERT_EQ(::chmod((base / "ws" / "a.txt").c_str(), 0600), 0);
  std::string cur;
  ASSERT_TRUE(files::write(root, "a.txt", "new", {}, {}, &cur).has_value());
  struct stat st {};
  ASSERT_EQ(::stat((base / "ws" / "a.txt").c_str(), &st), 0);
  EXPECT_EQ(st.st_uid, 12345u);
  EXPECT_EQ(st.st_gid, 23456u);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  // A new file gets its folder's owner.
  ASSERT_EQ(::chown((base / "ws" / "sub").c_str(), 12345, 23456), 0);
  ASSERT_TRUE(files::write(root, "sub/new.txt", "n", {}, {}, &cur).has_value());
  ASSERT_EQ(::stat((base / "ws" / "sub" / "new.txt").c_str(), &st), 0);
  EXPECT_EQ(st.st_uid, 12345u);
}

}  // namespace
}  // namespace ck
