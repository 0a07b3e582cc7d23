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
  EXPECT_EQ(c.gateway.max_file_body, 10ull << 20);
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

TEST(Config, TlsOffByDefault) {
  auto c = load_config(std::nullopt, env_of({}), {}).value();
  EXPECT_FALSE(c.gateway.tls_enabled());
  EXPECT_TRUE(c.gateway.tls_pairs().empty());
  EXPECT_EQ(c.gateway.tls_reload, 2s);
  EXPECT_EQ(c.gateway.redirect_http, "");
  EXPECT_EQ(c.gateway.hsts, 0s);
}

TEST(Config, TlsFromTheFile) {
  TempFile f(
      "gateway:\n"
      "  listen: 127.0.0.1:8443\n"
      "  tls:\n"
      "    cert: /etc/ck/example.pem\n"
      "    key: /etc/ck/example.key\n"
      "    certs:\n"
      "      - {cert: /etc/ck/other.pem, key: /etc/ck/other.key}\n"
      "      - cert: /etc/ck/third.pem\n"
      "        key: /etc/ck/third.key\n"
      "  tls_reload: 500ms\n"
      "  redirect_http: 127.0.0.1:8081\n"
      "  hsts: 31536000\n");
  auto r = load_config(f.path, env_of({}), {});
  ASSERT_TRUE(r.has_value()) << r.error().message;
  const auto& g = r.value().gateway;
  EXPECT_TRUE(g.tls_enabled());
  std::vector<TlsFiles> want = {{"/etc/ck/example.pem", "/etc/ck/example.key"},
                                {"/etc/ck/other.pem", "/etc/ck/other.key"},
                                {"/etc/ck/third.pem", "/etc/ck/third.key"}};
  EXPECT_EQ(g.tls_pairs(), want);
  EXPECT_EQ(g.tls_reload, 500ms);
  EXPECT_EQ(g.redirect_http, "127.0.0.1:8081");
  EXPECT_EQ(g.hsts, 31536000s);
}

TEST(Config, TlsFromTheEnvironment) {
  auto env = env_of({{"CK_GATEWAY_TLS_CERT", "/c.pem"},
                     {"CK_GATEWAY_TLS_KEY", "/c.key"},
                     {"CK_GATEWAY_TLS_CERTS", "/a.pem:/a.key, /b.pem:/b.key"},
                     {"CK_GATEWAY_TLS_RELOAD", "0"},
                     {"CK_GATEWAY_REDIRECT_HTTP", ":80"},
                     {"CK_GATEWAY_HSTS", "365d"}});
  auto r = load_config(std::nullopt, env, {});
  ASSERT_TRUE(r.has_value()) << r.error().message;
  const auto& g = r.value().gateway;
  std::vector<TlsFiles> want = {{"/c.pem", "/c.key"}, {"/a.pem", "/a.key"}, {"/b.pem", "/b.key"}};
  EXPECT_EQ(g.tls_pairs(), want);
  EXPECT_EQ(g.tls_reload, 0s);
  EXPECT_EQ(g.redirect_http, ":80");
  EXPECT_EQ(g.hsts, std::chrono::hours(24 * 365));
  // Only the extra pairs: the first is the default.
  auto only = load_config(std::nullopt, env_of({{"CK_GATEWAY_TLS_CERTS", "/a.pem:/a.key"}}), {});
  ASSERT_TRUE(only.has_value()) << only.error().message;
  EXPECT_EQ(only.value().gateway.tls_pairs(), (std::vector<TlsFiles>{{"/a.pem", "/a.key"}}));
}

TEST(Config, TlsMistakesAreClear) {
  auto error_of = [](std::map<std::string, std::string> vars) {
    auto r = load_config(std::nullopt, env_of(std::move(vars)), {});
    return r.has_error() ? r.error().message : std::string();
  };
  EXPECT_NE(error_of({{"CK_GATEWAY_TLS_CERT", "/c.pem"}}).find("gateway.tls.key is not"),
            std::string::npos);
  EXPECT_NE(error_of({{"CK_GATEWAY_TLS_KEY", "/c.key"}}).find("gateway.tls.cert is not"),
            std::string::npos);
  EXPECT_NE(error_of({{"CK_GATEWAY_REDIRECT_HTTP", "127.0.0.1:8081"}}).find("TLS is off"),
            std::string::npos);
  auto same = error_of({{"CK_GATEWAY_TLS_CERT", "/c.pem"},
                        {"CK_GATEWAY_TLS_KEY", "/c.key"},
                        {"CK_GATEWAY_REDIRECT_HTTP", "127.0.0.1:8080"}});
  EXPECT_NE(same.find("same address"), std::string::npos) << same;
  for (auto bad : {"/a.pem", "/a.pem:", ":/a.key", "/a:b:c", "/a.pem:/a.key,/b.pem"}) {
    auto m = error_of({{"CK_GATEWAY_TLS_CERTS", bad}});
    EXPECT_NE(m.find("CK_GATEWAY_TLS_CERTS"), std::string::npos) << bad << ": " << m;
    EXPECT_NE(m.find("CERT.pem:KEY.pem"), std::string::npos) << bad << ": " << m;
  }
  EXPECT_NE(error_of({{"CK_GATEWAY_REDIRECT_HTTP", "nowhere"}}).find("listen address"),
            std::string::npos);
  EXPECT_NE(error_of({{"CK_GATEWAY_HSTS", "forever"}}).find("CK_GATEWAY_HSTS"), std::string::npos);

  auto yaml_error = [](const std::string& text) {
    auto r = read_yaml_settings(text, "ck.yaml");
    return r.has_error() ? r.error().message : std::string();
  };
  EXPECT_NE(yaml_error("gateway:\n  tls:\n    certs:\n      - /a.pem\n").find("ck.yaml:3"),
            std::string::npos);
  EXPECT_NE(yaml_error("gateway:\n  tls:\n    certs:\n      - {cert: /a.pem}\n")
                .find("lacks its cert or key"),
            std::string::npos);
  EXPECT_NE(yaml_error("gateway:\n  tls:\n    certs:\n      - {cert: /a.pem, key: /k, x: 1}\n")
                .find("unknown key 'x'"),
            std::string::npos);
  EXPECT_NE(yaml_error("gateway:\n  tls:\n    certs:\n      - {cert: 'a:b.pem', key: /k}\n")
                .find("contains ',' or ':'"),
            std::string::npos);
  // Other keys still refuse lists.
  EXPECT_NE(yaml_error("gateway:\n  tls:\n    cert: [a, b]\n").find("not a list"),
            std::string::npos);
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


TEST(Config, BackupFromTheFileAndTheEnvironment) {
  TempFile f(
      "backup:\n"
      "  destinations:\n"
      "    - {name: nas, url: \"s3://backups/ck\", endpoint: \"http://nas:9000\", encrypt: true}\n"
      "    - name: r2\n"
      "      url: s3://offsite\n"
      "      region: auto\n"
      "      mode: mirror\n"
      "  schedule: 30m\n"
      "  keep: {hourly: 12, daily: 3}\n"
      "  key: from-file\n");
  auto r = load_config(f.path, env_of({{"CK_BACKUP_KEY", "from-env"}}), {});
  ASSERT_TRUE(r.has_value()) << r.error().message;
  const auto& b = r.value().backup;
  ASSERT_EQ(b.destinations.size(), 2u);
  EXPECT_EQ(b.destinations[0].name, "nas");
  EXPECT_EQ(b.destinations[0].url, "s3://backups/ck");
  EXPECT_EQ(b.destinations[0].endpoint, "http://nas:9000");
  EXPECT_TRUE(b.destinations[0].encrypt);
  EXPECT_EQ(b.destinations[1].mode, "mirror");
  EXPECT_EQ(b.destinations[1].region, "auto");
  EXPECT_EQ(b.schedule, std::chrono::minutes(30));
  EXPECT_EQ(b.keep_hourly, 12);
  EXPECT_EQ(b.keep_daily, 3);
  EXPECT_EQ(b.keep_weekly, 4);
  EXPECT_EQ(b.key, "from-env");
  // The environment carries the list as a YAML or JSON flow list.
  auto e = load_config(std::nullopt,
                       env_of({{"CK_BACKUP_DESTINATIONS",
                                R"([{"name": "a", "url": "s3://b1/p"}, {name: c, url: "s3://b2"}])"}}),
                       {});
  ASSERT_TRUE(e.has_value()) << e.error().message;
  ASSERT_EQ(e.value().backup.destinations.size(), 2u);
  EXPECT_EQ(e.value().backup.destinations[1].url, "s3://b2");
}

TEST(Config, BackupMistakesAreClear) {
  auto msg = [](const std::string& text) {
    auto r = parse_backup_destinations(text);
    return r.has_error() ? r.error().message : std::string();
  };
  EXPECT_NE(msg("[{name: a}]").find("lacks its name or url"), std::string::npos);
  EXPECT_NE(msg("[{name: a, url: s3://b, colour: red}]").find("unknown key 'colour'"),
            std::string::npos);
  EXPECT_NE(msg("[{name: a, url: s3://b}, {name: a, url: s3://c}]").find("used twice"),
            std::string::npos);
  EXPECT_NE(msg("[{name: a, url: s3://b, mode: sometimes}]").find("not one of"), std::string::npos);
  EXPECT_NE(msg("{name: a}").find("not a list"), std::string::npos);
  EXPECT_NE(msg(std::string(70000, ' ') + "x").find("64 KiB"), std::string::npos);
  EXPECT_TRUE(parse_backup_destinations("").value().empty());
}

}  // namespace
}  // namespace ck
