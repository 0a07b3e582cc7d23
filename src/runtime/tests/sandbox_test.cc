// The process runtime sandbox's pure parts (uid range and allocation, the decision to run or
// refuse, the /etc files) and the daemon's no-symlink file helpers on a temporary folder.

#include "runtime/process/sandbox.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>

#include "runtime/process/confine.h"

namespace ck {
namespace {
namespace fs = std::filesystem;

TEST(UidRange, Parses) {
  auto r = parse_uid_range("200000-265535");
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r.value().first, 200000u);
  EXPECT_EQ(r.value().last, 265535u);
  for (const char* bad :
       {"", "5", "0-100", "300-200000", "2000-1000", "a-b", "1000-", "-1000", "1000-99999999999"}) {
    EXPECT_TRUE(parse_uid_range(bad).has_error()) << bad;
  }
}

TEST(PickUid, StableUniqueAndBounded) {
  UidRange range{1000, 1003};
  EXPECT_EQ(pick_uid(range, std::nullopt, {}), 1000u);
  EXPECT_EQ(pick_uid(range, std::nullopt, {1000, 1001}), 1002u);
  EXPECT_EQ(pick_uid(range, std::nullopt, {1001}), 1000u);
  // Its own uid is kept across restarts...
  EXPECT_EQ(pick_uid(range, 1002u, {1000}), 1002u);
  // ...unless another workspace has it or it left the range.
  EXPECT_EQ(pick_uid(range, 1000u, {1000}), 1001u);
  EXPECT_EQ(pick_uid(range, 5000u, {}), 1000u);
  EXPECT_EQ(pick_uid(range, std::nullopt, {1000, 1001, 1002, 1003}), std::nullopt);
  EXPECT_EQ(pick_uid(range, std::nullopt, {999, 1000, 1001, 1002, 1004}), 1003u);
}

TEST(AssignWorkspaceUid, PersistedAndNeverShared) {
  fs::path data = fs::temp_directory_path() / ("ck-sandbox-test-" + std::to_string(::getpid()));
  fs::remove_all(data);
  UidRange range{300000, 300001};
  auto a = assign_workspace_uid(data, "a", range);
  auto b = assign_workspace_uid(data, "b", range);
  ASSERT_TRUE(a.has_value() && b.has_value());
  EXPECT_NE(a.value(), b.value());
  EXPECT_EQ(assign_workspace_uid(data, "a", range).value(), a.value());
  EXPECT_EQ(assign_workspace_uid(data, "b", range).value(), b.value());
  auto c = assign_workspace_uid(data, "c", range);
  ASSERT_TRUE(c.has_error());
  EXPECT_NE(c.error().message.find("runtime.uid_range"), std::string::npos);
  fs::remove_all(data);
}

TEST(DecideSandbox, FullWhenEverythingIsThere) {
  SandboxProbe p{true, true, true, "", ""};
  auto plan = decide_sandbox(p, false);
  ASSERT_TRUE(plan.has_value());
  EXPECT_TRUE(plan.value().own_uid && plan.value().namespaces && plan.value().seccomp &&
              plan.value().drop_caps && plan.value().no_new_privs && plan.value().rlimits);
  EXPECT_TRUE(plan.value().missing.empty());
  EXPECT_EQ(plan.value().describe({200000, 265535}).find("WEAK"), std::string::npos);
}

TEST(DecideSandbox, RefusesAMissingLayerUnlessAllowed) {
  SandboxProbe not_root{false, false, true, "", ""};
  auto refused = decide_sandbox(not_root, false);
  ASSERT_TRUE(refused.has_error());
  EXPECT_EQ(refused.error().code, Errc::forbidden);
  EXPECT_NE(refused.error().message.find("not root"), std::string::npos);
  EXPECT_NE(refused.error().message.find("runtime.allow_weak_sandbox"), std::string::npos);

  SandboxProbe no_seccomp{true, true, false, "", "seccomp filters are not available"};
  auto refused2 = decide_sandbox(no_seccomp, false);
  ASSERT_TRUE(refused2.has_error());
  EXPECT_NE(refused2.error().message.find("seccomp"), std::string::npos);

  auto weak = decide_sandbox(not_root, true);
  ASSERT_TRUE(weak.has_value());
  EXPECT_FALSE(weak.value().own_uid);
  EXPECT_FALSE(weak.value().namespaces);
  EXPECT_TRUE(weak.value().seccomp);
  EXPECT_NE(weak.value().describe({1000, 2000}).find("WEAK"), std::string::npos);
}

TEST(SandboxEtc, OnlyTheWorkspaceUser) {
  std::string passwd = sandbox_passwd(200007, 200007, "/home/app");
  EXPECT_NE(passwd.find("app:x:200007:200007:workspace app:/home/app:/bin/sh\n"),
            std::string::npos);
  EXPECT_NE(passwd.find("root:x:0:0:"), std::string::npos);
  EXPECT_EQ(passwd.find(":$"), std::string::npos);  // never a hash
  EXPECT_NE(sandbox_group(200007).find("app:x:200007:\n"), std::string::npos);
  EXPECT_EQ(sandbox_hostname("my_site"), "ck-my-site");
  EXPECT_EQ(sandbox_hostname(std::string(100, 'a')).size(), 63u);
}

TEST(ConfineEnv, RoundTripsAndIsRemoved) {
  ConfineSpec s;
  s.own_uid = s.namespaces = s.seccomp = s.rlimits = s.no_new_privs = s.drop_caps = true;
  s.uid = 200001;
  s.gid = 200001;
  s.app_dir = "/data/run/x/app";
  s.home_dir = "/data/run/x/home";
  s.root_dir = "/data/run/x/sandbox-root";
  s.hostname = "ck-x";
  for (const auto& kv : confine_env(s)) {
    auto eq = kv.find('=');
    ::setenv(kv.substr(0, eq).c_str(), kv.substr(eq + 1).c_str(), 1);
  }
  ConfineSpec back = confine_from_env();
  EXPECT_TRUE(back.own_uid && back.namespaces && back.seccomp && back.rlimits && back.drop_caps);
  EXPECT_EQ(back.uid, 200001u);
  EXPECT_EQ(back.app_dir, s.app_dir);
  EXPECT_EQ(back.hostname, "ck-x");
  EXPECT_EQ(std::getenv("CK_INIT_UID"), nullptr);
  EXPECT_EQ(std::getenv("CK_INIT_SECCOMP"), nullptr);
}

TEST(SeccompList, RefusesWhatTheIssueNames) {
  const auto& names = seccomp_refused_syscalls();
  for (const char* n : {"mount",
                        "umount2",
                        "pivot_root",
                        "ptrace",
                        "process_vm_readv",
                        "process_vm_writev",
                        "kexec_load",
                        "kexec_file_load",
                        "init_module",
                        "finit_module",
                        "delete_module",
                        "add_key",
                        "request_key",
                        "keyctl",
                        "bpf",
                        "perf_event_open",
                        "swapon",
                        "swapoff",
                        "reboot",
                        "acct",
                        "open_by_handle_at",
                        "setns",
                        "unshare"}) {
    EXPECT_NE(std::find(names.begin(), names.end(), n), names.end()) << n;
  }
}

class FilesBeneath : public ::testing::Test {
 protected:
  void SetUp() override {
    base_ = fs::temp_directory_path() / ("ck-beneath-" + std::to_string(::getpid()));
    fs::remove_all(base_);
    fs::create_directories(base_ / "src");
    fs::create_directories(base_ / "dst");
    fs::create_directories(base_ / "outside");
    std::ofstream(base_ / "outside" / "secret") << "SECRET";
  }
  void TearDown() override { fs::remove_all(base_); }
  std::string read(const fs::path& p) {
    std::ifstream in(p);
    return std::string(std::istreambuf_iterator<char>(in), {});
  }
  fs::path base_;
};

TEST_F(FilesBeneath, CopiesFilesAndLinksAsLinks) {
  fs::create_directories(base_ / "src" / "a");
  std::ofstream(base_ / "src" / "a" / "f.txt") << "hello";
  fs::create_symlink(base_ / "outside" / "secret", base_ / "src" / "leak");
  ASSERT_TRUE(update_file_beneath(base_ / "src", base_ / "dst", "a/f.txt", {}, {}).has_value());
  EXPECT_EQ(read(base_ / "dst" / "a" / "f.txt"), "hello");
  ASSERT_TRUE(update_file_beneath(base_ / "src", base_ / "dst", "leak", {}, {}).has_value());
  EXPECT_TRUE(fs::is_symlink(base_ / "dst" / "leak"));
  // A missing source removes the copy.
  fs::remove(base_ / "src" / "a" / "f.txt");
  ASSERT_TRUE(update_file_beneath(base_ / "src", base_ / "dst", "a/f.txt", {}, {}).has_value());
  EXPECT_FALSE(fs::exists(base_ / "dst" / "a" / "f.txt"));
}

TEST_F(FilesBeneath, NeverThroughASymlinkOnEitherSide) {
  // Source: a folder on the way is a link out.
  fs::create_directory_symlink(base_ / "outside", base_ / "src" / "out");
  EXPECT_TRUE(update_file_beneath(base_ / "src", base_ / "dst", "out/secret", {}, {}).has_error());
  EXPECT_FALSE(fs::exists(base_ / "dst" / "out"));
  // Destination: the running app swapped a folder for a link out; the write must not land.
  std::ofstream(base_ / "src" / "x") << "payload";
  fs::create_directories(base_ / "src" / "d");
  std::ofstream(base_ / "src" / "d" / "secret") << "payload";
  fs::create_directory_symlink(base_ / "outside", base_ / "dst" / "d");
  EXPECT_TRUE(update_file_beneath(base_ / "src", base_ / "dst", "d/secret", {}, {}).has_error());
  EXPECT_EQ(read(base_ / "outside" / "secret"), "SECRET");
  // A link at the destination's name is replaced, not written through.
  fs::create_symlink(base_ / "outside" / "secret", base_ / "dst" / "x");
  ASSERT_TRUE(update_file_beneath(base_ / "src", base_ / "dst", "x", {}, {}).has_value());
  EXPECT_EQ(read(base_ / "outside" / "secret"), "SECRET");
  EXPECT_FALSE(fs::is_symlink(base_ / "dst" / "x"));
  EXPECT_EQ(read(base_ / "dst" / "x"), "payload");
  for (const char* bad : {"../outside/secret", "/etc/passwd", "a/../../x", ""}) {
    EXPECT_TRUE(update_file_beneath(base_ / "src", base_ / "dst", bad, {}, {}).has_error()) << bad;
  }
}

TEST_F(FilesBeneath, WriteAndChownNeverFollow) {
  fs::create_symlink(base_ / "outside" / "secret", base_ / "dst" / "ready");
  ASSERT_TRUE(write_file_nofollow(base_ / "dst" / "ready", "ready").has_value());
  EXPECT_EQ(read(base_ / "outside" / "secret"), "SECRET");
  EXPECT_EQ(read(base_ / "dst" / "ready"), "ready\n");
  if (::geteuid() != 0) GTEST_SKIP() << "chown needs root";
  fs::create_symlink(base_ / "outside", base_ / "dst" / "link");
  ASSERT_TRUE(chown_tree(base_ / "dst", 300123, 300123).has_value());
  struct stat st {};
  ASSERT_EQ(::stat((base_ / "outside" / "secret").c_str(), &st), 0);
  EXPECT_EQ(st.st_uid, 0u);
  ASSERT_EQ(::lstat((base_ / "dst" / "link").c_str(), &st), 0);
  EXPECT_EQ(st.st_uid, 300123u);
  ASSERT_EQ(::stat((base_ / "dst" / "ready").c_str(), &st), 0);
  EXPECT_EQ(st.st_uid, 300123u);
}

TEST_F(FilesBeneath, LinkTreeLinksFilesAndNeverFollows) {
  // Installed dependencies of a running (hostile) app, moving to its new version's copy.
  fs::create_directories(base_ / "src" / "pkg" / "lib");
  std::ofstream(base_ / "src" / "pkg" / "lib" / "index.js") << "module.exports = 1;";
  fs::create_symlink("lib/index.js", base_ / "src" / "pkg" / "main.js");
  fs::create_directory_symlink(base_ / "outside", base_ / "src" / "out");  // a folder link out
  fs::create_symlink(base_ / "outside" / "secret", base_ / "src" / "leak");
  ASSERT_TRUE(link_tree(base_ / "src", base_ / "copy", std::nullopt).has_value());
  struct stat a {}, b {};
  ASSERT_EQ(::stat((base_ / "src" / "pkg" / "lib" / "index.js").c_str(), &a), 0);
  ASSERT_EQ(::stat((base_ / "copy" / "pkg" / "lib" / "index.js").c_str(), &b), 0);
  EXPECT_EQ(a.st_ino, b.st_ino) << "a hard link, not a copy";
  EXPECT_TRUE(fs::is_directory(fs::symlink_status(base_ / "copy" / "pkg")));
  EXPECT_EQ(fs::read_symlink(base_ / "copy" / "pkg" / "main.js"), "lib/index.js");
  // Links stay links: nothing outside is copied or linked in.
  EXPECT_TRUE(fs::is_symlink(base_ / "copy" / "out"));
  EXPECT_TRUE(fs::is_symlink(base_ / "copy" / "leak"));
  EXPECT_EQ(read(base_ / "outside" / "secret"), "SECRET");
  // The destination must be new, and a source that is a link is refused.
  EXPECT_TRUE(link_tree(base_ / "src", base_ / "copy", std::nullopt).has_error());
  EXPECT_TRUE(link_tree(base_ / "src" / "out", base_ / "copy2", std::nullopt).has_error());
  EXPECT_FALSE(fs::exists(base_ / "copy2" / "secret"));
  if (::geteuid() != 0) GTEST_SKIP() << "chown needs root";
  // Files of another owner (not what the workspace's install wrote) are left out.
  ASSERT_EQ(::chown((base_ / "src" / "pkg" / "lib" / "index.js").c_str(), 300123, 300123), 0);
  std::ofstream(base_ / "src" / "pkg" / "root-owned") << "x";
  ASSERT_TRUE(link_tree(base_ / "src", base_ / "copy3", uid_t{300123}).has_value());
  EXPECT_TRUE(fs::exists(base_ / "copy3" / "pkg" / "lib" / "index.js"));
  EXPECT_FALSE(fs::exists(base_ / "copy3" / "pkg" / "root-owned"));
}

}  // namespace
}  // namespace ck
