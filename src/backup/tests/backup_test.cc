// The backup module against real s3rver instances (storage/tests/s3rver_fixture.h): parallel
// destinations, a destination that is down, incremental cost, restore modes, point in time,
// encryption, tampering, a killed backup, prune and path traversal.
#include "backup/backup.h"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>
#include <thread>

#include "backup/format.h"
#include "core/files.h"
#include "core/testing/temp_dir.h"
#include "storage/tests/fault_proxy.h"
#include "storage/tests/s3rver_fixture.h"

namespace ck::backup {
namespace {

namespace fs = std::filesystem;
using s3test::server;
using test_util::TempDir;

void write(const fs::path& p, const std::string& content) {
  fs::create_directories(p.parent_path());
  std::ofstream(p, std::ios::binary) << content;
}

std::string read(const fs::path& p) { return read_file(p).value_or("<missing>"); }

int bucket_counter = 0;

// A destination on s3rver `port`, in a fresh bucket.
Destination make_dest(int port, const std::string& name, bool encrypt = false,
                      const std::string& prefix = "backups") {
  Destination d;
  d.name = name;
  d.client = s3test::client_options(port, 1);
  d.bucket = "bk-" + std::to_string(::getpid()) + "-" + std::to_string(++bucket_counter);
  d.prefix = prefix;
  d.encrypt = encrypt;
  s3::Client c(d.client);
  EXPECT_TRUE(c.create_bucket(d.bucket));
  return d;
}

std::vector<s3::ObjectInfo> objects(const Destination& d, const std::string& under = "") {
  s3::Client c(d.client);
  return c.list_objects(d.bucket, d.prefix + "/" + under).value();
}

class BackupTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!server().skip_reason.empty()) GTEST_SKIP() << server().skip_reason;
    opts.cache_dir = cache.path;
    ropts.cache_dir = cache.path;
  }
  BackupOptions opts;
  RestoreOptions ropts;
  TempDir cache{"bk-cache"};
  TempDir ws{"bk-ws"};
};

TEST_F(BackupTest, UnchangedSecondBackupWritesOneObject) {
  Destination d = make_dest(server().port, "one");
  write(ws.path / "index.html", "<h1>hi</h1>");
  write(ws.path / "src/app.js", "console.log(1)");
  write(ws.path / "node_modules/x/y.js", "ignored");
  auto first = backup_workspace(d, "site", ws.path, opts);
  ASSERT_TRUE(first) << first.error().message;
  EXPECT_EQ(first.value().files, 2u);
  EXPECT_EQ(first.value().objects_written, 3u);  // pack, index, snapshot
  auto before = objects(d).size();
  auto second = backup_workspace(d, "site", ws.path, opts);
  ASSERT_TRUE(second) << second.error().message;
  EXPECT_EQ(second.value().objects_written, 1u);
  EXPECT_EQ(second.value().added_bytes, 0u);
  EXPECT_EQ(objects(d).size(), before + 1);
  // Without the local cache (another machine), still one object: the index says what exists.
  TempDir other_cache{"bk-cache2"};
  BackupOptions o2 = opts;
  o2.cache_dir = other_cache.path;
  auto third = backup_workspace(d, "site", ws.path, o2);
  ASSERT_TRUE(third) << third.error().message;
  EXPECT_EQ(third.value().objects_written, 1u);
  auto list = list_snapshots(d, "site", ropts);
  ASSERT_TRUE(list) << list.error().message;
  EXPECT_EQ(list.value().size(), 3u);
  EXPECT_EQ(list.value()[0].files, 2u);
}

TEST_F(BackupTest, ManySmallFilesMakeFewPuts) {
  Destination direct = make_dest(server().port, "many");
  for (int i = 0; i < 5000; ++i) {
    write(ws.path / ("d" + std::to_string(i % 50)) / ("f" + std::to_string(i) + ".txt"),
          "file number " + std::to_string(i) + std::string(200, 'x'));
  }
  // Through a proxy that records every request, to count the PUTs themselves.
  s3test::FaultProxy proxy(server().port, std::vector<s3test::Rule>{});
  Destination d = direct;
  d.client = s3test::client_options(proxy.port(), 1);
  auto r = backup_workspace(d, "many", ws.path, opts);
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r.value().files, 5000u);
  EXPECT_EQ(r.value().objects_written, 3u);  // one pack (~1 MiB), the index, the snapshot
  EXPECT_EQ(proxy.requests_with({"put "}).size(), 4u);  // and ck-backup.json, once
  EXPECT_EQ(objects(direct, "packs/").size(), 1u);
  // The unchanged hourly backup: one PUT, well under a second.
  auto puts_before = proxy.requests_with({"put "}).size();
  auto requests_before = proxy.requests().size();
  auto started = std::chrono::steady_clock::now();
  auto again = backup_workspace(d, "many", ws.path, opts);
  auto took = std::chrono::steady_clock::now() - started;
  ASSERT_TRUE(again) << again.error().message;
  EXPECT_EQ(again.value().objects_written, 1u);
  EXPECT_EQ(proxy.requests_with({"put "}).size(), puts_before + 1);
  EXPECT_LE(proxy.requests().size(), requests_before + 4);  // HEAD, GET config, list, PUT
  EXPECT_LT(took, std::chrono::seconds(1));
  // A full restore brings back every file.
  TempDir to{"bk-to"};
  ropts.target = to.path;
  auto rr = restore(direct, "many", ropts);
  ASSERT_TRUE(rr) << rr.error().message;
  EXPECT_EQ(rr.value().changes.size(), 5000u);
  EXPECT_EQ(read(to.path / "d7/f4507.txt"), "file number 4507" + std::string(200, 'x'));
}

TEST_F(BackupTest, TwoDestinationsInParallelAndOneDown) {
  s3test::S3rver second;
  second.start();
  if (!second.skip_reason.empty()) GTEST_SKIP() << second.skip_reason;
  Destination a = make_dest(server().port, "a");
  Destination b = make_dest(second.port, "b");
  Destination down;
  down.name = "down";
  down.client = s3test::client_options(s3test::free_port(), 0);  // nothing listens there
  down.client.timeout = std::chrono::milliseconds(2000);
  down.bucket = "nowhere";
  down.prefix = "p";
  write(ws.path / "a.txt", "alpha");
  TempDir ws2{"bk-ws2"};
  write(ws2.path / "b.txt", "beta");
  std::vector<WorkspaceSource> sources = {{"one", ws.path}, {"two", ws2.path}};
  auto results = backup_all({a, down, b}, sources, opts);
  ASSERT_EQ(results.size(), 3u);
  EXPECT_TRUE(results[0].ok) << results[0].error;
  EXPECT_FALSE(results[1].ok);
  EXPECT_NE(results[1].error.find("down"), std::string::npos) << results[1].error;
  EXPECT_TRUE(results[2].ok) << results[2].error;
  EXPECT_EQ(results[0].reports.size(), 2u);
  EXPECT_EQ(results[2].reports.size(), 2u);
  for (const auto& dest : {a, b}) {
    auto list = list_snapshots(dest, "", ropts);
    ASSERT_TRUE(list) << list.error().message;
    EXPECT_EQ(list.value().size(), 2u);
  }
  second.stop();
}

TEST_F(BackupTest, MirrorAndMergeRestoreAndADeletedFileComesBack) {
  Destination d = make_dest(server().port, "modes");
  write(ws.path / "a.txt", "A1");
  write(ws.path / "sub/b.txt", "B1");
  ASSERT_TRUE(backup_workspace(d, "app", ws.path, opts));
  // The workspace moves on: a changed, b deleted, c new, an ignored folder appears.
  write(ws.path / "a.txt", "A2-changed");
  fs::remove(ws.path / "sub/b.txt");
  write(ws.path / "c.txt", "C");
  write(ws.path / "node_modules/m.js", "dep");
  ropts.target = ws.path;
  ropts.mode = RestoreMode::merge;
  ropts.dry_run = true;
  auto dry = restore(d, "app", ropts);
  ASSERT_TRUE(dry) << dry.error().message;
  EXPECT_EQ(dry.value().changes.size(), 2u);
  EXPECT_EQ(read(ws.path / "a.txt"), "A2-changed");  // dry run changed nothing
  ropts.dry_run = false;
  auto merged = restore(d, "app", ropts);
  ASSERT_TRUE(merged) << merged.error().message;
  EXPECT_EQ(read(ws.path / "a.txt"), "A1");
  EXPECT_EQ(read(ws.path / "sub/b.txt"), "B1");  // the deleted file came back
  EXPECT_EQ(read(ws.path / "c.txt"), "C");       // merge keeps what is newer
  ropts.mode = RestoreMode::mirror;
  auto mirrored = restore(d, "app", ropts);
  ASSERT_TRUE(mirrored) << mirrored.error().message;
  EXPECT_FALSE(fs::exists(ws.path / "c.txt"));            // mirror: exactly the snapshot
  EXPECT_EQ(read(ws.path / "node_modules/m.js"), "dep");  // ignored files are not source
  EXPECT_EQ(mirrored.value().changes.size(), 1u);
  EXPECT_EQ(mirrored.value().unchanged, 2u);
}

TEST_F(BackupTest, PointInTimePicksTheLastSnapshotAtOrBefore) {
  Destination d = make_dest(server().port, "pit");
  write(ws.path / "v.txt", "one");
  auto s1 = backup_workspace(d, "app", ws.path, opts);
  ASSERT_TRUE(s1);
  std::this_thread::sleep_for(std::chrono::milliseconds(1100));
  write(ws.path / "v.txt", "two");
  auto s2 = backup_workspace(d, "app", ws.path, opts);
  ASSERT_TRUE(s2);
  std::this_thread::sleep_for(std::chrono::milliseconds(1100));
  write(ws.path / "v.txt", "three");
  ASSERT_TRUE(backup_workspace(d, "app", ws.path, opts));
  auto list = list_snapshots(d, "app", ropts).value();
  ASSERT_EQ(list.size(), 3u);
  TempDir to{"bk-to"};
  ropts.target = to.path;
  ropts.point_in_time = list[1].time;  // exactly the second one
  auto r = restore(d, "app", ropts);
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r.value().snapshot_id, s2.value().snapshot_id);
  EXPECT_EQ(read(to.path / "v.txt"), "two");
  ropts.point_in_time = list[2].time - 1;  // between the second and the third... or at the second
  r = restore(d, "app", ropts);
  ASSERT_TRUE(r);
  EXPECT_EQ(read(to.path / "v.txt"), "two");
  ropts.point_in_time = list[0].time - 10;
  r = restore(d, "app", ropts);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("oldest"), std::string::npos) << r.error().message;
  ropts.point_in_time.reset();
  ropts.snapshot = s1.value().snapshot_id;
  r = restore(d, "app", ropts);
  ASSERT_TRUE(r);
  EXPECT_EQ(read(to.path / "v.txt"), "one");
}

TEST_F(BackupTest, EncryptedDestinationHidesContentAndNeedsTheKey) {
  Destination d = make_dest(server().port, "secret", true);
  const std::string marker = "TOP-SECRET-CONTENT-4242";
  write(ws.path / "secret-name.txt", marker);
  write(ws.path / "big.bin", std::string(3 << 20, 'Z') + marker);  // a standalone blob
  BackupOptions no_key = opts;
  auto refused = backup_workspace(d, "vault", ws.path, no_key);
  ASSERT_FALSE(refused);
  EXPECT_NE(refused.error().message.find("CK_BACKUP_KEY"), std::string::npos);
  opts.key = "correct horse";
  auto r = backup_workspace(d, "vault", ws.path, opts);
  ASSERT_TRUE(r) << r.error().message;
  s3::Client c(d.client);
  for (const auto& o : objects(d)) {
    auto body = c.get_object(d.bucket, o.key).value();
    EXPECT_EQ(body.find(marker), std::string::npos) << o.key;
    EXPECT_EQ(body.find("secret-name"), std::string::npos) << o.key;
    EXPECT_EQ(body.find("ZZZZZZZZ"), std::string::npos) << o.key;
  }
  auto no = list_snapshots(d, "vault", ropts);
  ASSERT_FALSE(no);
  EXPECT_NE(no.error().message.find("is encrypted: set backup.key"), std::string::npos);
  TempDir to{"bk-to"};
  ropts.target = to.path;
  ropts.key = "wrong horse";
  auto wrong = restore(d, "vault", ropts);
  ASSERT_FALSE(wrong);
  EXPECT_NE(wrong.error().message.find("the key does not open"), std::string::npos);
  EXPECT_TRUE(fs::is_empty(to.path));
  ropts.key = "correct horse";
  auto ok = restore(d, "vault", ropts);
  ASSERT_TRUE(ok) << ok.error().message;
  EXPECT_EQ(read(to.path / "secret-name.txt"), marker);
  EXPECT_EQ(read(to.path / "big.bin"), std::string(3 << 20, 'Z') + marker);
  CheckOptions co;
  co.cache_dir = cache.path;
  co.key = "correct horse";
  auto checked = check(d, co);
  ASSERT_TRUE(checked) << checked.error().message;
  EXPECT_TRUE(checked.value().ok());
  EXPECT_EQ(checked.value().blobs_checked, 2u);
}

// Replaces an object by a copy with one byte flipped (what an attacker or a bad disk does).
void flip_byte(const Destination& d, const std::string& key, std::size_t at) {
  s3::Client c(d.client);
  auto body = c.get_object(d.bucket, key).value();
  body[at % body.size()] ^= 0x01;
  ASSERT_TRUE(c.put_object(d.bucket, key, body));
}

TEST_F(BackupTest, TamperedBlobIsDetectedByCheckAndRefusedByRestore) {
  for (bool encrypt : {false, true}) {
    SCOPED_TRACE(encrypt ? "encrypted" : "plain");
    Destination d = make_dest(server().port, "tamper", encrypt);
    opts.key = ropts.key = encrypt ? "k" : "";
    write(ws.path / "a.txt", "important content");
    write(ws.path / "big.bin", std::string(2 << 20, 'q'));
    ASSERT_TRUE(backup_workspace(d, "app", ws.path, opts));
    CheckOptions co;
    co.cache_dir = cache.path;
    co.key = opts.key;
    ASSERT_TRUE(check(d, co).value().ok());
    auto packs = objects(d, "packs/");
    ASSERT_EQ(packs.size(), 1u);
    flip_byte(d, packs[0].key, 20);
    auto checked = check(d, co);
    ASSERT_TRUE(checked) << checked.error().message;
    EXPECT_FALSE(checked.value().ok());
    ASSERT_EQ(checked.value().snapshots.size(), 1u);
    EXPECT_FALSE(checked.value().snapshots[0].problems.empty());
    TempDir to{"bk-to"};
    write(to.path / "keep.txt", "untouched");
    ropts.target = to.path;
    ropts.mode = RestoreMode::mirror;
    auto r = restore(d, "app", ropts);
    ASSERT_FALSE(r);
    EXPECT_NE(r.error().message.find("nothing was restored"), std::string::npos)
        << r.error().message;
    EXPECT_EQ(read(to.path / "keep.txt"), "untouched");  // nothing half-written
    EXPECT_FALSE(fs::exists(to.path / "big.bin"));
    // The standalone blob too.
    auto blobs = objects(d, "blobs/");
    ASSERT_EQ(blobs.size(), 1u);
    flip_byte(d, blobs[0].key, 1 << 20);
    checked = check(d, co);
    ASSERT_TRUE(checked);
    EXPECT_GE(checked.value().snapshots[0].problems.size(), 2u);
  }
}

TEST_F(BackupTest, TraversalPathsInASnapshotAreRefused) {
  Destination d = make_dest(server().port, "evil");
  write(ws.path / "a.txt", "x");
  auto r = backup_workspace(d, "app", ws.path, opts);
  ASSERT_TRUE(r);
  s3::Client c(d.client);
  std::string key = d.prefix + "/snapshots/app/" + r.value().snapshot_id + ".json";
  auto snap = parse_snapshot(c.get_object(d.bucket, key).value()).value();
  TempDir outer{"bk-outer"};
  fs::path target = outer.path / "target";
  fs::create_directories(target);
  ropts.target = target;
  for (std::string evil : {"../x", "/tmp/ck-backup-evil-abs", "a/../../x", "a//b"}) {
    SCOPED_TRACE(evil);
    Snapshot bad = snap;
    bad.files[0].path = evil;
    ASSERT_TRUE(c.put_object(d.bucket, key, snapshot_json(bad)));
    auto res = restore(d, "app", ropts);
    ASSERT_FALSE(res);
    EXPECT_NE(res.error().message.find("not a safe relative path"), std::string::npos)
        << res.error().message;
    EXPECT_FALSE(fs::exists(outer.path / "x"));
    EXPECT_FALSE(fs::exists("/tmp/ck-backup-evil-abs"));
    EXPECT_TRUE(fs::is_empty(target));
  }
  // A symlinked folder in the target is never written through.
  Snapshot nested = snap;
  nested.files[0].path = "link/a.txt";
  ASSERT_TRUE(c.put_object(d.bucket, key, snapshot_json(nested)));
  fs::create_directory_symlink(outer.path, target / "link");
  auto res = restore(d, "app", ropts);
  ASSERT_FALSE(res);
  EXPECT_NE(res.error().message.find("symbolic link"), std::string::npos) << res.error().message;
  EXPECT_FALSE(fs::exists(outer.path / "a.txt"));
  // A link planted at the temporary name a restore writes first is removed, not followed; a
  // setuid mode in the snapshot becomes plain permission bits.
  Snapshot setuid = snap;
  setuid.files[0].mode = 04755;
  ASSERT_TRUE(c.put_object(d.bucket, key, snapshot_json(setuid)));
  fs::remove(target / "link");
  fs::create_symlink(outer.path / "evil", target / ".ck-restore-a.txt.tmp");
  auto ok = restore(d, "app", ropts);
  ASSERT_TRUE(ok) << ok.error().message;
  EXPECT_EQ(read(target / "a.txt"), "x");
  EXPECT_FALSE(fs::exists(outer.path / "evil"));
  EXPECT_EQ(fs::status(target / "a.txt").permissions(), fs::perms(0755));
}

// Runs backup_workspace in a child process that SIGKILLs itself when the backup reaches `phase`
// ("index": every pack written, no index yet; "snapshot": index written, no snapshot yet).
void backup_killed_at(const Destination& d, const fs::path& dir, const BackupOptions& base,
                      const std::string& phase) {
  pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    BackupOptions o = base;
    o.progress = [phase](const Progress& p) {
      if (p.phase == phase) ::raise(SIGKILL);
    };
    auto r = backup_workspace(d, "app", dir, o);
    ::_exit(r ? 0 : 1);
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) << "status " << status;
}

// Runs backup_workspace in a child process talking to s3rver through a FaultProxy that stalls
// the child's `stall_at`-th request; once it stalls, the child gets SIGKILL (kill -9 in the
// middle of a transfer), then the proxy goes on (the stalled request may still reach s3rver, as
// a request in flight does when a client dies).
void backup_killed_by_stall(const Destination& direct, const fs::path& dir,
                            const BackupOptions& base, int stall_at) {
  s3test::FaultProxy proxy(server().port, std::vector<s3test::Rule>{});
  std::atomic<int> seen{0};
  std::atomic<bool> stalled{false}, release{false};
  proxy.on_request([&](const std::string&) {
    if (++seen == stall_at) {
      stalled = true;
      while (!release) std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
  });
  Destination d = direct;
  d.client = s3test::client_options(proxy.port(), 0);
  pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    auto r = backup_workspace(d, "app", dir, base);
    ::_exit(r ? 0 : 1);
  }
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (!stalled && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  ::kill(pid, SIGKILL);
  int status = 0;
  ::waitpid(pid, &status, 0);
  release = true;
  EXPECT_TRUE(stalled.load()) << "the backup made fewer than " << stall_at << " requests";
  EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) << "status " << status;
}

// Every snapshot on the destination is complete: check finds every blob of every snapshot.
void expect_consistent(const Destination& d, const fs::path& cache) {
  CheckOptions co;
  co.cache_dir = cache;
  auto checked = check(d, co);
  if (!checked) {
    // Killed before the repository config existed: nothing to check, nothing pointing anywhere.
    EXPECT_EQ(checked.error().code, Errc::not_found) << checked.error().message;
    return;
  }
  EXPECT_TRUE(checked.value().problems.empty());
  for (const auto& s : checked.value().snapshots) {
    EXPECT_TRUE(s.problems.empty()) << s.id << ": " << s.problems.front();
  }
}

TEST_F(BackupTest, KilledBackupLeavesNoSnapshotWithMissingBlobs) {
  Destination d = make_dest(server().port, "killed");
  // ~40 MiB in files below 1 MiB: three packs, so there is a "mid-way" to be killed in.
  auto fill = [&](int round) {
    for (int i = 0; i < 60; ++i) {
      std::string content(700 << 10, static_cast<char>('a' + i % 26));
      content += std::to_string(i) + "/" + std::to_string(round);
      write(ws.path / ("f" + std::to_string(i)), content);
    }
  };
  // Requests of a first backup: HEAD and PUT ck-backup.json, list index/, 3 packs, index,
  // snapshot. Stall (and kill) at each of them in turn, new content every round.
  int round = 0;
  for (int stall_at : {1, 2, 3, 4, 5, 6, 7, 8}) {
    SCOPED_TRACE("killed while request " + std::to_string(stall_at) + " was in flight");
    fill(++round);
    backup_killed_by_stall(d, ws.path, opts, stall_at);
    expect_consistent(d, cache.path);
  }
  for (std::string phase : {"index", "snapshot"}) {
    SCOPED_TRACE("killed at " + phase);
    fill(++round);
    backup_killed_at(d, ws.path, opts, phase);
    expect_consistent(d, cache.path);
  }
  auto r = backup_workspace(d, "app", ws.path, opts);
  ASSERT_TRUE(r) << r.error().message;
  CheckOptions co;
  co.cache_dir = cache.path;
  auto checked = check(d, co);
  ASSERT_TRUE(checked);
  EXPECT_TRUE(checked.value().ok());
  EXPECT_GE(checked.value().snapshots.size(), 1u);
  TempDir to{"bk-to"};
  ropts.target = to.path;
  ASSERT_TRUE(restore(d, "app", ropts));
  EXPECT_EQ(read(to.path / "f7"), read(ws.path / "f7"));
}

TEST_F(BackupTest, DestinationFailingHalfwayIsReportedAndLeavesNoSnapshot) {
  Destination direct = make_dest(server().port, "flaky");
  Destination good = make_dest(server().port, "good");
  // Every pack upload is cut off (the connection closes): the listing and the repository config
  // go through, the data never does.
  s3test::FaultProxy proxy(
      server().port,
      std::vector<s3test::Rule>{
          {{"put /" + direct.bucket + "/backups/packs/"}, s3test::Fault::kClose, -1, {}}});
  Destination flaky = direct;
  flaky.client = s3test::client_options(proxy.port(), 1);
  write(ws.path / "a.txt", "alpha");
  auto results = backup_all({flaky, good}, {{"app", ws.path}}, opts);
  ASSERT_EQ(results.size(), 2u);
  EXPECT_FALSE(results[0].ok);
  EXPECT_NE(results[0].error.find("uploading a pack to destination flaky failed"),
            std::string::npos)
      << results[0].error;
  EXPECT_TRUE(results[1].ok) << results[1].error;
  EXPECT_EQ(list_snapshots(good, "", ropts).value().size(), 1u);
  EXPECT_TRUE(objects(direct, "snapshots/").empty());
  EXPECT_TRUE(objects(direct, "index/").empty());
  expect_consistent(direct, cache.path);
}

TEST_F(BackupTest, PruneKeepsWhatKeepSaysAndCheckPasses) {
  Destination d = make_dest(server().port, "prune");
  std::vector<std::string> ids;
  for (int i = 0; i < 4; ++i) {
    write(ws.path / "v.txt", "version " + std::to_string(i));
    write(ws.path / "stable.txt", "same");
    auto r = backup_workspace(d, "app", ws.path, opts);
    ASSERT_TRUE(r);
    ids.push_back(r.value().snapshot_id);
  }
  auto packs_before = objects(d, "packs/").size();
  EXPECT_EQ(packs_before, 4u);
  PruneOptions po;
  po.cache_dir = cache.path;
  po.dry_run = true;
  Keep keep{2, 0, 0, 0, 0};
  auto dry = prune(d, keep, po);
  ASSERT_TRUE(dry) << dry.error().message;
  EXPECT_EQ(dry.value().removed.size(), 2u);
  EXPECT_EQ(objects(d, "snapshots/").size(), 4u);
  po.dry_run = false;
  auto pr = prune(d, keep, po);
  ASSERT_TRUE(pr) << pr.error().message;
  EXPECT_EQ(pr.value().kept.size(), 2u);
  auto left = list_snapshots(d, "app", ropts).value();
  ASSERT_EQ(left.size(), 2u);
  EXPECT_EQ(left[0].id, ids[2]);
  EXPECT_EQ(left[1].id, ids[3]);
  // The first pack held v0 and stable.txt (still needed): kept whole. The second held only v1.
  EXPECT_EQ(objects(d, "packs/").size(), 3u);
  EXPECT_EQ(objects(d, "index/").size(), 1u);
  CheckOptions co;
  co.cache_dir = cache.path;
  auto checked = check(d, co);
  ASSERT_TRUE(checked);
  EXPECT_TRUE(checked.value().ok());
  TempDir to{"bk-to"};
  ropts.target = to.path;
  ropts.snapshot = ids[2];
  ASSERT_TRUE(restore(d, "app", ropts));
  EXPECT_EQ(read(to.path / "v.txt"), "version 2");
  EXPECT_EQ(read(to.path / "stable.txt"), "same");
  // A later backup after prune (the cache still lists old indexes) stays consistent.
  write(ws.path / "v.txt", "version 1");  // content whose pack was deleted
  auto again = backup_workspace(d, "app", ws.path, opts);
  ASSERT_TRUE(again);
  EXPECT_TRUE(check(d, co).value().ok());
}

TEST_F(BackupTest, MirrorDestination) {
  Destination d = make_dest(server().port, "plain");
  d.mode = DestinationMode::mirror;
  write(ws.path / "a.txt", "A");
  write(ws.path / "sub/b.txt", "B");
  auto r = backup_workspace(d, "app", ws.path, opts);
  ASSERT_TRUE(r) << r.error().message;
  s3::Client c(d.client);
  EXPECT_EQ(c.get_object(d.bucket, "backups/app/sub/b.txt").value(), "B");  // any S3 tool reads it
  fs::remove(ws.path / "a.txt");
  ASSERT_TRUE(backup_workspace(d, "app", ws.path, opts));
  EXPECT_FALSE(c.head_object(d.bucket, "backups/app/a.txt").value());
  auto list = list_snapshots(d, "", ropts);
  ASSERT_TRUE(list) << list.error().message;
  ASSERT_EQ(list.value().size(), 1u);
  EXPECT_EQ(list.value()[0].files, 1u);
  TempDir to{"bk-to"};
  write(to.path / "extra.txt", "x");
  ropts.target = to.path;
  ropts.mode = RestoreMode::mirror;
  auto rr = restore(d, "app", ropts);
  ASSERT_TRUE(rr) << rr.error().message;
  EXPECT_EQ(read(to.path / "sub/b.txt"), "B");
  EXPECT_FALSE(fs::exists(to.path / "extra.txt"));
  ropts.snapshot = "20240101T000000Z-00000000";
  auto pit = restore(d, "app", ropts);
  ASSERT_FALSE(pit);
  EXPECT_NE(pit.error().message.find("keep only the latest copy"), std::string::npos);
}

}  // namespace
}  // namespace ck::backup

namespace ck::backup {
namespace {

TEST_F(BackupTest, ListingGetsEachSnapshotOnce) {
  Destination direct = make_dest(server().port, "listing");
  for (int i = 0; i < 3; ++i) {
    write(ws.path / "v.txt", std::to_string(i));
    ASSERT_TRUE(backup_workspace(direct, "app", ws.path, opts));
  }
  s3test::FaultProxy proxy(server().port, std::vector<s3test::Rule>{});
  Destination d = direct;
  d.client = s3test::client_options(proxy.port(), 1);
  std::string snapshot_get = "get /" + d.bucket + "/backups/snapshots/";
  ASSERT_EQ(list_snapshots(d, "", ropts).value().size(), 3u);
  EXPECT_EQ(proxy.requests_with({snapshot_get}).size(), 3u);
  ASSERT_EQ(list_snapshots(d, "app", ropts).value().size(), 3u);
  EXPECT_EQ(proxy.requests_with({snapshot_get}).size(), 3u);  // from the cache
  // After a prune the listing shows what is left, not the cache's memory.
  PruneOptions po;
  po.cache_dir = cache.path;
  ASSERT_TRUE(prune(direct, Keep{1, 0, 0, 0, 0}, po));
  auto left = list_snapshots(d, "", ropts).value();
  ASSERT_EQ(left.size(), 1u);
  EXPECT_EQ(left[0].files, 1u);
}

}  // namespace
}  // namespace ck::backup
