#include "storage/dir/watcher.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <spdlog/sinks/ostream_sink.h>
#include <sys/file.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "core/log.h"

namespace ck {
namespace {
namespace fs = std::filesystem;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

constexpr auto kDebounce = 50ms;
constexpr auto kQuiet = 200ms;  // long enough to be sure no (further) batch comes

void write(const fs::path& p, const std::string& text) {
  fs::create_directories(p.parent_path());
  std::ofstream(p, std::ios::binary) << text;
}

std::size_t count_of(const std::string& hay, const std::string& needle) {
  std::size_t n = 0;
  for (auto pos = hay.find(needle); pos != std::string::npos; pos = hay.find(needle, pos + 1)) {
    ++n;
  }
  return n;
}

struct Arrival {
  Clock::time_point at;
  WatchBatch batch;
};

// Each test gets its own root under /tmp and its own io_context, run in the test thread.
class WatcherTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = fs::temp_directory_path() /
            ("ck-watch-" + std::to_string(::getpid()) + "-" + std::to_string(counter_++));
    fs::remove_all(root_);
    fs::create_directories(root_);
  }
  void TearDown() override {
    watcher_.reset();
    std::error_code ec;
    fs::remove_all(root_, ec);
  }

  static WatcherOptions options() {
    WatcherOptions o;
    o.debounce = kDebounce;
    return o;
  }

  void start(WatcherOptions o = options()) {
    watcher_ = std::make_unique<DirWatcher>(io_, root_, std::move(o), [this](WatchBatch b) {
      batches_.push_back(Arrival{Clock::now(), std::move(b)});
    });
    auto r = watcher_->start();
    ASSERT_TRUE(r) << r.error().message;
  }

  /// Runs the io_context until `done()` or the deadline; answers done().
  template <class Pred>
  bool run_until(Pred done, Clock::duration timeout = 3s) {
    auto deadline = Clock::now() + timeout;
    while (!done() && Clock::now() < deadline) {
      if (io_.stopped()) io_.restart();
      if (io_.run_one_until(deadline) == 0 && io_.stopped()) std::this_thread::sleep_for(2ms);
    }
    return done();
  }
  bool wait_batches(std::size_t n) {
    return run_until([&] { return batches_.size() >= n; });
  }
  /// Runs the io_context for `d` whatever happens (to show that nothing arrives).
  void pump(Clock::duration d) {
    run_until([] { return false; }, d);
  }

  fs::path root_;
  net::io_context io_;
  std::unique_ptr<DirWatcher> watcher_;
  std::vector<Arrival> batches_;
  static inline int counter_ = 0;
};

TEST_F(WatcherTest, EditInAWorkspaceArrivesOnceAfterTheDebounce) {
  write(root_ / "site/src/app.js", "v1");
  start();
  EXPECT_EQ(watcher_->watch_count(), 3u);  // root, site, site/src
  EXPECT_FALSE(watcher_->degraded());

  auto t0 = Clock::now();
  write(root_ / "site/src/app.js", "v2");
  ASSERT_TRUE(wait_batches(1));
  auto latency = batches_[0].at - t0;
  EXPECT_GE(latency, kDebounce);
  EXPECT_LT(latency, 1s);
  const WatchBatch& b = batches_[0].batch;
  EXPECT_EQ(b.workspaces, std::set<std::string>{"site"});
  EXPECT_EQ(b.files.at("site"), std::set<std::string>{"src/app.js"});
  EXPECT_TRUE(b.all_files.empty());
  EXPECT_FALSE(b.rescan);

  pump(kQuiet);
  EXPECT_EQ(batches_.size(), 1u);
}

TEST_F(WatcherTest, EditsInOneWindowMakeOneBatch) {
  fs::create_directories(root_ / "site");
  start();
  write(root_ / "site/a.txt", "1");
  pump(5ms);
  write(root_ / "site/b.txt", "2");
  pump(5ms);
  write(root_ / "site/a.txt", "3");
  ASSERT_TRUE(wait_batches(1));
  pump(kQuiet);
  ASSERT_EQ(batches_.size(), 1u);
  EXPECT_EQ(batches_[0].batch.files.at("site"), (std::set<std::string>{"a.txt", "b.txt"}));
}

TEST_F(WatcherTest, EditsInTwoWindowsMakeTwoBatches) {
  fs::create_directories(root_ / "one");
  fs::create_directories(root_ / "two");
  start();
  write(root_ / "one/a.txt", "1");
  ASSERT_TRUE(wait_batches(1));
  write(root_ / "two/b.txt", "2");
  ASSERT_TRUE(wait_batches(2));
  pump(kQuiet);
  ASSERT_EQ(batches_.size(), 2u);
  EXPECT_EQ(batches_[0].batch.workspaces, std::set<std::string>{"one"});
  EXPECT_EQ(batches_[1].batch.workspaces, std::set<std::string>{"two"});
  EXPECT_EQ(batches_[1].batch.files.at("two"), std::set<std::string>{"b.txt"});
}

TEST_F(WatcherTest, NewWorkspaceIsReportedWithItsFilesAndWatchedRecursively) {
  start();
  ASSERT_EQ(watcher_->watch_count(), 1u);
  // The whole tree exists before the watcher reads the first event: its files can only be
  // found by listing each new folder after watching it.
  fs::path dir = root_ / "fresh";
  std::set<std::string> expected;
  std::string rel;
  for (const char* part : {"a", "b", "c"}) {
    dir /= part;
    rel += (rel.empty() ? "" : "/") + std::string(part);
    fs::create_directories(dir);
    expected.insert(rel);
    for (int i = 0; i < 3; ++i) {
      write(dir / ("f" + std::to_string(i) + ".txt"), "x");
      expected.insert(rel + "/f" + std::to_string(i) + ".txt");
    }
  }
  WatchBatch seen;
  ASSERT_TRUE(run_until([&] {
    for (auto& a : batches_) {
      seen.workspaces.insert(a.batch.workspaces.begin(), a.batch.workspaces.end());
      for (auto& [ws, files] : a.batch.files) seen.files[ws].insert(files.begin(), files.end());
    }
    batches_.clear();
    return seen.files["fresh"] == expected;
  })) << "missing files of the new workspace";
  EXPECT_EQ(seen.workspaces, std::set<std::string>{"fresh"});
  EXPECT_EQ(watcher_->watch_count(), 5u);  // root, fresh, a, b, c

  write(root_ / "fresh/a/b/c/deep.txt", "later");
  ASSERT_TRUE(wait_batches(1));
  EXPECT_EQ(batches_[0].batch.files.at("fresh"), std::set<std::string>{"a/b/c/deep.txt"});
}

TEST_F(WatcherTest, RemovedWorkspaceIsReported) {
  write(root_ / "gone/src/x.txt", "x");
  fs::create_directories(root_ / "kept");
  start();
  ASSERT_EQ(watcher_->watch_count(), 4u);
  fs::remove_all(root_ / "gone");
  ASSERT_TRUE(wait_batches(1));
  EXPECT_EQ(batches_[0].batch.workspaces, std::set<std::string>{"gone"});
  EXPECT_EQ(watcher_->watch_count(), 2u);  // root, kept
}

TEST_F(WatcherTest, RenamedWorkspaceReportsBothNamesAndIsWatchedUnderTheNewName) {
  write(root_ / "old/src/a.txt", "1");
  start();
  fs::rename(root_ / "old", root_ / "new");
  ASSERT_TRUE(wait_batches(1));
  EXPECT_EQ(batches_[0].batch.workspaces, (std::set<std::string>{"new", "old"}));
  EXPECT_EQ(watcher_->watch_count(), 3u);  // root, new, new/src

  write(root_ / "new/src/a.txt", "2");
  ASSERT_TRUE(wait_batches(2));
  EXPECT_EQ(batches_[1].batch.workspaces, std::set<std::string>{"new"});
  EXPECT_EQ(batches_[1].batch.files.at("new"), std::set<std::string>{"src/a.txt"});
}

TEST_F(WatcherTest, FolderMovedWithinAWorkspaceIsWatchedUnderItsNewPath) {
  write(root_ / "site/lib/util.js", "1");
  start();
  fs::rename(root_ / "site/lib", root_ / "site/src");
  ASSERT_TRUE(wait_batches(1));
  EXPECT_EQ(batches_[0].batch.files.at("site"),
            (std::set<std::string>{"lib", "src", "src/util.js"}));
  write(root_ / "site/src/util.js", "2");
  ASSERT_TRUE(wait_batches(2));
  EXPECT_EQ(batches_[1].batch.files.at("site"), std::set<std::string>{"src/util.js"});
}

TEST_F(WatcherTest, SkippedFoldersNeverTriggerABatch) {
  write(root_ / "site/node_modules/pkg/index.js", "1");
  fs::create_directories(root_ / "site/lib");
  start();
  EXPECT_EQ(watcher_->watch_count(), 3u);  // root, site, site/lib
  write(root_ / "site/node_modules/pkg/index.js", "2");
  write(root_ / "site/node_modules/newpkg/index.js", "1");
  write(root_ / "site/lib/node_modules/x/y.js", "1");
  write(root_ / "site/lib/.git/HEAD", "ref: refs/heads/main");
  write(root_ / ".cache/junk", "1");
  write(root_ / "root-file.txt", "a plain file at the root is no workspace");
  pump(kQuiet);
  EXPECT_TRUE(batches_.empty());
  EXPECT_EQ(watcher_->watch_count(), 3u);
}

TEST_F(WatcherTest, SymlinksAreNotFollowed) {
  fs::path outside = root_.string() + "-outside";
  fs::create_directories(outside);
  fs::create_directories(root_ / "site");
  fs::create_directory_symlink(outside, root_ / "site/link");
  start();
  EXPECT_EQ(watcher_->watch_count(), 2u);
  write(outside / "x.txt", "1");
  pump(kQuiet);
  EXPECT_TRUE(batches_.empty());

  // A symlink to a folder at the root is a workspace for DirStorage: its coming and going count.
  fs::create_directory_symlink(outside, root_ / "alias");
  ASSERT_TRUE(wait_batches(1));
  EXPECT_EQ(batches_[0].batch.workspaces, std::set<std::string>{"alias"});
  fs::remove(root_ / "alias");
  ASSERT_TRUE(wait_batches(2));
  EXPECT_EQ(batches_[1].batch.workspaces, std::set<std::string>{"alias"});
  fs::remove_all(outside);
}

TEST_F(WatcherTest, MoreThan256FilesInAWorkspaceSetAllFiles) {
  fs::create_directories(root_ / "big");
  fs::create_directories(root_ / "small");
  start();
  // Written before the io_context runs, so every event is queued and lands in one window.
  for (int i = 0; i < 300; ++i) write(root_ / "big" / ("f" + std::to_string(i)), "x");
  write(root_ / "small/s.txt", "x");
  ASSERT_TRUE(wait_batches(1));
  pump(kQuiet);
  ASSERT_EQ(batches_.size(), 1u);
  const WatchBatch& b = batches_[0].batch;
  EXPECT_EQ(b.workspaces, (std::set<std::string>{"big", "small"}));
  EXPECT_EQ(b.all_files, std::set<std::string>{"big"});
  EXPECT_FALSE(b.files.contains("big"));
  EXPECT_EQ(b.files.at("small"), std::set<std::string>{"s.txt"});
}

TEST_F(WatcherTest, OverflowAsksForARescanAndWatchesEverythingAgain) {
  const char* kProc = "/proc/sys/fs/inotify/max_queued_events";
  if (::geteuid() != 0 || ::access(kProc, W_OK) != 0) {
    GTEST_SKIP() << "needs root and a writable " << kProc << " to make the queue overflow";
  }
  fs::create_directories(root_ / "site");
  {
    // Another test binary (a sanitizer build run in parallel) may do the same: serialize, so
    // that nobody saves the lowered value as the one to restore.
    struct Lock {
      int fd = ::open("/tmp/ck-inotify-queue-test.lock", O_CREAT | O_RDWR | O_CLOEXEC, 0600);
      Lock() {
        if (fd >= 0) ::flock(fd, LOCK_EX);
      }
      ~Lock() {
        if (fd >= 0) ::close(fd);
      }
    } lock;
    std::string old;
    std::ifstream(kProc) >> old;
    if (old.empty() || std::stoll(old) < 1024) {
      GTEST_SKIP() << kProc << " is " << old << ", lowered by someone else: not touching it";
    }
    // The kernel reads the limit when the inotify instance is created, so lowering it only for
    // start() keeps the system-wide change as short as possible.
    struct Restore {
      const char* path;
      std::string value;
      ~Restore() { std::ofstream(path) << value; }
    } restore{kProc, old};
    {
      std::ofstream out(kProc);
      out << 16;
      out.flush();
      if (!out) GTEST_SKIP() << "cannot write " << kProc;
    }
    start();
  }
  std::string now;
  std::ifstream(kProc) >> now;
  ASSERT_GE(std::stoll(now), 1024) << "the queue limit was not restored";

  for (int i = 0; i < 200; ++i) write(root_ / "site" / ("f" + std::to_string(i)), "x");
  fs::create_directories(root_ / "site/late");  // its IN_CREATE is lost in the overflow
  ASSERT_TRUE(run_until([&] {
    for (auto& a : batches_) {
      if (a.batch.rescan) return true;
    }
    return false;
  }));
  EXPECT_EQ(watcher_->watch_count(), 3u);  // root, site, site/late
  EXPECT_FALSE(watcher_->degraded());

  pump(kQuiet);
  batches_.clear();
  write(root_ / "site/late/x.txt", "after the overflow");
  ASSERT_TRUE(wait_batches(1));
  EXPECT_FALSE(batches_[0].batch.rescan);
  EXPECT_EQ(batches_[0].batch.files.at("site"), std::set<std::string>{"late/x.txt"});
}

TEST_F(WatcherTest, WatchLimitMakesItDegradedButWatchedFoldersStillReport) {
  std::ostringstream logs;
  auto logger = log::get("storage");
  auto sink = std::make_shared<spdlog::sinks::ostream_sink_st>(logs);
  logger->sinks().push_back(sink);
  struct Unhook {
    std::shared_ptr<spdlog::logger> logger;
    spdlog::sink_ptr sink;
    ~Unhook() { std::erase(logger->sinks(), sink); }
  } unhook{logger, sink};

  fs::create_directories(root_ / "site/a");
  fs::create_directories(root_ / "site/b");
  WatcherOptions o = options();
  o.max_watches = 2;
  start(o);
  EXPECT_TRUE(watcher_->degraded());
  EXPECT_EQ(watcher_->watch_count(), 2u);  // root, site
  EXPECT_EQ(count_of(logs.str(), "max_watches = 2"), 1u) << logs.str();
  EXPECT_NE(logs.str().find("polls"), std::string::npos) << logs.str();

  write(root_ / "site/top.txt", "1");
  fs::create_directories(root_ / "site/c");  // cannot be watched, still reported
  ASSERT_TRUE(wait_batches(1));
  EXPECT_EQ(batches_[0].batch.files.at("site"), (std::set<std::string>{"c", "top.txt"}));
  EXPECT_EQ(watcher_->watch_count(), 2u);
  EXPECT_EQ(count_of(logs.str(), "max_watches = 2"), 1u) << "warned more than once";
}

TEST_F(WatcherTest, StopEndsCallbacksEvenForAnOpenWindow) {
  fs::create_directories(root_ / "site");
  start();
  write(root_ / "site/a.txt", "1");
  pump(10ms);  // the event is read and the window is open
  watcher_->stop();
  watcher_->stop();
  EXPECT_EQ(watcher_->watch_count(), 0u);
  pump(kQuiet);
  write(root_ / "site/b.txt", "2");
  pump(kQuiet);
  EXPECT_TRUE(batches_.empty());
}

TEST_F(WatcherTest, DestroyingTheWatcherFromItsCallbackIsSafe) {
  fs::create_directories(root_ / "site");
  int calls = 0;
  watcher_ = std::make_unique<DirWatcher>(io_, root_, options(), [&](const WatchBatch&) {
    ++calls;
    watcher_.reset();
  });
  ASSERT_TRUE(watcher_->start());
  write(root_ / "site/a.txt", "1");
  ASSERT_TRUE(run_until([&] { return calls == 1; }));
  write(root_ / "site/b.txt", "2");
  pump(kQuiet);
  EXPECT_EQ(calls, 1);
  EXPECT_EQ(watcher_, nullptr);
}

TEST_F(WatcherTest, StartFailsWhenTheRootIsMissing) {
  DirWatcher w(io_, root_ / "missing", options(), [](const WatchBatch&) {});
  auto r = w.start();
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Errc::not_found);
  EXPECT_NE(r.error().message.find("missing"), std::string::npos);
}

TEST(TreeSignature, FollowsEditsAddsAndDeletesButNotSkippedFolders) {
  fs::path dir = fs::temp_directory_path() / ("ck-signature-" + std::to_string(::getpid()));
  fs::remove_all(dir);
  write(dir / "src/app.js", "v1");
  write(dir / "node_modules/pkg/index.js", "1");
  const std::vector<std::string> skip = WatcherOptions{}.skip;
  auto sig = [&] { return tree_signature(dir, skip); };

  auto s0 = sig();
  EXPECT_EQ(sig(), s0) << "stable when nothing changes";

  write(dir / "src/app.js", "v2 longer");
  auto s1 = sig();
  EXPECT_NE(s1, s0) << "size";

  auto t = fs::last_write_time(dir / "src/app.js");
  fs::last_write_time(dir / "src/app.js", t + 1s);
  auto s2 = sig();
  EXPECT_NE(s2, s1) << "mtime";

  write(dir / "src/new.js", "");
  auto s3 = sig();
  EXPECT_NE(s3, s2) << "add";

  fs::remove(dir / "src/new.js");
  auto s4 = sig();
  EXPECT_NE(s4, s3) << "delete";
  EXPECT_EQ(s4, s2) << "same tree, same signature";

  write(dir / "node_modules/pkg/index.js", "changed");
  write(dir / "node_modules/other/x.js", "new");
  write(dir / "src/node_modules/deep/y.js", "new skipped folder inside a watched one");
  write(dir / "src/.git/HEAD", "x");
  EXPECT_EQ(sig(), s4) << "skipped folders do not count";

  fs::create_directories(dir / "src/empty");
  EXPECT_NE(sig(), s4) << "a new folder counts";

  // Truncation: a change past max_entries is not seen, but truncating is part of the value.
  auto small = tree_signature(dir, skip, 1);
  EXPECT_NE(small, sig());
  write(dir / "src/z-last.js", "past the limit");
  EXPECT_EQ(tree_signature(dir, skip, 1), small);

  EXPECT_EQ(tree_signature(dir / "missing", skip), tree_signature(dir / "missing", skip));
  fs::remove_all(dir);
}

}  // namespace
}  // namespace ck
