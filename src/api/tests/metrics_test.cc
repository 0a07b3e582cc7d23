#include "api/metrics.h"

#include <gtest/gtest.h>

#include <map>
#include <sstream>

#include "metrics/metrics.h"

namespace ck {
namespace {

// name{labels} -> value, for every sample line.
std::map<std::string, std::string> samples(const std::string& text) {
  std::map<std::string, std::string> out;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    auto sp = line.rfind(' ');
    out[line.substr(0, sp)] = line.substr(sp + 1);
  }
  return out;
}

WorkspaceView ws(std::string name, std::string status) {
  WorkspaceView w;
  w.name = std::move(name);
  w.status = std::move(status);
  w.activity = std::make_shared<Activity>();
  return w;
}

TEST(Metrics, WorkspacesByStateAndActivityWithZeros) {
  Snapshot snap;
  snap.workspaces = {ws("a", "running"), ws("b", "running"), ws("c", "failed"), ws("d", "stopped")};
  auto now = unix_ms();
  snap.workspaces[0].activity->touch();                         // active
  snap.workspaces[1].activity->last_ms = now - 5 * 60 * 1000;   // idle (default policy: 2 min)
  snap.workspaces[2].activity->last_ms = now - 15 * 60 * 1000;  // background (10 min)
  metrics::Registry reg;
  auto s = samples(render_metrics(reg, snap, nullptr, "1.2.3"));
  EXPECT_EQ(s["cloudyknight_workspaces{state=\"running\"}"], "2");
  EXPECT_EQ(s["cloudyknight_workspaces{state=\"failed\"}"], "1");
  EXPECT_EQ(s["cloudyknight_workspaces{state=\"stopped\"}"], "1");
  EXPECT_EQ(s["cloudyknight_workspaces{state=\"creating\"}"], "0");
  EXPECT_EQ(s["cloudyknight_workspaces{state=\"initializing\"}"], "0");
  EXPECT_EQ(s["cloudyknight_workspaces{state=\"stopping\"}"], "0");
  EXPECT_EQ(s["cloudyknight_workspace_activity{level=\"active\"}"], "1");
  EXPECT_EQ(s["cloudyknight_workspace_activity{level=\"idle\"}"], "1");
  EXPECT_EQ(s["cloudyknight_workspace_activity{level=\"background\"}"], "1");
  EXPECT_EQ(s["cloudyknight_workspace_activity{level=\"stopped\"}"], "1");
  EXPECT_EQ(s["cloudyknight_workspace_activity{level=\"disconnected\"}"], "0");
  EXPECT_EQ(s["cloudyknight_build_info{version=\"1.2.3\"}"], "1");
  EXPECT_GT(std::stod(s["cloudyknight_process_resident_memory_bytes"]), 0);
  EXPECT_GT(std::stod(s["cloudyknight_process_open_fds"]), 0);
  EXPECT_GT(std::stod(s["cloudyknight_process_start_time_seconds"]), 1.6e9);
  EXPECT_EQ(s.count("cloudyknight_process_cpu_seconds_total"), 1u);
}

TEST(Metrics, AnUnknownStateIsStillReported) {
  Snapshot snap;
  snap.workspaces = {ws("a", "hibernating")};
  metrics::Registry reg;
  auto s = samples(render_metrics(reg, snap, nullptr, "dev"));
  EXPECT_EQ(s["cloudyknight_workspaces{state=\"hibernating\"}"], "1");
  EXPECT_EQ(s["cloudyknight_workspaces{state=\"running\"}"], "0");
}

TEST(Metrics, JobQueueByState) {
  auto db = StateDb::open(":memory:");
  ASSERT_TRUE(db.has_value());
  JobPolicy policy;
  ASSERT_TRUE(db.value()->enqueue("start", "a", "{}", policy).has_value());
  auto b = db.value()->enqueue("start", "b", "{}", policy);
  ASSERT_TRUE(b.has_value());
  ASSERT_TRUE(db.value()->claim(b.value().id).has_value());
  metrics::Registry reg;
  auto s = samples(render_metrics(reg, Snapshot{}, db.value().get(), "dev"));
  EXPECT_EQ(s["cloudyknight_jobs{state=\"queued\"}"], "1");
  EXPECT_EQ(s["cloudyknight_jobs{state=\"running\"}"], "1");
  EXPECT_EQ(s["cloudyknight_jobs{state=\"dead\"}"], "0");
}

TEST(Metrics, RegistryFamiliesComeFirstAndEveryFamilyIsTyped) {
  metrics::Registry reg;
  reg.counter("cloudyknight_test_total", "A test counter.").get().inc(7);
  auto text = render_metrics(reg, Snapshot{}, nullptr, "dev");
  EXPECT_TRUE(
      text.starts_with("# HELP cloudyknight_test_total A test counter.\n"
                       "# TYPE cloudyknight_test_total counter\n"
                       "cloudyknight_test_total 7\n"))
      << text;
  // Each sample's family was declared by a TYPE line before it.
  std::istringstream in(text);
  std::string line, typed;
  while (std::getline(in, line)) {
    if (line.starts_with("# TYPE ")) {
      typed = line.substr(7, line.find(' ', 7) - 7);
    } else if (!line.starts_with("#")) {
      EXPECT_TRUE(line.starts_with(typed)) << line << " after TYPE " << typed;
    }
  }
}

}  // namespace
}  // namespace ck
