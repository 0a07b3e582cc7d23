#include <gtest/gtest.h>
#include <sys/stat.h>

#include "compose/model.h"
#include "compose/tests/test_util.h"

namespace ck::compose {
namespace {

namespace fs = std::filesystem;
using testing::caught;
using testing::error_of;
using testing::TempDir;

LoadOptions opts(const fs::path& dir, Vars vars = {}) {
  LoadOptions o;
  o.dir = dir;
  o.vars = std::move(vars);
  return o;
}

TEST(ComposeLoad, FindFileInComposeOrder) {
  TempDir d;
  EXPECT_FALSE(find_file(d.path()));
  d.write("docker-compose.yml", "services: {}\n");
  EXPECT_EQ(find_file(d.path()), "docker-compose.yml");
  d.write("docker-compose.yaml", "services: {}\n");
  EXPECT_EQ(find_file(d.path()), "docker-compose.yaml");
  d.write("compose.yml", "services: {}\n");
  EXPECT_EQ(find_file(d.path()), "compose.yml");
  d.write("compose.yaml", "services: {}\n");
  EXPECT_EQ(find_file(d.path()), "compose.yaml");
  EXPECT_NE(error_of([] {
              TempDir empty;
              load(opts(empty.path()));
            }).find("no compose.yaml"),
            std::string::npos);
}

TEST(ComposeLoad, DotEnvFeedsInterpolationAndOptionsBeatIt) {
  TempDir d;
  d.write(".env",
          "# comment\n"
          "\n"
          "export TAG=18-alpine\n"
          "PORT=3000 # inline comment\n"
          "GREETING=\"hello\\nworld\"\n"
          "SINGLE='a $b \\n'\n"
          "SPACED = padded \n"
          "OVERRIDDEN=from-env-file\n");
  d.write("compose.yaml", R"(
services:
  web:
    image: node:${TAG}
    ports: ["${PORT}"]
    environment:
      GREETING: ${GREETING}
      SINGLE: ${SINGLE}
      SPACED: ${SPACED}
      WHO: ${OVERRIDDEN}
)");
  Project p = load(opts(d.path(), {{"OVERRIDDEN", "from-options"}}));
  const Service& web = p.services.at("web");
  EXPECT_EQ(web.image, "node:18-alpine");
  EXPECT_EQ(web.ports.at(0).container_port, 3000);
  EXPECT_EQ(web.environment.at("GREETING"), "hello\nworld");
  EXPECT_EQ(web.environment.at("SINGLE"), "a $b \\n");
  EXPECT_EQ(web.environment.at("SPACED"), "padded");
  EXPECT_EQ(web.environment.at("WHO"), "from-options");
  EXPECT_EQ(p.files, std::vector<std::string>{"compose.yaml"});
}

TEST(ComposeLoad, BadDotEnvNamesTheLine) {
  TempDir d;
  d.write(".env", "OK=1\n\nnot a valid line\n");
  d.write("compose.yaml", "services: {a: {image: x}}\n");
  Error e = caught([&] { load(opts(d.path())); });
  EXPECT_EQ(e.where().file, ".env");
  EXPECT_EQ(e.where().line, 3);
}

TEST(ComposeLoad, OverrideFileIsMerged) {
  TempDir d;
  d.write("docker-compose.yml", "services:\n  web:\n    image: web:1\n    environment: [A=1]\n");
  d.write("docker-compose.override.yml",
          "services:\n  web:\n    environment: [B=2]\n  debug:\n    image: dbg\n");
  Project p = load(opts(d.path()));
  EXPECT_EQ(p.files,
            (std::vector<std::string>{"docker-compose.yml", "docker-compose.override.yml"}));
  EXPECT_EQ(p.services.at("web").environment,
            (std::map<std::string, std::string>{{"A", "1"}, {"B", "2"}}));
  EXPECT_EQ(p.services.at("debug").image, "dbg");
  // An error in the override names the override.
  d.write("docker-compose.override.yml", "services:\n  web:\n    ports: [nope]\n");
  Error e = caught([&] { load(opts(d.path())); });
  EXPECT_EQ(e.where().file, "docker-compose.override.yml");
  EXPECT_EQ(e.where().line, 3);
}

TEST(ComposeLoad, EnvFileStringListAndPrecedence) {
  TempDir d;
  d.write("app.env", "A=from-file\nB=from-file\n");
  d.write("conf/more.env", "C=3\n");
  d.write("compose.yaml", R"(
services:
  one:
    image: x
    env_file: app.env
    environment: {B: from-environment}
  two:
    image: x
    env_file:
      - ./app.env
      - path: conf/more.env
      - path: missing.env
        required: false
)");
  Project p = load(opts(d.path()));
  EXPECT_EQ(p.services.at("one").environment,
            (std::map<std::string, std::string>{{"A", "from-file"}, {"B", "from-environment"}}));
  EXPECT_EQ(
      p.services.at("two").environment,
      (std::map<std::string, std::string>{{"A", "from-file"}, {"B", "from-file"}, {"C", "3"}}));
}

TEST(ComposeLoad, EnvFileMissingOrOutsideIsAnErrorNamingTheKey) {
  TempDir d;
  d.write("compose.yaml", "services:\n  a:\n    image: x\n    env_file: [ok.env, missing.env]\n");
  d.write("ok.env", "A=1\n");
  Error missing = caught([&] { load(opts(d.path())); });
  EXPECT_EQ(missing.where().key, "services.a.env_file[1]");
  EXPECT_NE(missing.message().find("does not exist"), std::string::npos);
  d.write("compose.yaml", "services:\n  a:\n    image: x\n    env_file: ../../etc/passwd\n");
  Error outside = caught([&] { load(opts(d.path())); });
  EXPECT_EQ(outside.where().key, "services.a.env_file");
  EXPECT_EQ(outside.where().line, 4);
  EXPECT_NE(outside.message().find("outside the workspace folder"), std::string::npos);
  d.write("compose.yaml", "services:\n  a:\n    image: x\n    env_file: /etc/passwd\n");
  EXPECT_NE(error_of([&] { load(opts(d.path())); }).find("outside the workspace folder"),
            std::string::npos);
  fs::create_symlink("/etc/passwd", d.path() / "link.env");
  d.write("compose.yaml", "services:\n  a:\n    image: x\n    env_file: link.env\n");
  EXPECT_NE(error_of([&] { load(opts(d.path())); }).find("outside the workspace folder"),
            std::string::npos);
  // parse() without a folder refuses env_file rather than reading from the current directory.
  EXPECT_NE(error_of([] {
              parse("services:\n  a: {image: x, env_file: a.env}\n", "c.yml", {});
            }).find("env_file needs the workspace folder"),
            std::string::npos);
}

TEST(ComposeLoad, FifoOrFolderInsteadOfAFileIsRefused) {
  TempDir d;
  d.write("compose.yaml", "services:\n  a: {image: x, env_file: pipe.env}\n");
  ASSERT_EQ(::mkfifo((d.path() / "pipe.env").c_str(), 0600), 0);
  EXPECT_NE(error_of([&] { load(opts(d.path())); }).find("'pipe.env' is not a regular file"),
            std::string::npos);
  fs::create_directory(d.path() / ".env");
  EXPECT_NE(error_of([&] { load(opts(d.path())); }).find("'.env' is not a regular file"),
            std::string::npos);
}

TEST(ComposeLoad, FilesOverTheLimitAreRefused) {
  TempDir d;
  d.write("compose.yaml", "services: {a: {image: x}}\n# " + std::string(2u << 20, 'x') + "\n");
  Error e = caught([&] { load(opts(d.path())); });
  EXPECT_EQ(e.where().file, "compose.yaml");
  EXPECT_NE(e.message().find("larger than 1048576"), std::string::npos);
  d.write("compose.yaml", "services: {a: {image: x, env_file: big.env}}\n");
  d.write("big.env", "A=" + std::string(4096, 'x') + "\n");
  LoadOptions small = opts(d.path());
  small.max_bytes = 1024;
  EXPECT_NE(error_of([&] { load(small); }).find("big.env: the file is larger than 1024"),
            std::string::npos);
}

TEST(ComposeLoad, ComposeFileLinkedFromOutsideIsRefused) {
  TempDir outside;
  outside.write("secret.yml", "services: {a: {image: x}}\n");
  TempDir d;
  fs::create_symlink(outside.path() / "secret.yml", d.path() / "compose.yaml");
  EXPECT_NE(error_of([&] { load(opts(d.path())); }).find("link to outside"), std::string::npos);
}

// The issue's fifth comparison case: interpolation, env_file, profiles and an override file.
TEST(ComposeLoad, InterpolationEnvFileProfilesAndOverride) {
  TempDir d;
  d.write(".env", "WEB_PORT=8000\nCOMPOSE_PROFILES=debug\n");
  d.write("web.env", "DATABASE_URL=postgres://db/app\n");
  d.write("docker-compose.yml", R"(
services:
  web:
    build: {context: ., args: {PORT: "${WEB_PORT}"}}
    env_file: web.env
    expose: ["${WEB_PORT}"]
    depends_on:
      db: {condition: service_healthy}
  db:
    image: postgres:${PG:-16}
    healthcheck: {test: ["CMD", "pg_isready"], interval: 2s}
  adminer:
    image: adminer
    profiles: [tools]
  debugger:
    image: busybox
    profiles: [debug]
)");
  d.write("docker-compose.override.yml", "services:\n  web:\n    environment: [DEBUG=1]\n");
  LoadOptions options = opts(d.path());
  Project p = load(options);
  EXPECT_EQ(p.services.size(), 3u);  // adminer is off, debugger on through .env
  EXPECT_EQ(p.services.count("debugger"), 1u);
  EXPECT_EQ(p.services.at("web").build->args.at("PORT"), "8000");
  EXPECT_EQ(p.services.at("web").expose, std::vector<int>{8000});
  EXPECT_EQ(
      p.services.at("web").environment,
      (std::map<std::string, std::string>{{"DATABASE_URL", "postgres://db/app"}, {"DEBUG", "1"}}));
  EXPECT_EQ(p.services.at("db").image, "postgres:16");
  EXPECT_EQ(start_order(p), (std::vector<std::string>{"db", "debugger", "web"}));
  options.profiles = {"tools"};
  EXPECT_EQ(load(options).services.size(), 4u);
}

}  // namespace
}  // namespace ck::compose

#include "compose/tree.h"

namespace ck::compose {
namespace {

TEST(ComposeEnvText, QuotesExportCommentsAndMultiline) {
  auto env = detail::parse_env_text(
      "export A=1\n"
      "B=\"two words\" # trailing comment\n"
      "C='single $X \\n'\n"
      "D=\"line1\n"
      "line2\"\n"
      "E=x#not-a-comment\n"
      "F=\n"
      "BARE\n",
      "app.env");
  std::vector<std::pair<std::string, std::string>> want = {{"A", "1"},
                                                           {"B", "two words"},
                                                           {"C", "single $X \\n"},
                                                           {"D", "line1\nline2"},
                                                           {"E", "x#not-a-comment"},
                                                           {"F", ""}};
  EXPECT_EQ(env, want);
  Error e = caught([] { detail::parse_env_text("A=1\nB=\"open\n", "app.env"); });
  EXPECT_EQ(e.where().file, "app.env");
  EXPECT_NE(e.message().find("unterminated"), std::string::npos);
}

TEST(ComposeShellSplit, QuotesAndBackslashes) {
  Location where{"f", 1, "k"};
  EXPECT_EQ(detail::split_shell("  a  'b c'd \"e\\\\f\\$g\\x\" h\\ i ''", where),
            (std::vector<std::string>{"a", "b cd", "e\\f$g\\x", "h i", ""}));
  EXPECT_TRUE(detail::split_shell("   ", where).empty());
  EXPECT_NE(error_of([&] { detail::split_shell("a \"b", where); }).find("unterminated"),
            std::string::npos);
}

}  // namespace
}  // namespace ck::compose
