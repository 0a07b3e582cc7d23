#include "state/state.h"

#include <gtest/gtest.h>

#include "core/testing/temp_dir.h"
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <type_traits>
#include <vector>

namespace ck {
namespace {
using namespace std::chrono_literals;
namespace fs = std::filesystem;

constexpr std::int64_t kT0 = 1'700'000'000'000;  // a fixed "now" for clock-driven tests

struct TempDir : ck::test_util::TempDir {
  TempDir() : ck::test_util::TempDir("state-test") {}
};

// The value of a successful Result; a failure ends the test with its message.
template <class T>
T ok(Result<T> r) {
  if (r.has_error()) {
    throw std::runtime_error("unexpected error: " + r.error().message);
  }
  if constexpr (!std::is_void_v<T>) {
    return std::move(r).value();
  }
}

// The code of a failed Result; a success ends the test.
template <class T>
Errc err_of(const Result<T>& r) {
  if (!r.has_error()) {
    throw std::runtime_error("expected an error, got success");
  }
  return r.error().code;
}

std::unique_ptr<StateDb> open_db(const fs::path& file) { return ok(StateDb::open(file)); }

bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

class StateTest : public ::testing::Test {
 protected:
  void SetUp() override {
    db_ = open_db(dir_.path / "state.db");
    db_->set_clock([this] { return t_; });
  }
  JobPolicy policy(int max_attempts, std::chrono::milliseconds base,
                   std::chrono::milliseconds cap) {
    JobPolicy p;
    p.max_attempts = max_attempts;
    p.backoff_base = base;
    p.backoff_cap = cap;
    return p;
  }
  std::vector<std::int64_t> due_ids() {
    std::vector<std::int64_t> ids;
    for (const auto& j : ok(db_->due_jobs(100))) {
      ids.push_back(j.id);
    }
    return ids;
  }

  TempDir dir_;
  std::int64_t t_ = kT0;
  std::unique_ptr<StateDb> db_;
};

// ---- open, reopen, bad files ----

TEST(StateOpen, CreatesTheFileInWalModeAndReopeningKeepsData) {
  TempDir dir;
  const fs::path file = dir.path / "data" / "state.db";  // the parent is created too
  std::int64_t job_id = 0;
  {
    auto db = open_db(file);
    EXPECT_EQ(db->schema_version(), 3);
    EXPECT_EQ(db->file(), file);
    EXPECT_TRUE(fs::exists(file));
    ok(db->set_setting("theme", "dark"));
    ok(db->record_status("site", "running", "started by a request"));
    ok(db->save_activity("site", 1234));
    ok(db->upsert_workspace("site", "node", "running"));
    job_id = ok(db->enqueue("start", "site", R"({"why":"boot"})", JobPolicy{})).id;
    // WAL mode: writes go to the -wal file while the database is open.
    EXPECT_TRUE(fs::exists(fs::path(file.string() + "-wal")));
  }
  // The header records WAL persistently: bytes 18 and 19 (read/write version) are 2.
  {
    std::ifstream in(file, std::ios::binary);
    std::string header(100, '\0');
    in.read(header.data(), 100);
    ASSERT_TRUE(in);
    EXPECT_EQ(header.substr(0, 16), std::string("SQLite format 3\0", 16));
    EXPECT_EQ(header[18], 2);
    EXPECT_EQ(header[19], 2);
  }
  auto db = open_db(file);
  EXPECT_EQ(db->schema_version(), 3);
  EXPECT_EQ(ok(db->setting("theme")), std::optional<std::string>("dark"));
  auto h = ok(db->history("site", 10));
  ASSERT_EQ(h.size(), 1u);
  EXPECT_EQ(h[0].status, "running");
  EXPECT_EQ(h[0].reason, "started by a request");
  EXPECT_EQ(ok(db->load_activity()), (std::map<std::string, std::int64_t>{{"site", 1234}}));
  EXPECT_EQ(ok(db->workspace_names()), std::vector<std::string>{"site"});
  auto j = ok(db->job(job_id));
  ASSERT_TRUE(j.has_value());
  EXPECT_EQ(j->kind, "start");
  EXPECT_EQ(j->workspace, "site");
  EXPECT_EQ(j->payload, R"({"why":"boot"})");
  EXPECT_EQ(j->state, JobState::queued);
  EXPECT_EQ(j->max_attempts, 5);
}

TEST(StateOpen, GarbageFileFailsNamingTheFileAndTheWayOut) {
  TempDir dir;
  for (std::size_t size : {std::size_t{14}, std::size_t{8192}}) {
    const fs::path file = dir.path / ("garbage-" + std::to_string(size) + ".db");
    {
      std::ofstream out(file, std::ios::binary);
      std::string bytes;
      while (bytes.size() < size) {
        bytes += "not a database";
      }
      out << bytes.substr(0, size);
    }
    auto r = StateDb::open(file);
    ASSERT_TRUE(r.has_error()) << size;
    EXPECT_EQ(r.error().code, Errc::io);
    EXPECT_TRUE(contains(r.error().message, file.string())) << r.error().message;
    EXPECT_TRUE(contains(r.error().message, "move it aside")) << r.error().message;
    EXPECT_TRUE(contains(r.error().message, "workspaces are rebuilt from storage"))
        << r.error().message;
  }
}

TEST(StateOpen, NewerSchemaFailsSayingSo) {
  TempDir dir;
  const fs::path file = dir.path / "state.db";
  open_db(file).reset();
  ASSERT_FALSE(fs::exists(fs::path(file.string() + "-wal")));  // checkpointed on close
  {
    // user_version lives at offset 60 of the header, big-endian.
    std::fstream f(file, std::ios::binary | std::ios::in | std::ios::out);
    f.seekp(60);
    const char v[4] = {0, 0, 0x03, static_cast<char>(0xE7)};  // 999
    f.write(v, 4);
    ASSERT_TRUE(f);
  }
  auto r = StateDb::open(file);
  ASSERT_TRUE(r.has_error());
  EXPECT_EQ(r.error().code, Errc::io);
  EXPECT_TRUE(contains(r.error().message, file.string())) << r.error().message;
  EXPECT_TRUE(contains(r.error().message, "999")) << r.error().message;
  EXPECT_TRUE(contains(r.error().message, "newer")) << r.error().message;
}

TEST(StateOpen, ADirectoryCannotBeOpened) {
  TempDir dir;
  auto r = StateDb::open(dir.path);
  ASSERT_TRUE(r.has_error());
  EXPECT_TRUE(contains(r.error().message, dir.path.string())) << r.error().message;
}

TEST(StateOpen, InMemoryWorks) {
  auto db = open_db(":memory:");
  EXPECT_EQ(db->schema_version(), 3);
  ok(db->set_setting("a", "b"));
  EXPECT_EQ(ok(db->setting("a")), std::optional<std::string>("b"));
}

TEST_F(StateTest, AFullDiskGivesAClearMessageAndTheStoreStillWorks) {
  ok(db_->enqueue("start", "a", "{}", JobPolicy{}));
  ok(db_->simulate_full_disk_for_testing());
  auto r = db_->enqueue("start", "b", std::string(1 << 20, 'x'), JobPolicy{});
  ASSERT_TRUE(r.has_error());
  EXPECT_EQ(r.error().code, Errc::io);
  EXPECT_TRUE(contains(r.error().message, "is full")) << r.error().message;
  EXPECT_TRUE(contains(r.error().message, "free some space")) << r.error().message;
  EXPECT_TRUE(contains(r.error().message, (dir_.path / "state.db").string())) << r.error().message;
  // Nothing half-written; reads and small writes still work.
  EXPECT_EQ(ok(db_->job_counts())["queued"], 1);
  EXPECT_EQ(ok(db_->jobs(JobFilter{})).size(), 1u);
}

// ---- jobs ----

TEST_F(StateTest, EnqueueDedupesUnfinishedJobsOfTheSameKindAndWorkspace) {
  auto a = ok(db_->enqueue("start", "site", "{}", JobPolicy{}));
  EXPECT_GT(a.id, 0);
  EXPECT_EQ(a.state, JobState::queued);
  EXPECT_EQ(a.attempts, 0);
  EXPECT_EQ(a.next_run_ms, kT0);
  EXPECT_EQ(a.created_ms, kT0);
  EXPECT_EQ(ok(db_->enqueue("start", "site", R"({"other":1})", JobPolicy{})).id, a.id);
  ok(db_->claim(a.id));
  auto again = ok(db_->enqueue("start", "site", "{}", JobPolicy{}));  // running counts too
  EXPECT_EQ(again.id, a.id);
  EXPECT_EQ(again.payload, "{}");
  // Other kinds and workspaces are separate.
  EXPECT_NE(ok(db_->enqueue("stop", "site", "{}", JobPolicy{})).id, a.id);
  EXPECT_NE(ok(db_->enqueue("start", "other", "{}", JobPolicy{})).id, a.id);
  ok(db_->complete(a.id));
  auto b = ok(db_->enqueue("start", "site", "{}", JobPolicy{}));
  EXPECT_NE(b.id, a.id);
  auto c = ok(db_->enqueue("start", "site", "{}", JobPolicy{}, 0ms, /*dedupe=*/false));
  EXPECT_NE(c.id, b.id);
  EXPECT_EQ(ok(db_->job_counts())["queued"], 4);
}

TEST_F(StateTest, EnqueueRejectsBadInput) {
  EXPECT_EQ(err_of(db_->enqueue("", "a", "{}", JobPolicy{})), Errc::invalid_argument);
  EXPECT_EQ(err_of(db_->enqueue("k", "a", "{}", policy(0, 1s, 1s))), Errc::invalid_argument);
  EXPECT_EQ(err_of(db_->enqueue("k", "a", "{}", JobPolicy{}, -1ms)), Errc::invalid_argument);
  EXPECT_EQ(err_of(db_->due_jobs(0)), Errc::invalid_argument);
}

TEST_F(StateTest, ClaimingTwiceFailsAndAttemptsAreCounted) {
  auto j = ok(db_->enqueue("start", "site", "{}", JobPolicy{}));
  auto c = ok(db_->claim(j.id));
  EXPECT_EQ(c.state, JobState::running);
  EXPECT_EQ(c.attempts, 1);
  auto again = db_->claim(j.id);
  ASSERT_TRUE(again.has_error());
  EXPECT_EQ(again.error().code, Errc::already_exists);
  EXPECT_TRUE(contains(again.error().message, "already running")) << again.error().message;
  EXPECT_EQ(ok(db_->job(j.id))->attempts, 1);  // the failed claim counted nothing
  EXPECT_TRUE(due_ids().empty());

  auto done = ok(db_->complete(j.id));
  EXPECT_EQ(done.state, JobState::done);
  EXPECT_EQ(err_of(db_->claim(j.id)), Errc::invalid_argument);
  EXPECT_EQ(err_of(db_->complete(j.id)), Errc::invalid_argument);
  EXPECT_EQ(err_of(db_->fail(j.id, "x")), Errc::invalid_argument);
  EXPECT_EQ(err_of(db_->claim(999999)), Errc::not_found);
  EXPECT_FALSE(ok(db_->job(999999)).has_value());

  auto q = ok(db_->enqueue("start", "site", "{}", JobPolicy{}));
  EXPECT_EQ(err_of(db_->complete(q.id)), Errc::invalid_argument);  // not claimed
  EXPECT_EQ(err_of(db_->fail(q.id, "x")), Errc::invalid_argument);
}

TEST_F(StateTest, AJobThatFailsTwiceThenSucceedsBacksOffExactly) {
  auto j = ok(db_->enqueue("start", "site", "{}", policy(5, 1000ms, 300000ms)));
  EXPECT_EQ(due_ids(), std::vector<std::int64_t>{j.id});
  EXPECT_EQ(ok(db_->claim(j.id)).attempts, 1);

  t_ = kT0 + 10;
  auto f1 = ok(db_->fail(j.id, "boom 1"));
  EXPECT_EQ(f1.state, JobState::queued);
  EXPECT_EQ(f1.next_run_ms, kT0 + 10 + 1000);
  EXPECT_EQ(f1.last_error, "boom 1");
  EXPECT_EQ(f1.attempts, 1);
  EXPECT_EQ(ok(db_->next_due_ms()), std::optional<std::int64_t>(kT0 + 1010));
  EXPECT_TRUE(due_ids().empty());
  t_ = kT0 + 1009;
  EXPECT_TRUE(due_ids().empty());
  t_ = kT0 + 1010;
  EXPECT_EQ(due_ids(), std::vector<std::int64_t>{j.id});

  EXPECT_EQ(ok(db_->claim(j.id)).attempts, 2);
  t_ = kT0 + 1015;
  auto f2 = ok(db_->fail(j.id, "boom 2"));
  EXPECT_EQ(f2.next_run_ms, kT0 + 1015 + 2000);
  EXPECT_EQ(f2.last_error, "boom 2");
  t_ = kT0 + 3014;
  EXPECT_TRUE(due_ids().empty());
  t_ = kT0 + 3015;
  EXPECT_EQ(due_ids(), std::vector<std::int64_t>{j.id});

  EXPECT_EQ(ok(db_->claim(j.id)).attempts, 3);
  t_ = kT0 + 4000;
  auto done = ok(db_->complete(j.id));
  EXPECT_EQ(done.state, JobState::done);
  EXPECT_EQ(done.attempts, 3);
  EXPECT_EQ(done.last_error, "boom 2");
  EXPECT_EQ(done.updated_ms, kT0 + 4000);
  EXPECT_EQ(done.created_ms, kT0);
  EXPECT_FALSE(ok(db_->next_due_ms()).has_value());
  EXPECT_EQ(ok(db_->job(j.id))->state, JobState::done);
}

TEST_F(StateTest, DeadLetterAfterMaxAttemptsAndOperatorRetry) {
  auto j = ok(db_->enqueue("start", "site", "{}", policy(3, 100ms, 1000ms)));
  for (int i = 1; i <= 3; ++i) {
    ok(db_->claim(j.id));
    auto f = ok(db_->fail(j.id, "error " + std::to_string(i)));
    EXPECT_EQ(f.state, i < 3 ? JobState::queued : JobState::dead) << i;
    t_ += 60'000;
  }
  auto dead = ok(db_->job(j.id)).value();
  EXPECT_EQ(dead.state, JobState::dead);
  EXPECT_EQ(dead.attempts, 3);
  EXPECT_EQ(dead.last_error, "error 3");
  t_ += 3'600'000;
  EXPECT_TRUE(due_ids().empty());
  EXPECT_FALSE(ok(db_->next_due_ms()).has_value());
  EXPECT_EQ(err_of(db_->claim(j.id)), Errc::invalid_argument);
  EXPECT_EQ(ok(db_->job_counts())["dead"], 1);

  auto back = ok(db_->retry(j.id));
  EXPECT_EQ(back.state, JobState::queued);
  EXPECT_EQ(back.attempts, 0);
  EXPECT_EQ(back.next_run_ms, t_);
  EXPECT_EQ(due_ids(), std::vector<std::int64_t>{j.id});
  EXPECT_EQ(ok(db_->claim(j.id)).attempts, 1);
  EXPECT_EQ(err_of(db_->retry(j.id)), Errc::invalid_argument);  // running, not dead
}

TEST_F(StateTest, RetryRefusesToDuplicateAPendingJob) {
  auto j = ok(db_->enqueue("stop", "a", "{}", policy(1, 1s, 1s)));
  ok(db_->claim(j.id));
  EXPECT_EQ(ok(db_->fail(j.id, "no")).state, JobState::dead);
  auto newer = ok(db_->enqueue("stop", "a", "{}", JobPolicy{}));  // dead ones do not dedupe
  EXPECT_NE(newer.id, j.id);
  auto r = db_->retry(j.id);
  ASSERT_TRUE(r.has_error());
  EXPECT_EQ(r.error().code, Errc::already_exists);
  EXPECT_TRUE(contains(r.error().message, std::to_string(newer.id))) << r.error().message;
}

TEST_F(StateTest, BackoffIsCappedAndNeverOverflows) {
  auto j = ok(db_->enqueue("start", "site", "{}", policy(100, 1000ms, 3000ms)));
  const std::vector<std::int64_t> want = {1000, 2000, 3000, 3000, 3000};
  for (std::size_t i = 0; i < want.size(); ++i) {
    ok(db_->claim(j.id));
    EXPECT_EQ(ok(db_->fail(j.id, "x")).next_run_ms - t_, want[i]) << i;
  }
  auto big = ok(db_->enqueue("start", "big", "{}", policy(100, 1000ms, 300000ms)));
  std::int64_t last = 0;
  for (int i = 0; i < 70; ++i) {  // 1000 * 2^69 would overflow int64
    ok(db_->claim(big.id));
    last = ok(db_->fail(big.id, "x")).next_run_ms - t_;
    EXPECT_GT(last, 0) << i;
    EXPECT_LE(last, 300000) << i;
  }
  EXPECT_EQ(last, 300000);
}

TEST_F(StateTest, DelayedJobsAreDueInNextRunOrder) {
  auto late = ok(db_->enqueue("a", "", "{}", JobPolicy{}, 500ms));
  auto early = ok(db_->enqueue("b", "", "{}", JobPolicy{}, 100ms));
  auto also_early = ok(db_->enqueue("c", "", "{}", JobPolicy{}, 100ms));
  EXPECT_EQ(late.next_run_ms, kT0 + 500);
  EXPECT_EQ(ok(db_->next_due_ms()), std::optional<std::int64_t>(kT0 + 100));
  EXPECT_TRUE(due_ids().empty());
  t_ = kT0 + 1000;
  EXPECT_EQ(due_ids(), (std::vector<std::int64_t>{early.id, also_early.id, late.id}));
  EXPECT_EQ(ok(db_->due_jobs(2)).size(), 2u);
}

TEST_F(StateTest, RunningJobsOfAKilledProcessResume) {
  const fs::path file = dir_.path / "state.db";
  auto a = ok(db_->enqueue("start", "a", "{}", JobPolicy{}));
  auto b = ok(db_->enqueue("start", "b", "{}", JobPolicy{}));
  ok(db_->claim(a.id));
  db_.reset();  // the process dies with job a running

  auto db = open_db(file);
  const std::int64_t later = kT0 + 5000;
  db->set_clock([later] { return later; });
  auto resumed = ok(db->requeue_running());
  ASSERT_EQ(resumed.size(), 1u);
  EXPECT_EQ(resumed[0].id, a.id);
  EXPECT_EQ(resumed[0].state, JobState::queued);
  EXPECT_EQ(resumed[0].attempts, 1);
  EXPECT_EQ(resumed[0].next_run_ms, later);
  EXPECT_EQ(ok(db->job(a.id))->state, JobState::queued);
  auto due = ok(db->due_jobs(10));
  ASSERT_EQ(due.size(), 2u);
  EXPECT_EQ(due[0].id, b.id);  // b's next_run (kT0) is earlier
  EXPECT_EQ(due[1].id, a.id);
  EXPECT_EQ(ok(db->claim(a.id)).attempts, 2);
}

TEST_F(StateTest, AJobInterruptedOnItsLastAttemptGoesDead) {
  const fs::path file = dir_.path / "state.db";
  auto a = ok(db_->enqueue("cleanup", "a", "{}", policy(1, 1s, 1s)));
  ok(db_->claim(a.id));
  db_.reset();
  auto db = open_db(file);
  EXPECT_TRUE(ok(db->requeue_running()).empty());
  auto j = ok(db->job(a.id)).value();
  EXPECT_EQ(j.state, JobState::dead);
  EXPECT_TRUE(contains(j.last_error, "last attempt")) << j.last_error;
  EXPECT_EQ(ok(db->retry(a.id)).state, JobState::queued);
}

TEST_F(StateTest, CancelCountsAndListing) {
  auto start_a = ok(db_->enqueue("start", "a", "{}", JobPolicy{}));
  auto stop_a = ok(db_->enqueue("stop", "a", "{}", JobPolicy{}));
  ok(db_->enqueue("start", "b", "{}", JobPolicy{}));
  ok(db_->claim(start_a.id));
  EXPECT_EQ(ok(db_->cancel("start", "a")), 1);
  EXPECT_EQ(ok(db_->job(start_a.id))->state, JobState::cancelled);
  EXPECT_EQ(err_of(db_->complete(start_a.id)), Errc::invalid_argument);  // runner drops it
  EXPECT_EQ(ok(db_->cancel("start", "a")), 0);
  EXPECT_EQ(ok(db_->job(stop_a.id))->state, JobState::queued);
  auto start_a2 = ok(db_->enqueue("start", "a", "{}", JobPolicy{}));
  EXPECT_NE(start_a2.id, start_a.id);

  EXPECT_EQ(ok(db_->job_counts()),
            (std::map<std::string, int>{
                {"queued", 3}, {"running", 0}, {"done", 0}, {"dead", 0}, {"cancelled", 1}}));

  std::vector<std::int64_t> page_ids;
  for (int i = 0; i < 25; ++i) {
    page_ids.push_back(ok(db_->enqueue("k", "p", "{}", JobPolicy{}, 0ms, false)).id);
  }
  std::reverse(page_ids.begin(), page_ids.end());  // newest first
  JobFilter f;
  f.workspace = "p";
  f.limit = 10;
  std::vector<std::int64_t> seen;
  for (int page = 0; page < 5; ++page) {
    auto v = ok(db_->jobs(f));
    if (v.empty()) {
      break;
    }
    EXPECT_LE(v.size(), 10u);
    for (const auto& j : v) {
      EXPECT_EQ(j.workspace, "p");
      seen.push_back(j.id);
    }
    f.before_id = v.back().id;
  }
  EXPECT_EQ(seen, page_ids);

  JobFilter cancelled;
  cancelled.state = JobState::cancelled;
  auto c = ok(db_->jobs(cancelled));
  ASSERT_EQ(c.size(), 1u);
  EXPECT_EQ(c[0].id, start_a.id);
  JobFilter queued_a;
  queued_a.state = JobState::queued;
  queued_a.workspace = "a";
  auto qa = ok(db_->jobs(queued_a));
  ASSERT_EQ(qa.size(), 2u);
  EXPECT_EQ(qa[0].id, start_a2.id);
  EXPECT_EQ(qa[1].id, stop_a.id);
  EXPECT_EQ(ok(db_->jobs(JobFilter{})).size(), 29u);
  JobFilter bad;
  bad.limit = 0;
  EXPECT_EQ(err_of(db_->jobs(bad)), Errc::invalid_argument);
}

TEST_F(StateTest, PruneDeletesOldFinishedJobsButKeepsTheNewest) {
  auto finish = [this](const std::string& kind) {
    auto j = ok(db_->enqueue(kind, "w", "{}", JobPolicy{}, 0ms, false));
    ok(db_->claim(j.id));
    return ok(db_->complete(j.id)).id;
  };
  std::vector<std::int64_t> old_done;
  for (int i = 0; i < 5; ++i) {
    old_done.push_back(finish("old"));
  }
  auto cancelled = ok(db_->enqueue("c", "w", "{}", JobPolicy{}));
  ok(db_->cancel("c", "w"));
  auto dead = ok(db_->enqueue("d", "w", "{}", policy(1, 1s, 1s)));
  ok(db_->claim(dead.id));
  ok(db_->fail(dead.id, "x"));
  auto queued = ok(db_->enqueue("q", "w", "{}", JobPolicy{}));
  t_ = kT0 + 10 * 24 * 3'600'000LL;
  auto new1 = finish("new");
  auto new2 = finish("new");

  EXPECT_EQ(ok(db_->prune_jobs(24h, 3)), 5);  // keeps new2, new1 and the cancelled one
  for (auto id : old_done) {
    EXPECT_FALSE(ok(db_->job(id)).has_value()) << id;
  }
  for (auto id : {cancelled.id, dead.id, queued.id, new1, new2}) {
    EXPECT_TRUE(ok(db_->job(id)).has_value()) << id;
  }
  EXPECT_EQ(ok(db_->prune_jobs(24h, 3)), 0);
  EXPECT_EQ(ok(db_->prune_jobs(24h, 0)), 1);  // the old cancelled one; new ones are young
  EXPECT_EQ(ok(db_->prune_jobs(0ms, 0)), 0);  // updated_ms == now is not older than 0 ms
  t_ += 1;
  EXPECT_EQ(ok(db_->prune_jobs(0ms, 0)), 2);
  EXPECT_EQ(ok(db_->job_counts()),
            (std::map<std::string, int>{
                {"queued", 1}, {"running", 0}, {"done", 0}, {"dead", 1}, {"cancelled", 0}}));
}

// ---- history, sessions, activity, settings, workspaces ----

TEST_F(StateTest, HistoryIsNewestFirstAndPrunedTo200PerWorkspace) {
  for (int i = 0; i < 205; ++i) {
    t_ = kT0 + i;
    ok(db_->record_status("a", i % 2 ? "running" : "stopped", "r" + std::to_string(i)));
  }
  for (int i = 0; i < 3; ++i) {
    ok(db_->record_status("b", "running", "b" + std::to_string(i)));
  }
  auto h = ok(db_->history("a", 1000));
  ASSERT_EQ(h.size(), 200u);
  EXPECT_EQ(h.front().reason, "r204");
  EXPECT_EQ(h.front().at_ms, kT0 + 204);
  EXPECT_EQ(h.front().workspace, "a");
  EXPECT_EQ(h.front().status, "stopped");
  EXPECT_EQ(h.back().reason, "r5");
  for (std::size_t i = 1; i < h.size(); ++i) {
    EXPECT_LT(h[i].at_ms, h[i - 1].at_ms);
  }
  auto top = ok(db_->history("a", 3));
  ASSERT_EQ(top.size(), 3u);
  EXPECT_EQ(top[2].reason, "r202");
  auto b = ok(db_->history("b", 10));
  ASSERT_EQ(b.size(), 3u);
  EXPECT_EQ(b[0].reason, "b2");
  EXPECT_TRUE(ok(db_->history("nobody", 10)).empty());
  EXPECT_EQ(err_of(db_->history("a", 0)), Errc::invalid_argument);
}

TEST_F(StateTest, SessionsOpenCloseAndCloseAll) {
  auto s1 = ok(db_->open_session("a", "terminal", "127.0.0.1:5000"));
  auto s2 = ok(db_->open_session("a", "dashboard", "10.0.0.2"));
  auto s3 = ok(db_->open_session("b", "terminal", "10.0.0.3"));
  EXPECT_NE(s1, s2);
  EXPECT_NE(s2, s3);
  EXPECT_EQ(ok(db_->open_sessions("a")), 2);
  EXPECT_EQ(ok(db_->open_sessions("b")), 1);
  ok(db_->close_session(s1));
  EXPECT_EQ(ok(db_->open_sessions("a")), 1);
  ok(db_->close_session(s1));  // already closed: fine
  EXPECT_EQ(err_of(db_->close_session(999999)), Errc::not_found);
  EXPECT_EQ(ok(db_->close_all_sessions()), 2);
  EXPECT_EQ(ok(db_->open_sessions("a")), 0);
  EXPECT_EQ(ok(db_->open_sessions("b")), 0);
  EXPECT_EQ(ok(db_->close_all_sessions()), 0);
}

TEST_F(StateTest, SessionsLeftOpenByAPreviousRunAreClosedAtStartup) {
  ok(db_->open_session("a", "terminal", "c"));
  ok(db_->open_session("a", "terminal", "d"));
  db_.reset();
  auto db = open_db(dir_.path / "state.db");
  EXPECT_EQ(ok(db->open_sessions("a")), 2);
  EXPECT_EQ(ok(db->close_all_sessions()), 2);
  EXPECT_EQ(ok(db->open_sessions("a")), 0);
}

TEST_F(StateTest, ActivitySettingsAndWorkspaces) {
  ok(db_->save_activity("a", 100));
  ok(db_->save_activity("b", 200));
  ok(db_->save_activity("a", 300));
  EXPECT_EQ(ok(db_->load_activity()),
            (std::map<std::string, std::int64_t>{{"a", 300}, {"b", 200}}));

  EXPECT_FALSE(ok(db_->setting("x")).has_value());
  ok(db_->set_setting("x", "1"));
  ok(db_->set_setting("x", "2"));
  ok(db_->set_setting("empty", ""));
  const std::string nasty = "'; DROP TABLE settings; --";
  ok(db_->set_setting(nasty, nasty));
  EXPECT_EQ(ok(db_->setting("x")), std::optional<std::string>("2"));
  EXPECT_EQ(ok(db_->setting("empty")), std::optional<std::string>(""));
  EXPECT_EQ(ok(db_->setting(nasty)), std::optional<std::string>(nasty));
  EXPECT_EQ(err_of(db_->set_setting("", "v")), Errc::invalid_argument);

  ok(db_->upsert_workspace("b", "static", "stopped"));
  ok(db_->upsert_workspace("a", "node", "running"));
  ok(db_->upsert_workspace("a", "static", "stopped"));
  EXPECT_EQ(ok(db_->workspace_names()), (std::vector<std::string>{"a", "b"}));
  ok(db_->record_status("a", "stopped", "idle"));
  ok(db_->remove_workspace("a"));
  ok(db_->remove_workspace("never-existed"));
  EXPECT_EQ(ok(db_->workspace_names()), std::vector<std::string>{"b"});
  EXPECT_EQ(ok(db_->load_activity()), (std::map<std::string, std::int64_t>{{"b", 200}}));
  EXPECT_EQ(ok(db_->history("a", 10)).size(), 1u);  // history outlives the workspace
}

// ---- concurrency ----

// Threads enqueue and claim at the same time; `dbs` are the StateDb objects they share
// (one: the internal mutex; two on one file: SQLite's locking between connections).
void every_job_is_claimed_exactly_once(const std::vector<StateDb*>& dbs) {
  constexpr int kThreads = 4;
  constexpr int kPerThread = 200;
  std::mutex mu;
  std::map<std::int64_t, int> claims;
  std::vector<std::int64_t> enqueued;
  std::atomic<int> errors{0};
  std::string first_error;
  auto record_error = [&](const std::string& m) {
    std::lock_guard lock(mu);
    if (errors++ == 0) {
      first_error = m;
    }
  };
  auto claim_round = [&](StateDb& db) {
    auto due = db.due_jobs(50);
    if (due.has_error()) {
      record_error(due.error().message);
      return std::size_t{0};
    }
    for (const auto& j : due.value()) {
      auto c = db.claim(j.id);
      if (c.has_value()) {
        std::lock_guard lock(mu);
        ++claims[j.id];
      } else if (c.error().code != Errc::already_exists) {
        record_error(c.error().message);
      }
    }
    return due.value().size();
  };
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    StateDb* target = dbs[static_cast<std::size_t>(t) % dbs.size()];
    threads.emplace_back([&, t, target] {
      StateDb& db = *target;
      for (int i = 0; i < kPerThread; ++i) {
        auto j = db.enqueue("work", "ws" + std::to_string(t), std::to_string(i), JobPolicy{}, 0ms,
                            /*dedupe=*/false);
        if (j.has_error()) {
          record_error(j.error().message);
          continue;
        }
        {
          std::lock_guard lock(mu);
          enqueued.push_back(j.value().id);
        }
        if (i % 20 == 19) {
          claim_round(db);
        }
      }
      while (claim_round(db) > 0) {
      }
    });
  }
  for (auto& th : threads) {
    th.join();
  }
  EXPECT_EQ(errors.load(), 0) << first_error;
  EXPECT_EQ(enqueued.size(), static_cast<std::size_t>(kThreads * kPerThread));
  std::sort(enqueued.begin(), enqueued.end());
  EXPECT_EQ(std::adjacent_find(enqueued.begin(), enqueued.end()), enqueued.end());
  EXPECT_EQ(claims.size(), enqueued.size());
  for (const auto& [id, n] : claims) {
    EXPECT_EQ(n, 1) << "job " << id;
  }
  auto counts = ok(dbs[0]->job_counts());
  EXPECT_EQ(counts["running"], kThreads * kPerThread);
  EXPECT_EQ(counts["queued"], 0);
  for (auto id : enqueued) {
    auto j = ok(dbs[0]->job(id));
    ASSERT_TRUE(j.has_value());
    EXPECT_EQ(j->attempts, 1) << id;
  }
}

TEST(StateConcurrency, OneStoreSharedByFourThreads) {
  TempDir dir;
  auto db = open_db(dir.path / "state.db");
  every_job_is_claimed_exactly_once({db.get()});
}

TEST(StateConcurrency, TwoConnectionsToOneFile) {
  TempDir dir;
  auto a = open_db(dir.path / "state.db");
  auto b = open_db(dir.path / "state.db");
  every_job_is_claimed_exactly_once({a.get(), b.get()});
}

}  // namespace
}  // namespace ck

namespace ck {
namespace {

// Cleanup (issue 19): closed sessions and status history older than the cut go, open sessions
// and newer rows stay; a dry run only counts; VACUUM gives the freed pages back.
TEST(StateHousekeeping, PrunesOldHistoryAndVacuums) {
  TempDir dir;
  auto db = open_db(dir.path / "state.db");
  std::int64_t t = kT0;
  db->set_clock([&t] { return t; });
  std::string reason(2000, 'r');  // rows big enough that their pages are worth a VACUUM
  for (int i = 0; i < 150; ++i) ok(db->record_status("old" + std::to_string(i % 3), "running", reason));
  for (int i = 0; i < 300; ++i) {
    auto id = ok(db->open_session("old0", "websocket", reason));
    ok(db->close_session(id));
  }
  auto still_open = ok(db->open_session("old0", "websocket", "c"));
  t = kT0 + 40LL * 24 * 3600 * 1000;  // 40 days later
  ok(db->record_status("new", "running", "fresh"));
  auto recent = ok(db->open_session("new", "websocket", "c"));
  ok(db->close_session(recent));
  const std::int64_t cut = t - 30LL * 24 * 3600 * 1000;

  auto planned = ok(db->prune_history(cut, true));
  EXPECT_EQ(planned.sessions, 300);
  EXPECT_EQ(planned.statuses, 150);
  EXPECT_EQ(ok(db->history("old0", 1000)).size(), 50u);  // nothing went

  auto pruned = ok(db->prune_history(cut, false));
  EXPECT_EQ(pruned.sessions, 300);
  EXPECT_EQ(pruned.statuses, 150);
  EXPECT_TRUE(ok(db->history("old0", 1000)).empty());
  EXPECT_EQ(ok(db->history("new", 10)).size(), 1u);
  EXPECT_EQ(ok(db->open_sessions("old0")), 1);  // the open one stays, however old
  EXPECT_EQ(ok(db->prune_history(cut, false)).sessions, 0);

  auto free = ok(db->free_bytes());
  EXPECT_GT(free, 500'000u);
  auto shrunk = ok(db->vacuum());
  EXPECT_GT(shrunk, 500'000u);
  EXPECT_EQ(ok(db->free_bytes()), 0u);
  ok(db->close_session(still_open));
}

}  // namespace
}  // namespace ck
