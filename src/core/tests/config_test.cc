#include <filesystem>
#include <fstream>
#include <gtest/gtest.h>
#include <map>

#include "core/config.h"

namespace ck {
namespace {
using namespace std::chrono_literals;

struct TempFile {
  explicit TempFile(const std::string& text) {
    path = std::filesystem::temp_directory_path() /
           ("ck-config-" + std::to_string(::getpid()) + "-" + std::to_string(counter++) + ".yaml");
    std::ofstream(path) << text;
  }
  ~TempFile() { std::filesystem::remove(path); }
  std::filesystem::path path;
  static inline int counter = 0;
};

EnvLookup env_of(std::map<std::string, std::string> vars) {
  return [vars](const std::string& k) -> std::optional<std::string> {
    auto it = vars.find(k);
    if (it == vars.end()) return std::nullopt;
    return it->second;
  };
}

TEST(Config, DefaultsMatchTheDesign) {
  auto c = load_config(std::nullopt, env_of({}), {}).value();
  EXPECT_EQ(c.gateway.listen, "127.0.0.1:8080");
  EXPECT_EQ(c.gateway.request_timeout, 60s);
  EXPECT_EQ(c.gateway.max_body, 64ull << 20);
  EXPECT_EQ(c.storage.kind, "dir");
  EXPECT_EQ(c.storage.path, "./workspaces");
  EXPECT_EQ(c.runtime.kind, "auto");
  EXPECT_EQ(c.runtime.port_min, 8000);
  EXPECT_EQ(c.runtime.port_max, 8100);
  EXPECT_EQ(c.data, "./data");
  EXPECT_EQ(c.idle.idle_after, 2min);
  EXPECT_EQ(c.idle.stop_after, 30min);
  EXPECT_EQ(c.images.at("node"), "node:20-slim");
  EXPECT_EQ(c.limits.memory, 512ull << 20);
}

TEST(Config, FileThenEnvironmentThenFlags) {
  TempFile f(
      "gateway:\n  listen: \"127.0.0.1:1111\"\n  request_timeout: 5s\n"
      "runtime: { kind: process, ports: \"9000-9010\" }\n"
      "data: /tmp/file-data\n");
  auto only_file = load_config(f.path, env_of({}), {}).value();
  EXPECT_EQ(only_file.gateway.listen, "127.0.0.1:1111");
  EXPECT_EQ(only_file.gateway.request_timeout, 5s);
  EXPECT_EQ(only_file.runtime.port_min, 9000);
  EXPECT_EQ(only_file.runtime.port_max, 9010);
  EXPECT_EQ(only_file.data, "/tmp/file-data");

  auto env = env_of({{"CK_GATEWAY_LISTEN", "127.0.0.1:2222"}, {"CK_GATEWAY_REQUEST_TIMEOUT", "7s"}});
  auto with_env = load_config(f.path, env, {}).value();
  EXPECT_EQ(with_env.gateway.listen, "127.0.0.1:2222");
  EXPECT_EQ(with_env.gateway.request_timeout, 7s);
  EXPECT_EQ(with_env.data, "/tmp/file-data");

  auto with_flag = load_config(f.path, env, {{"gateway.listen", "127.0.0.1:3333", "--listen"}}).value();
  EXPECT_EQ(with_flag.gateway.listen, "127.0.0.1:3333");
  EXPECT_EQ(with_flag.gateway.request_timeout, 7s);
}

TEST(Config, GatewayDomainAndControlHost) {
  auto env = env_of({{"CK_GATEWAY_DOMAIN", "Example.Test."},
                     {"CK_GATEWAY_CONTROL_HOST", "monitor.example.test"}});
  auto c = load_config(std::nullopt, env, {}).value();
  EXPECT_EQ(c.gateway.domain, "example.test");
  EXPECT_EQ(c.gateway.control_host, "monitor.example.test");
  EXPECT_EQ(load_config(std::nullopt, env_of({}), {}).value().gateway.domain, "");
  for (auto bad : {"example.test:8080", "http://example.test", "a..b", ".example.test", "a b"}) {
    auto r = load_config(std::nullopt, env_of({{"CK_GATEWAY_DOMAIN", bad}}), {});
    ASSERT_TRUE(r.has_error()) << bad;
    EXPECT_NE(r.error().message.find("is not a host name"), std::string::npos) << r.error().message;
  }
}

TEST(Config, EnvNamesFollowTheKeyPath) {
  EXPECT_EQ(env_name_for("gateway.listen"), "CK_GATEWAY_LISTEN");
  EXPECT_EQ(env_name_for("idle.stop_after"), "CK_IDLE_STOP_AFTER");
  EXPECT_EQ(env_name_for("data"), "CK_DATA");
}

TEST(Config, ErrorsNameTheFileLineAndKey) {
  auto bad_yaml = read_yaml_settings("gateway:\n  listen: [1, 2\n", "ck.yaml");
  ASSERT_TRUE(bad_yaml.has_error());
  EXPECT_NE(bad_yaml.error().message.find("ck.yaml:"), std::string::npos) << bad_yaml.error().message;
  EXPECT_NE(bad_yaml.error().message.find("invalid YAML"), std::string::npos);

  auto unknown = read_yaml_settings("gateway:\n  lissten: x\n", "ck.yaml");
  ASSERT_TRUE(unknown.has_error());
  EXPECT_NE(unknown.error().message.find("ck.yaml:2"), std::string::npos) << unknown.error().message;
  EXPECT_NE(unknown.error().message.find("gateway.lissten"), std::string::npos);

  TempFile f("gateway:\n  request_timeout: soon\n");
  auto bad_value = load_config(f.path, env_of({}), {});
  ASSERT_TRUE(bad_value.has_error());
  EXPECT_NE(bad_value.error().message.find(":2: gateway.request_timeout"), std::string::npos)
      << bad_value.error().message;

  auto bad_env = load_config(std::nullopt, env_of({{"CK_GATEWAY_MAX_BODY", "lots"}}), {});
  ASSERT_TRUE(bad_env.has_error());
  EXPECT_NE(bad_env.error().message.find("CK_GATEWAY_MAX_BODY"), std::string::npos);

  auto bad_listen = load_config(std::nullopt, env_of({}), {{"gateway.listen", "nowhere", "--listen"}});
  ASSERT_TRUE(bad_listen.has_error());
  EXPECT_NE(bad_listen.error().message.find("--listen"), std::string::npos);

  auto missing = load_config(std::filesystem::path("/nonexistent/ck.yaml"), env_of({}), {});
  ASSERT_TRUE(missing.has_error());
  EXPECT_NE(missing.error().message.find("/nonexistent/ck.yaml"), std::string::npos);
}

TEST(Config, ListenAddresses) {
  EXPECT_EQ(parse_listen("127.0.0.1:8080").value(), std::make_pair(std::string("127.0.0.1"), uint16_t{8080}));
  EXPECT_EQ(parse_listen("[::1]:80").value().first, "::1");
  EXPECT_EQ(parse_listen(":9000").value().first, "0.0.0.0");
  EXPECT_TRUE(parse_listen("8080").has_error());
  EXPECT_TRUE(parse_listen("host:99999").has_error());
}

TEST(Config, EmptyFileIsFine) {
  TempFile f("");
  EXPECT_TRUE(load_config(f.path, env_of({}), {}).has_value());
}

}  // namespace
}  // namespace ck
