#include <filesystem>
#include <fstream>
#include <gtest/gtest.h>

#include "workspace/workspace.h"

namespace ck {
namespace {
namespace fs = std::filesystem;

class Detect : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("ck-detect-" + std::to_string(::getpid()) + "-" +
                                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  void write(const std::string& rel, const std::string& text = "") {
    fs::create_directories((dir_ / rel).parent_path());
    std::ofstream(dir_ / rel) << text;
  }
  WorkspaceSpec detect() { return detect_workspace("w", dir_); }
  fs::path dir_;
};

TEST_F(Detect, EveryTypeByItsFile) {
  struct Case {
    const char* file;
    WorkspaceType type;
  };
  for (const auto& c : {Case{"docker-compose.yml", WorkspaceType::compose},
                        Case{"compose.yaml", WorkspaceType::compose},
                        Case{"Dockerfile", WorkspaceType::dockerfile},
                        Case{"package.json", WorkspaceType::node},
                        Case{"requirements.txt", WorkspaceType::python},
                        Case{"pyproject.toml", WorkspaceType::python},
                        Case{"app.py", WorkspaceType::python},
                        Case{"main.py", WorkspaceType::python},
                        Case{"composer.json", WorkspaceType::php},
                        Case{"index.php", WorkspaceType::php},
                        Case{"go.mod", WorkspaceType::go},
                        Case{"main.go", WorkspaceType::go},
                        Case{"Gemfile", WorkspaceType::ruby},
                        Case{"index.html", WorkspaceType::static_site},
                        Case{"public/index.html", WorkspaceType::static_site}}) {
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    write(c.file, std::string(c.file) == "package.json" ? R"({"scripts":{"start":"node s.js"}})" : "");
    auto s = detect();
    EXPECT_EQ(s.type, c.type) << c.file;
    EXPECT_EQ(s.matched, c.file);
  }
}

TEST_F(Detect, FirstMatchWins) {
  write("index.html");
  write("package.json", R"({"scripts":{"start":"node server.js"}})");
  write("Dockerfile");
  EXPECT_EQ(detect().type, WorkspaceType::dockerfile);
  fs::remove(dir_ / "Dockerfile");
  auto s = detect();
  EXPECT_EQ(s.type, WorkspaceType::node);
  EXPECT_EQ(s.matched, "package.json");
}

TEST_F(Detect, NodeCommandsAndInstall) {
  write("package.json", R"({"description": "demo", "scripts": {"start": "node server.js"}})");
  auto s = detect();
  EXPECT_EQ(s.command, "node server.js");  // the start script, without npm's start-up
  write("package.json", R"({"scripts": {"prestart": "echo hi", "start": "node server.js"}})");
  EXPECT_EQ(detect().command, "npm start");  // npm honours the hooks
  EXPECT_EQ(s.install.rfind("npm install", 0), 0u);
  EXPECT_EQ(s.description, "demo");
  write("package-lock.json", "{}");
  EXPECT_EQ(detect().install.rfind("npm ci", 0), 0u);
  write("package.json", R"({"main": "lib/app.js"})");
  write("lib/app.js");
  EXPECT_EQ(detect().command, "node lib/app.js");
}

TEST_F(Detect, NodeByWorkspaceJsonWithoutPackageJsonInstallsNothing) {
  write("workspace.json", R"({"type": "node", "command": "node run.js"})");
  auto s = detect();
  EXPECT_EQ(s.type, WorkspaceType::node);
  EXPECT_TRUE(s.install.empty()) << s.install;
  EXPECT_EQ(s.command, "node run.js");
}

TEST_F(Detect, NodeWithoutEntryPointSaysWhatToAdd) {
  write("package.json", R"({"name": "x"})");
  auto s = detect();
  EXPECT_EQ(s.type, WorkspaceType::node);
  EXPECT_NE(s.error.find("start"), std::string::npos);
}

TEST_F(Detect, MalformedPackageJsonNamesFileAndLine) {
  write("package.json", "{\n  \"name\": \"x\",\n  \"description\": oops\n}\n");
  auto s = detect();
  EXPECT_EQ(s.type, WorkspaceType::node);
  EXPECT_NE(s.error.find("package.json"), std::string::npos) << s.error;
  EXPECT_NE(s.error.find("line 3"), std::string::npos) << s.error;
}

TEST_F(Detect, MalformedWorkspaceJsonNamesFileAndLine) {
  write("index.html");
  write("workspace.json", "{\n\"type\": \"static\",,\n}");
  auto s = detect();
  EXPECT_NE(s.error.find("workspace.json"), std::string::npos) << s.error;
  EXPECT_NE(s.error.find("line 2"), std::string::npos) << s.error;
}

TEST_F(Detect, NumbersOutOfRangeAreErrorsNotCrashes) {
  // Found by fuzz_manifest: nlohmann throws out_of_range for this, not parse_error.
  write("package.json", R"({"version": 66666666666666e77777})");
  auto s = detect();
  EXPECT_NE(s.error.find("package.json"), std::string::npos) << s.error;
  write("package.json", R"({"scripts": {"start": "node s.js"}})");
  write("workspace.json", R"({"port": 18446744073709551615})");
  EXPECT_NE(detect().error.find("\"port\""), std::string::npos);
  write("workspace.json", R"({"port": 4294967297})");
  EXPECT_NE(detect().error.find("\"port\""), std::string::npos);
}

TEST_F(Detect, WorkspaceJsonOverrides) {
  write("index.html");
  write("workspace.json", R"({"type": "python", "command": "python3 -m http.server $PORT",
      "description": "d", "icon": "🐍", "public": false, "port": 9123, "env": {"A": "1", "B": 2},
      "idle": {"stop_after": "10m"}, "resources": {"memory": "256m", "cpus": 0.5}})");
  auto s = detect();
  EXPECT_TRUE(s.error.empty()) << s.error;
  EXPECT_EQ(s.type, WorkspaceType::python);
  EXPECT_EQ(s.matched, "workspace.json");
  EXPECT_EQ(s.command, "python3 -m http.server $PORT");
  EXPECT_EQ(s.description, "d");
  EXPECT_FALSE(s.is_public);
  EXPECT_EQ(s.port, 9123);
  EXPECT_EQ(s.env.at("A"), "1");
  EXPECT_EQ(s.env.at("B"), "2");
  EXPECT_EQ(s.stop_after, std::chrono::minutes(10));
  EXPECT_FALSE(s.idle_after.has_value());
  EXPECT_EQ(s.reload, "restart");
  EXPECT_EQ(s.memory, 256ull << 20);
  EXPECT_EQ(s.cpus, 0.5);
}

TEST_F(Detect, WorkspaceJsonWrongTypesAreExplained) {
  write("index.html");
  write("workspace.json", R"({"port": "eighty"})");
  EXPECT_NE(detect().error.find("\"port\""), std::string::npos);
  write("workspace.json", R"({"type": "cobol"})");
  EXPECT_NE(detect().error.find("\"type\""), std::string::npos);
  write("workspace.json", R"([1, 2])");
  EXPECT_NE(detect().error.find("object"), std::string::npos);
  write("workspace.json", R"({"reload": "sometimes"})");
  EXPECT_NE(detect().error.find("\"reload\""), std::string::npos);
  write("workspace.json", R"({"idle": {"stop_after": "soon"}})");
  EXPECT_NE(detect().error.find("idle.stop_after"), std::string::npos);
  write("workspace.json", R"({"idle": {"stopafter": "1m"}})");
  EXPECT_NE(detect().error.find("stopafter"), std::string::npos);
}

TEST_F(Detect, IdleOverridesAndReloadMode) {
  write("index.html");
  write("workspace.json", R"({"reload": "hmr", "idle": {"idle_after": "5s", "background_after": "10s",
                              "stop_after": "1m", "grace": "2s"}})");
  auto s = detect();
  ASSERT_TRUE(s.error.empty()) << s.error;
  EXPECT_EQ(s.reload, "hmr");
  EXPECT_EQ(s.idle_after, std::chrono::seconds(5));
  EXPECT_EQ(s.background_after, std::chrono::seconds(10));
  EXPECT_EQ(s.stop_after, std::chrono::minutes(1));
  EXPECT_EQ(s.grace, std::chrono::seconds(2));
}

TEST_F(Detect, EmptyFolderSaysWhatIsMissing) {
  auto s = detect();
  EXPECT_EQ(s.type, WorkspaceType::unknown);
  EXPECT_NE(s.error.find("index.html"), std::string::npos);
}

TEST_F(Detect, StaticPublicFolder) {
  write("public/index.html");
  auto s = detect();
  EXPECT_EQ(s.static_root, "public");
}

TEST_F(Detect, FingerprintFollowsWhatMatters) {
  write("package.json", R"({"scripts": {"start": "node a.js"}})");
  auto a = detect().fingerprint();
  write("package.json", R"({"scripts": {"start": "node a.js"}, "description": "x"})");
  EXPECT_EQ(detect().fingerprint(), a);
  write("workspace.json", R"({"command": "node b.js"})");
  EXPECT_NE(detect().fingerprint(), a);
}

}  // namespace
}  // namespace ck
