// storage/deploy.h: the tar a deploy sends and what the server makes of it. The attacks come
// first (paths leaving the folder, .git, links and devices, duplicates, sizes over the limits,
// a lying manifest, a file changed on the server since the listing), then the round trip from a
// folder through build_package() and read_package() to a plan.

#include "storage/deploy.h"

#include <archive.h>
#include <archive_entry.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "storage/sync.h"

namespace ck::deploy {
namespace {

namespace fs = std::filesystem;

struct Member {
  Member(std::string n, std::string d, unsigned t = AE_IFREG, std::string l = "", int p = 0644)
      : name(std::move(n)), data(std::move(d)), type(t), link(std::move(l)), perm(p) {}
  std::string name;
  std::string data;
  unsigned type;
  std::string link;  // symlink target or hard link source
  int perm;
};

// A tar with exactly these members, as an attacker would make it.
std::string tar_of(const std::vector<Member>& members, bool gzip = false) {
  std::string out;
  archive* a = archive_write_new();
  archive_write_set_format_pax_restricted(a);
  if (gzip) archive_write_add_filter_gzip(a);
  archive_write_set_bytes_in_last_block(a, 1);
  archive_write_open(a, &out, nullptr,
                     [](archive*, void* self, const void* buf, size_t n) -> la_ssize_t {
                       static_cast<std::string*>(self)->append(static_cast<const char*>(buf), n);
                       return static_cast<la_ssize_t>(n);
                     },
                     nullptr);
  for (const auto& m : members) {
    archive_entry* e = archive_entry_new();
    archive_entry_set_pathname(e, m.name.c_str());
    archive_entry_set_filetype(e, m.type);
    archive_entry_set_perm(e, m.perm);
    if (m.type == AE_IFLNK) archive_entry_set_symlink(e, m.link.c_str());
    if (m.type == AE_IFREG && !m.link.empty()) archive_entry_set_hardlink(e, m.link.c_str());
    archive_entry_set_size(e, m.type == AE_IFREG && m.link.empty() ? static_cast<la_int64_t>(m.data.size()) : 0);
    archive_write_header(a, e);
    if (!m.data.empty() && m.link.empty()) archive_write_data(a, m.data.data(), m.data.size());
    archive_entry_free(e);
  }
  archive_write_close(a);
  archive_write_free(a);
  return out;
}

Entry entry(std::string path, std::string_view data, bool exec = false) {
  return Entry{std::move(path), data.size(), sync::md5_hex(data), exec};
}

std::string manifest_of(const std::vector<Entry>& files) { return list_json(files); }

Errc refusal(const std::string& body, const Limits& limits = {}) {
  auto r = read_package(body, limits);
  EXPECT_TRUE(r.has_error()) << "accepted a tar it must refuse";
  return r.has_error() ? r.error().code : Errc::internal;
}

TEST(DeployPackage, RefusesPathsThatLeaveTheFolder) {
  for (std::string bad : {"../evil", "a/../../evil", "/etc/passwd", "a//b", "a/./b", "a\\b", "./../x"}) {
    EXPECT_EQ(refusal(tar_of({{bad, "x"}})), Errc::invalid_argument) << bad;
  }
  // A folder member that leaves the folder is refused as well, not only files.
  EXPECT_EQ(refusal(tar_of({{"../up/", "", AE_IFDIR}})), Errc::invalid_argument);
}

TEST(DeployPackage, RefusesGitInternalsAndTheReservedName) {
  EXPECT_EQ(refusal(tar_of({{".git/hooks/post-checkout", "#!/bin/sh\nid\n"}})), Errc::invalid_argument);
  EXPECT_EQ(refusal(tar_of({{"sub/.GIT/config", "x"}})), Errc::invalid_argument);
  EXPECT_EQ(refusal(tar_of({{"a.txt", "x"}, {std::string(kManifestName), manifest_of({})}})),
            Errc::invalid_argument);  // a manifest must come first
  auto r = read_package(tar_of({{"line\nbreak", "x"}}), {});
  ASSERT_TRUE(r.has_error());
  EXPECT_NE(r.error().message.find("control character"), std::string::npos) << r.error().message;
}

TEST(DeployPackage, RefusesLinksDevicesAndDuplicates) {
  auto sym = read_package(tar_of({{"link", "", AE_IFLNK, "/etc/shadow"}}), {});
  ASSERT_TRUE(sym.has_error());
  EXPECT_NE(sym.error().message.find("symlink"), std::string::npos) << sym.error().message;
  EXPECT_EQ(refusal(tar_of({{"a", "x"}, {"b", "", AE_IFREG, "a"}})), Errc::invalid_argument);
  EXPECT_EQ(refusal(tar_of({{"dev", "", AE_IFCHR}})), Errc::invalid_argument);
  EXPECT_EQ(refusal(tar_of({{"fifo", "", AE_IFIFO}})), Errc::invalid_argument);
  EXPECT_EQ(refusal(tar_of({{"a", "one"}, {"./a", "two"}})), Errc::invalid_argument);
}

TEST(DeployPackage, LimitsBytesFilesAndPaths) {
  Limits small;
  small.max_bytes = 100;
  small.max_files = 3;
  small.max_path = 20;
  EXPECT_EQ(refusal(tar_of({{"a", std::string(60, 'x')}, {"b", std::string(60, 'y')}}), small), Errc::too_large);
  EXPECT_EQ(refusal(tar_of({{"a", "1"}, {"b", "2"}, {"c", "3"}, {"d", "4"}}), small), Errc::too_large);
  EXPECT_EQ(refusal(tar_of({{std::string(30, 'p'), "1"}}), small), Errc::too_large);
  // Compression does not get around the limit: 10 MiB of zeros are a few KiB gzipped.
  EXPECT_EQ(refusal(tar_of({{"zeros", std::string(10u << 20, '\0')}}, true), small), Errc::too_large);
  EXPECT_EQ(refusal("this is not a tar at all, just some text that goes on for a while......"
                    "................................................................................"
                    "................................................................................"
                    "................................................................................"
                    "................................................................................"
                    "................................................................................"
                    "................................................................................"),
            Errc::invalid_argument);
  auto cut = tar_of({{"a", std::string(5000, 'x')}});
  EXPECT_EQ(refusal(cut.substr(0, 1200)), Errc::invalid_argument);
}

TEST(DeployPackage, RefusesAMalformedManifest) {
  for (std::string bad : {"[]", "{\"version\": 2, \"files\": []}", "{\"version\": 1}",
                          "{\"version\": 1, \"files\": [[\"a\", 1, \"nothex\", false]]}",
                          "{\"version\": 1, \"files\": [[\"../a\", 1, \"0123456789abcdef0123456789abcdef\", false]]}",
                          "{\"version\": 1, \"files\": [[\"a\", -1, \"0123456789abcdef0123456789abcdef\", false]]}",
                          "not json"}) {
    EXPECT_EQ(refusal(tar_of({{std::string(kManifestName), bad}})), Errc::invalid_argument) << bad;
  }
}

TEST(DeployPlan, AManifestThatLiesIsRefused) {
  std::vector<Entry> current = {entry("a.txt", "old")};
  auto pkg = read_package(tar_of({{std::string(kManifestName), manifest_of({entry("a.txt", "claimed")})},
                                  {"a.txt", "something else"}}),
                          {});
  ASSERT_TRUE(pkg.has_value()) << pkg.error().message;
  auto p = plan(pkg.value(), current);
  ASSERT_TRUE(p.has_error());
  EXPECT_EQ(p.error().code, Errc::invalid_argument);

  // A file in the tar the manifest does not name.
  pkg = read_package(tar_of({{std::string(kManifestName), manifest_of({})}, {"extra", "x"}}), {});
  ASSERT_TRUE(pkg.has_value());
  EXPECT_TRUE(plan(pkg.value(), current).has_error());
}

TEST(DeployPlan, AFileChangedOnTheServerSinceTheListingIsAConflict) {
  std::vector<Entry> current = {entry("a.txt", "edited on the server"), entry("b.txt", "b")};
  auto pkg = read_package(
      tar_of({{std::string(kManifestName), manifest_of({entry("a.txt", "what the client saw"), entry("b.txt", "b")})}}),
      {});
  ASSERT_TRUE(pkg.has_value());
  auto p = plan(pkg.value(), current);
  ASSERT_TRUE(p.has_error());
  EXPECT_EQ(p.error().code, Errc::conflict);
  EXPECT_NE(p.error().message.find("a.txt"), std::string::npos);
}

TEST(DeployPlan, AFileAndAFolderOfTheSameNameAreRefused) {
  auto pkg = read_package(tar_of({{"a", "file"}, {"a/b", "inside"}}), {});
  ASSERT_TRUE(pkg.has_value());
  EXPECT_EQ(plan(pkg.value(), {}).error().code, Errc::invalid_argument);
}

TEST(DeployPlan, IncrementalWritesOnlyWhatChangedAndDeletesWhatIsGone) {
  std::vector<Entry> current = {entry("keep.txt", "same"), entry("edit.txt", "v1"), entry("gone.txt", "x"),
                                entry("run.sh", "#!/bin/sh\n")};
  std::vector<Entry> manifest = {entry("keep.txt", "same"), entry("edit.txt", "v2"), entry("new/file.txt", "n"),
                                 entry("run.sh", "#!/bin/sh\n", true)};
  auto pkg = read_package(tar_of({{std::string(kManifestName), manifest_of(manifest)},
                                  {"edit.txt", "v2"},
                                  {"new/file.txt", "n"},
                                  {"run.sh", "#!/bin/sh\n", AE_IFREG, "", 0755}}),
                          {});
  ASSERT_TRUE(pkg.has_value()) << pkg.error().message;
  auto p = plan(pkg.value(), current);
  ASSERT_TRUE(p.has_value()) << p.error().message;
  std::vector<std::string> written;
  for (auto i : p.value().write) written.push_back(pkg.value().files[i].path);
  EXPECT_EQ(written, (std::vector<std::string>{"edit.txt", "new/file.txt", "run.sh"}));  // run.sh: now executable
  EXPECT_EQ(p.value().remove, (std::vector<std::string>{"gone.txt"}));
  EXPECT_EQ(p.value().unchanged, 1u);
}

TEST(DeployPlan, ATarWithoutManifestIsTheWholeSource) {
  std::vector<Entry> current = {entry("index.html", "old"), entry("style.css", "same")};
  auto pkg = read_package(tar_of({{"./", "", AE_IFDIR}, {"./index.html", "new"}, {"./style.css", "same"}}, true), {});
  ASSERT_TRUE(pkg.has_value()) << pkg.error().message;
  auto p = plan(pkg.value(), current);
  ASSERT_TRUE(p.has_value());
  ASSERT_EQ(p.value().write.size(), 1u);
  EXPECT_EQ(pkg.value().files[p.value().write[0]].path, "index.html");
  EXPECT_TRUE(p.value().remove.empty());
  EXPECT_EQ(p.value().unchanged, 1u);
  // An empty body is an empty source: everything goes.
  auto empty = read_package("", {});
  ASSERT_TRUE(empty.has_value());
  EXPECT_EQ(plan(empty.value(), current).value().remove.size(), 2u);
}

class DeployFolder : public ::testing::Test {
 protected:
  void SetUp() override {
    dir = fs::temp_directory_path() / ("ck-deploy-test-" + std::to_string(::getpid()) + "-" +
                                       ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir);
    fs::create_directories(dir / "src");
    fs::create_directories(dir / "node_modules" / "dep");
    spit("package.json", "{\"name\": \"app\"}");
    spit("src/index.js", "console.log('hi')\n");
    spit("src/é ünïcode.txt", "names are UTF-8");
    spit("start.sh", "#!/bin/sh\nexec node src/index.js\n");
    fs::permissions(dir / "start.sh", fs::perms::owner_exec, fs::perm_options::add);
    spit("node_modules/dep/index.js", "ignored");
    spit(".gitignore", "secret.env\n");
    spit("secret.env", "TOKEN=1");
  }
  void TearDown() override { fs::remove_all(dir); }
  void spit(const std::string& rel, const std::string& text) { std::ofstream(dir / rel) << text; }
  fs::path dir;
};

TEST_F(DeployFolder, DigestFollowsTheIgnoreRulesAndTheIndex) {
  auto d = digest_folder(dir, {}, dir.string() + ".index");
  ASSERT_TRUE(d.has_value()) << d.error().message;
  std::vector<std::string> paths;
  for (const auto& e : d.value().files) paths.push_back(e.path);
  EXPECT_EQ(paths, (std::vector<std::string>{".gitignore", "package.json", "src/index.js", "src/é ünïcode.txt",
                                             "start.sh"}));
  auto start = std::find_if(d.value().files.begin(), d.value().files.end(), [](auto& e) { return e.path == "start.sh"; });
  EXPECT_TRUE(start->exec);
  EXPECT_EQ(start->md5, sync::md5_hex("#!/bin/sh\nexec node src/index.js\n"));
  // Second time from the index: the same answer.
  auto again = digest_folder(dir, {}, dir.string() + ".index");
  ASSERT_TRUE(again.has_value());
  EXPECT_EQ(again.value().files, d.value().files);
  fs::remove(dir.string() + ".index");
}

TEST_F(DeployFolder, RoundTripSendsOnlyWhatDiffers) {
  auto local = digest_folder(dir, {}, "").value().files;
  std::vector<Entry> remote = local;
  remote[2].md5 = sync::md5_hex("an older index.js");  // src/index.js differs
  remote.pop_back();                                    // start.sh is missing there
  remote.push_back(entry("old.txt", "to be deleted"));
  auto send = differing(local, remote);
  EXPECT_EQ(send, (std::vector<std::string>{"src/index.js", "start.sh"}));
  auto manifest = local;
  auto tar = build_package(dir, manifest, send);
  ASSERT_TRUE(tar.has_value()) << tar.error().message;
  auto pkg = read_package(tar.value(), {});
  ASSERT_TRUE(pkg.has_value()) << pkg.error().message;
  EXPECT_TRUE(pkg.value().has_manifest);
  EXPECT_EQ(pkg.value().manifest, local);
  ASSERT_EQ(pkg.value().files.size(), 2u);
  EXPECT_TRUE(pkg.value().files[1].exec);
  auto p = plan(pkg.value(), remote);
  ASSERT_TRUE(p.has_value()) << p.error().message;
  EXPECT_EQ(p.value().write.size(), 2u);
  EXPECT_EQ(p.value().remove, (std::vector<std::string>{"old.txt"}));
  EXPECT_EQ(p.value().unchanged, 3u);
}

}  // namespace
}  // namespace ck::deploy
