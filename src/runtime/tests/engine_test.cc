// The Engine API client against the real Docker engine (the test command starts one and
// builds cloudyknight/base:bookworm). Set CK_NO_DOCKER=1 to skip on a machine without one.
#include <gtest/gtest.h>

#include <cstdlib>
#include <set>

#include "runtime/docker/archive.h"
#include "runtime/docker/engine.h"

namespace ck {
namespace {

constexpr const char* kImage = "cloudyknight/base:bookworm";

class EngineTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (std::getenv("CK_NO_DOCKER")) GTEST_SKIP() << "CK_NO_DOCKER is set";
    auto r = run_blocking(engine.connect());
    ASSERT_TRUE(r.has_value()) << r.error().message;
    name = "ck-engine-test-" + std::to_string(::getpid());
    (void)run_blocking(engine.remove_container(name));
  }
  void TearDown() override {
    if (!name.empty()) (void)run_blocking(engine.remove_container(name));
  }
  std::string start_sleeper() {
    json body = {{"Image", kImage},
                 {"Cmd", {"/bin/sh", "-c", "echo started; echo oops >&2; exec sleep 60"}},
                 {"Labels", {{"cloudyknight.engine-test", "true"}}},
                 {"HostConfig", {{"Init", true}}}};
    auto id = run_blocking(engine.create_container(name, body));
    EXPECT_TRUE(id.has_value()) << id.error().message;
    auto started = run_blocking(engine.start_container(id.value()));
    EXPECT_TRUE(started.has_value()) << started.error().message;
    return id.value();
  }
  DockerEngine engine{DockerEngine::default_socket()};
  std::string name;
};

TEST_F(EngineTest, NegotiatesTheApiVersion) {
  EXPECT_EQ(engine.api_version(), "1.41");
  EXPECT_FALSE(engine.engine_version().empty());
}

TEST_F(EngineTest, ContainerLifeCycleExecArchiveAndLogs) {
  std::string id = start_sleeper();
  auto listed = run_blocking(engine.list_containers({"cloudyknight.engine-test=true"}));
  ASSERT_TRUE(listed.has_value());
  bool found = false;
  for (const auto& c : listed.value()) found = found || c.value("Id", "") == id;
  EXPECT_TRUE(found);

  auto ex = run_blocking(engine.exec(id, {"/bin/sh", "-c", "echo out; echo err >&2; exit 3"}, {"X=1"}, "/",
                                     std::chrono::seconds(20)));
  ASSERT_TRUE(ex.has_value()) << ex.error().message;
  EXPECT_EQ(ex.value().exit_code, 3);
  EXPECT_NE(ex.value().output.find("out\n"), std::string::npos);
  EXPECT_NE(ex.value().output.find("err\n"), std::string::npos);

  auto tar = tar_of({TarFile{"dir/hello.txt", "hello from the test\n", 0644}});
  ASSERT_TRUE(tar.has_value());
  ASSERT_TRUE(run_blocking(engine.put_archive(id, "/tmp", tar.value())).has_value());
  auto cat = run_blocking(engine.exec(id, {"cat", "/tmp/dir/hello.txt"}, {}, "", std::chrono::seconds(20)));
  ASSERT_TRUE(cat.has_value());
  EXPECT_EQ(cat.value().output, "hello from the test\n");

  std::string out, err;
  auto logs = run_blocking(engine.logs(id, false, 0, [&](const LogChunk& c) {
    (c.stream == 2 ? err : out).append(c.text);
  }));
  ASSERT_TRUE(logs.has_value()) << logs.error().message;
  EXPECT_EQ(out, "started\n");
  EXPECT_EQ(err, "oops\n");

  ASSERT_TRUE(run_blocking(engine.kill_container(id, "KILL")).has_value());
  auto code = run_blocking(engine.wait_container(id));
  ASSERT_TRUE(code.has_value());
  EXPECT_EQ(code.value(), 137);
  ASSERT_TRUE(run_blocking(engine.remove_container(id)).has_value());
  auto gone = run_blocking(engine.inspect_container(id));
  ASSERT_TRUE(gone.has_error());
  EXPECT_EQ(gone.error().code, Errc::not_found);
}

TEST_F(EngineTest, EventsStreamSeesAStart) {
  // Start a container from a timer while the event stream is open, then read events until its
  // create, start and die have all arrived. Nothing says when the engine has registered the
  // subscription, so if the create came before it (a loaded machine), the container is made
  // again: events are never replayed, only missed while the stream is not yet live.
  net::io_context io;
  std::set<std::string> seen;
  net::co_spawn(
      io,
      [](DockerEngine& e, std::string n, std::set<std::string>* got) -> net::awaitable<void> {
        auto all = [got] { return got->count("create") && got->count("start") && got->count("die"); };
        for (int attempt = 1; attempt <= 6 && !all(); ++attempt) {
          co_await sleep_for(std::chrono::milliseconds(300 * attempt));
          (void)co_await e.remove_container(n);
          json body = {{"Image", kImage}, {"Cmd", {"true"}}, {"Labels", {{"cloudyknight.engine-test", "true"}}}};
          auto made = co_await e.create_container(n, std::move(body));
          if (!made.has_value()) continue;
          (void)co_await e.start_container(made.value());
          for (int i = 0; i < 40 && !all(); ++i) co_await sleep_for(std::chrono::milliseconds(50));
        }
      }(engine, name, &seen),
      [](std::exception_ptr) {});
  json filters = {{"label", {"cloudyknight.engine-test=true"}}, {"type", {"container"}}};
  std::function<bool(const json&)> sink = [&](const json& ev) {
    seen.insert(ev.value("status", ""));
    return !(seen.count("create") && seen.count("start") && seen.count("die"));
  };
  net::co_spawn(
      io,
      [](DockerEngine& e, json f, std::function<bool(const json&)> s) -> net::awaitable<void> {
        (void)co_await e.events(std::move(f), std::move(s));
      }(engine, filters, sink),
      [&](std::exception_ptr) { io.stop(); });
  io.run_for(std::chrono::seconds(30));
  EXPECT_TRUE(seen.count("create"));
  EXPECT_TRUE(seen.count("start"));
  EXPECT_TRUE(seen.count("die"));
}

TEST_F(EngineTest, ErrorsCarryTheEngineMessage) {
  auto r = run_blocking(engine.inspect_image("cloudyknight-no-such/image:0"));
  ASSERT_TRUE(r.has_error());
  EXPECT_EQ(r.error().code, Errc::not_found);
  EXPECT_NE(r.error().message.find("cloudyknight-no-such/image"), std::string::npos) << r.error().message;
  json body = {{"Image", "cloudyknight-no-such/image:0"}};
  auto c = run_blocking(engine.create_container(name, body));
  ASSERT_TRUE(c.has_error());
  EXPECT_NE(c.error().message.find("cannot create container"), std::string::npos) << c.error().message;
}

TEST(EngineOffline, ANonUnixDockerHostIsRefusedWithAReason) {
  ::setenv("DOCKER_HOST", "tcp://10.0.0.1:2375", 1);
  std::string why;
  EXPECT_EQ(DockerEngine::default_socket(&why), "");
  EXPECT_NE(why.find("unix://"), std::string::npos);
  ::setenv("DOCKER_HOST", "unix:///tmp/nothing-here.sock", 1);
  EXPECT_EQ(DockerEngine::default_socket(), "/tmp/nothing-here.sock");
  DockerEngine e("/tmp/nothing-here.sock");
  auto r = run_blocking(e.connect());
  ASSERT_TRUE(r.has_error());
  EXPECT_NE(r.error().message.find("no Docker engine answers on /tmp/nothing-here.sock"), std::string::npos)
      << r.error().message;
  ::unsetenv("DOCKER_HOST");
}

}  // namespace
}  // namespace ck
