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

// A compose file that cannot run makes the workspace invalid when it is detected (with file,
// line and key), as a broken package.json does, instead of failing at every start attempt.
TEST_F(Detect, ComposeFileProblemsAreFoundAtDetection) {
  const std::string ok =
      "services:\n  web:\n    image: node\n    ports: [\"3000\"]\n";
  write("docker-compose.yml", ok);
  EXPECT_EQ(detect().error, "");
  write("docker-compose.yml", ok + "    privileged: true\n");
  auto s = detect();
  EXPECT_EQ(s.type, WorkspaceType::compose);
  EXPECT_NE(s.error.find("docker-compose.yml:5"), std::string::npos) << s.error;
  EXPECT_NE(s.error.find("privileged"), std::string::npos) << s.error;
  write("docker-compose.yml", "services:\n  web: [unclosed\n");
  EXPECT_NE(detect().error.find("docker-compose.yml"), std::string::npos) << detect().error;
  // Two services with ports and no route label: the candidates are named.
  write("docker-compose.yml", ok + "  api:\n    image: node\n    ports: [\"4000\"]\n");
  s = detect();
  EXPECT_NE(s.error.find("web"), std::string::npos) << s.error;
  EXPECT_NE(s.error.find("api"), std::string::npos) << s.error;
  // A bind outside the folder, and a cycle in depends_on.
  write("docker-compose.yml", ok + "    volumes: [\"/etc:/x\"]\n");
  EXPECT_NE(detect().error.find("volumes"), std::string::npos) << detect().error;
  write("docker-compose.yml", ok +
                                  "    depends_on: [db]\n  db:\n    image: x\n"
                                  "    depends_on: [web]\n");
  EXPECT_NE(detect().error.find("db"), std::string::npos) << detect().error;
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

namespace ck {
namespace {

class DetectPrefix : public Detect {
 protected:
  WorkspaceSpec with_start(const std::string& start, const std::string& extra = "") {
    write("package.json", R"({"scripts":{"start":")" + start + "\"" + extra + "}" + extra_deps_ + "}");
    return detect();
  }
  std::string extra_deps_;
};

TEST_F(DetectPrefix, PlainAppsStrip) {
  auto s = with_start("node server.js");
  EXPECT_EQ(s.prefix, PrefixMode::strip);
  EXPECT_EQ(s.command, "node server.js");
  EXPECT_EQ(s.prefix_note, "");
}

TEST_F(DetectPrefix, ViteKeepsThePrefixAndGetsTheBase) {
  auto s = with_start("vite --port $PORT --host");
  EXPECT_EQ(s.prefix, PrefixMode::keep);
  EXPECT_EQ(s.command, "vite --port $PORT --host --base \"$CK_BASE_PATH\"");
  EXPECT_NE(s.prefix_note.find("vite"), std::string::npos);
  EXPECT_EQ(with_start("tsc && vite dev").command, "tsc && vite dev --base \"$CK_BASE_PATH\"");
  EXPECT_EQ(with_start("./node_modules/.bin/vite").prefix, PrefixMode::keep);
  // A base the script already passes is left alone.
  s = with_start("vite --base /w/ --port $PORT");
  EXPECT_EQ(s.prefix, PrefixMode::keep);
  EXPECT_EQ(s.command, "vite --base /w/ --port $PORT");
  EXPECT_EQ(with_start("vite --base=$CK_BASE_PATH").command, "vite --base=$CK_BASE_PATH");
  // Not dev servers: a build, and preview (serves a build made with its own base).
  EXPECT_EQ(with_start("vite build").prefix, PrefixMode::strip);
  EXPECT_EQ(with_start("vite preview --port $PORT").prefix, PrefixMode::strip);
  EXPECT_EQ(with_start("vite preview --port $PORT").command, "vite preview --port $PORT");
  // Shapes that cannot take an appended flag are not touched.
  EXPECT_EQ(with_start("vite | tee log").prefix, PrefixMode::strip);
  EXPECT_EQ(with_start("vite & wait").prefix, PrefixMode::strip);
}

TEST_F(DetectPrefix, NpmStartGetsTheFlagAfterDashDash) {
  // pre/post hooks: npm runs the script, and passes what follows -- to it.
  write("package.json", R"({"scripts":{"prestart":"echo hi","start":"vite"}})");
  auto s = detect();
  EXPECT_EQ(s.prefix, PrefixMode::keep);
  EXPECT_EQ(s.command, "npm start -- --base \"$CK_BASE_PATH\"");
}

TEST_F(DetectPrefix, Astro) {
  auto s = with_start("astro dev --port $PORT");
  EXPECT_EQ(s.prefix, PrefixMode::keep);
  EXPECT_EQ(s.command, "astro dev --port $PORT --base \"$CK_BASE_PATH\"");
  EXPECT_EQ(with_start("astro build").prefix, PrefixMode::strip);
}

TEST_F(DetectPrefix, NextKeepsThePrefixAndSaysHowToSetBasePath) {
  auto s = with_start("next dev -p $PORT");
  EXPECT_EQ(s.prefix, PrefixMode::keep);
  EXPECT_EQ(s.command, "next dev -p $PORT");  // no flag exists: basePath is in next.config.js
  EXPECT_NE(s.prefix_note.find("CK_BASE_PATH"), std::string::npos);
  EXPECT_NE(s.prefix_note.find("basePath"), std::string::npos);
  EXPECT_EQ(with_start("next").prefix, PrefixMode::keep);
  EXPECT_EQ(with_start("next start -p $PORT").prefix, PrefixMode::strip);
  EXPECT_EQ(with_start("NODE_OPTIONS=--inspect cross-env X=1 next dev").prefix, PrefixMode::keep);
}

TEST_F(DetectPrefix, SvelteKitIsViteWithTheKitAndNoFlag) {
  extra_deps_ = R"(,"devDependencies":{"@sveltejs/kit":"^2.0.0","vite":"^5"})";
  auto s = with_start("vite dev --port $PORT");
  EXPECT_EQ(s.prefix, PrefixMode::keep);
  EXPECT_EQ(s.command, "vite dev --port $PORT");
  EXPECT_NE(s.prefix_note.find("paths.base"), std::string::npos);
}

TEST_F(DetectPrefix, WebpackDevServer) {
  for (const char* start : {"webpack serve --port $PORT", "webpack-dev-server", "webpack-cli serve"}) {
    auto s = with_start(start);
    EXPECT_EQ(s.prefix, PrefixMode::keep) << start;
    EXPECT_EQ(s.command, start);
    EXPECT_NE(s.prefix_note.find("publicPath"), std::string::npos);
  }
  EXPECT_EQ(with_start("webpack --mode production").prefix, PrefixMode::strip);
}

TEST_F(DetectPrefix, WorkspaceJsonOverridesDetection) {
  write("workspace.json", R"({"prefix": "strip"})");
  auto s = with_start("vite");
  EXPECT_EQ(s.prefix, PrefixMode::strip);
  EXPECT_EQ(s.command, "vite");  // no --base: the app is served at its root
  EXPECT_EQ(s.prefix_note, "");
  write("workspace.json", R"({"prefix": "keep"})");
  s = with_start("node server.js");
  EXPECT_EQ(s.prefix, PrefixMode::keep);
  EXPECT_EQ(s.command, "node server.js");
  s = with_start("vite");
  EXPECT_EQ(s.prefix, PrefixMode::keep);
  EXPECT_EQ(s.command, "vite --base \"$CK_BASE_PATH\"");
  // An explicit command is the user's: nothing appended.
  write("workspace.json", R"({"prefix": "keep", "command": "vite"})");
  EXPECT_EQ(with_start("vite").command, "vite");
}

TEST_F(DetectPrefix, BadPrefixIsAClearError) {
  write("workspace.json", R"({"prefix": "sometimes"})");
  auto s = with_start("node server.js");
  EXPECT_NE(s.error.find("workspace.json"), std::string::npos);
  EXPECT_NE(s.error.find("\"prefix\""), std::string::npos);
  EXPECT_NE(s.error.find("\"strip\" or \"keep\""), std::string::npos);
  write("workspace.json", R"({"prefix": true})");
  EXPECT_NE(with_start("node server.js").error.find("\"prefix\""), std::string::npos);
}

TEST_F(DetectPrefix, PrefixIsPartOfTheFingerprint) {
  auto a = with_start("node server.js");
  write("workspace.json", R"({"prefix": "keep"})");
  auto b = with_start("node server.js");
  EXPECT_NE(a.fingerprint(), b.fingerprint());
}

}  // namespace
}  // namespace ck
