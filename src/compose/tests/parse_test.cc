#include <gtest/gtest.h>

#include <fstream>
#include <sstream>

#include "compose/model.h"
#include "compose/tests/test_util.h"

namespace ck::compose {
namespace {

using testing::caught;
using testing::error_of;
using testing::parse_text;

std::string fixture(const std::string& name) {
  std::ifstream in(std::string(CK_COMPOSE_FIXTURES) + "/" + name);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

TEST(ComposeParse, SeedExample) {
  Project p = parse_text(fixture("seed-express-app.yml"));
  ASSERT_EQ(p.services.size(), 1u);
  const Service& app = p.services.at("app");
  EXPECT_EQ(app.image, "node:18-alpine");
  EXPECT_EQ(app.working_dir, "/app");
  ASSERT_TRUE(app.command);
  EXPECT_EQ(*app.command, (std::vector<std::string>{
                              "sh", "-c", "cp -r /workspace/. /app/ && npm install && npm start"}));
  ASSERT_EQ(app.volumes.size(), 1u);
  EXPECT_EQ(app.volumes[0].kind, Mount::Kind::bind);
  EXPECT_EQ(app.volumes[0].source, "/workspaces/express-app");
  EXPECT_EQ(app.volumes[0].target, "/workspace");
  EXPECT_TRUE(app.volumes[0].read_only);
  EXPECT_EQ(app.volumes[0].where.line, 8);
  EXPECT_EQ(app.volumes[0].where.key, "services.app.volumes[0]");
  EXPECT_EQ(app.environment,
            (std::map<std::string, std::string>{{"NODE_ENV", "development"}, {"PORT", "3000"}}));
  EXPECT_EQ(app.labels.size(), 3u);
  EXPECT_EQ(app.labels.at("traefik.http.routers.express-app.rule"), "PathPrefix(`/express-app`)");
  EXPECT_EQ(app.networks, std::vector<std::string>{"traefik-network"});
  ASSERT_EQ(p.networks.count("traefik-network"), 1u);
  EXPECT_TRUE(p.networks.at("traefik-network").external);
  EXPECT_EQ(p.networks.at("traefik-network").external_name, "traefik-network");
  EXPECT_TRUE(p.warnings.empty()) << p.warnings.front();
  EXPECT_EQ(app.where.line, 3);
}

TEST(ComposeParse, BuildAsStringAndMapping) {
  Project p = parse_text(R"(
services:
  a:
    build: ./app
  b:
    build:
      context: ./b
      dockerfile: Dockerfile.dev
      target: dev
      args:
        - VERSION=1
        - FROM_VARS
        - MISSING
  c:
    build:
      args:
        N: 3
        FLAG: true
)",
                         {{"FROM_VARS", "v"}});
  EXPECT_EQ(p.services.at("a").build->context, "./app");
  const Build& b = *p.services.at("b").build;
  EXPECT_EQ(b.context, "./b");
  EXPECT_EQ(b.dockerfile, "Dockerfile.dev");
  EXPECT_EQ(b.target, "dev");
  EXPECT_EQ(b.args, (std::map<std::string, std::string>{{"VERSION", "1"}, {"FROM_VARS", "v"}}));
  const Build& c = *p.services.at("c").build;
  EXPECT_EQ(c.context, ".");
  EXPECT_EQ(c.args, (std::map<std::string, std::string>{{"N", "3"}, {"FLAG", "true"}}));
}

TEST(ComposeParse, CommandStringIsSplitLikeAShell) {
  Project p = parse_text(R"(
services:
  a:
    image: x
    command: echo 'a b' "c \"d\" $$HOME" e\ f   g
    entrypoint: ["/bin/sh", "-c"]
)");
  EXPECT_EQ(*p.services.at("a").command,
            (std::vector<std::string>{"echo", "a b", "c \"d\" $HOME", "e f", "g"}));
  EXPECT_EQ(*p.services.at("a").entrypoint, (std::vector<std::string>{"/bin/sh", "-c"}));
}

TEST(ComposeParse, CommandWithUnterminatedQuoteIsAnError) {
  Error e = caught([] { parse_text("services:\n  a:\n    image: x\n    command: echo 'oops\n"); });
  EXPECT_EQ(e.where().line, 4);
  EXPECT_EQ(e.where().key, "services.a.command");
  EXPECT_NE(e.message().find("unterminated"), std::string::npos);
}

TEST(ComposeParse, EnvironmentListAndMap) {
  Project p = parse_text(R"(
services:
  a:
    image: x
    environment:
      - A=1
      - B=x=y
      - FROM_VARS
      - MISSING
      - EMPTY=
  b:
    image: x
    environment:
      PORT: 3000
      DEBUG: true
      RATIO: 0.5
      NOTHING:
      FROM_VARS:
)",
                         {{"FROM_VARS", "v"}});
  EXPECT_EQ(p.services.at("a").environment,
            (std::map<std::string, std::string>{
                {"A", "1"}, {"B", "x=y"}, {"FROM_VARS", "v"}, {"EMPTY", ""}}));
  EXPECT_EQ(p.services.at("b").environment,
            (std::map<std::string, std::string>{
                {"PORT", "3000"}, {"DEBUG", "true"}, {"RATIO", "0.5"}, {"FROM_VARS", "v"}}));
}

TEST(ComposeParse, LabelsListAndMap) {
  Project p = parse_text(R"(
services:
  a:
    image: x
    labels: ["a=1", "bare"]
  b:
    image: x
    labels:
      n: 1
      yes_: yes
)");
  EXPECT_EQ(p.services.at("a").labels,
            (std::map<std::string, std::string>{{"a", "1"}, {"bare", ""}}));
  EXPECT_EQ(p.services.at("b").labels,
            (std::map<std::string, std::string>{{"n", "1"}, {"yes_", "yes"}}));
}

TEST(ComposeParse, PortsShortSyntax) {
  Project p = parse_text(R"(
services:
  a:
    image: x
    ports:
      - "8080"
      - "3000:3000"
      - "127.0.0.1:4000:3001"
      - "5000-5001:6000-6001"
      - "53:53/udp"
      - 9000
      - "[::1]:7000:7001"
      - "127.0.0.1::8000"
)");
  const auto& ports = p.services.at("a").ports;
  ASSERT_EQ(ports.size(), 9u);
  EXPECT_EQ(ports[0].container_port, 8080);
  EXPECT_EQ(ports[0].host_port, 0);
  EXPECT_EQ(ports[1].host_port, 3000);
  EXPECT_EQ(ports[1].container_port, 3000);
  EXPECT_EQ(ports[2].host_ip, "127.0.0.1");
  EXPECT_EQ(ports[2].host_port, 4000);
  EXPECT_EQ(ports[2].container_port, 3001);
  EXPECT_EQ(ports[3].host_port, 5000);
  EXPECT_EQ(ports[3].container_port, 6000);
  EXPECT_EQ(ports[4].host_port, 5001);
  EXPECT_EQ(ports[4].container_port, 6001);
  EXPECT_EQ(ports[5].protocol, "udp");
  EXPECT_EQ(ports[5].container_port, 53);
  EXPECT_EQ(ports[6].container_port, 9000);
  EXPECT_EQ(ports[7].host_ip, "::1");
  EXPECT_EQ(ports[7].host_port, 7000);
  EXPECT_EQ(ports[7].container_port, 7001);
  EXPECT_EQ(ports[8].host_ip, "127.0.0.1");
  EXPECT_EQ(ports[8].host_port, 0);
  EXPECT_EQ(ports[8].container_port, 8000);
}

TEST(ComposeParse, PortsLongSyntax) {
  Project p = parse_text(R"(
services:
  a:
    image: x
    ports:
      - target: 80
        published: "8080"
        host_ip: 127.0.0.1
        protocol: udp
        mode: host
      - target: 81
)");
  const auto& ports = p.services.at("a").ports;
  ASSERT_EQ(ports.size(), 2u);
  EXPECT_EQ(ports[0].container_port, 80);
  EXPECT_EQ(ports[0].host_port, 8080);
  EXPECT_EQ(ports[0].host_ip, "127.0.0.1");
  EXPECT_EQ(ports[0].protocol, "udp");
  EXPECT_EQ(ports[1].container_port, 81);
  EXPECT_EQ(ports[1].host_port, 0);
}

TEST(ComposeParse, BadPortsAreErrorsNamingTheEntry) {
  for (const char* bad : {"\"70000\"", "abc", "\"1:2:3:4\"", "\"80/xyz\"", "\"0\"",
                          "\"3000-3002:4000-4001\"", "\"1-5000\"", "[1]"}) {
    std::string text =
        std::string("services:\n  a:\n    image: x\n    ports:\n      - ") + bad + "\n";
    Error e = caught([&] { parse_text(text); });
    EXPECT_EQ(e.where().file, "docker-compose.yml") << bad;
    EXPECT_EQ(e.where().line, 5) << bad;
    EXPECT_EQ(e.where().key, "services.a.ports[0]") << bad;
  }
  Error e = caught(
      [] { parse_text("services:\n  a:\n    image: x\n    ports:\n      - {published: 80}\n"); });
  EXPECT_NE(e.message().find("target"), std::string::npos);
}

TEST(ComposeParse, Expose) {
  Project p = parse_text(R"(
services:
  a:
    image: x
    expose: ["3000", 3001, "3002/tcp", "4000-4001"]
)");
  EXPECT_EQ(p.services.at("a").expose, (std::vector<int>{3000, 3001, 3002, 4000, 4001}));
  EXPECT_NE(error_of([] {
              parse_text("services:\n  a:\n    image: x\n    expose: [http]\n");
            }).find("docker-compose.yml:4: services.a.expose[0]"),
            std::string::npos);
}

TEST(ComposeParse, VolumesShortSyntax) {
  Project p = parse_text(R"(
services:
  a:
    image: x
    volumes:
      - data:/var/lib/data
      - ./dir:/path:ro
      - /abs:/path2
      - /anonymous
      - .:/code:rw,z
      - ~/x:/home
volumes:
  data:
)");
  const auto& v = p.services.at("a").volumes;
  ASSERT_EQ(v.size(), 6u);
  EXPECT_EQ(v[0].kind, Mount::Kind::volume);
  EXPECT_EQ(v[0].source, "data");
  EXPECT_EQ(v[0].target, "/var/lib/data");
  EXPECT_FALSE(v[0].read_only);
  EXPECT_EQ(v[1].kind, Mount::Kind::bind);
  EXPECT_EQ(v[1].source, "./dir");
  EXPECT_TRUE(v[1].read_only);
  EXPECT_EQ(v[2].kind, Mount::Kind::bind);
  EXPECT_EQ(v[2].source, "/abs");
  EXPECT_EQ(v[3].kind, Mount::Kind::volume);
  EXPECT_EQ(v[3].source, "");
  EXPECT_EQ(v[3].target, "/anonymous");
  EXPECT_EQ(v[4].source, ".");
  EXPECT_FALSE(v[4].read_only);
  EXPECT_EQ(v[5].kind, Mount::Kind::bind);
  EXPECT_EQ(v[5].source, "~/x");
}

TEST(ComposeParse, VolumesLongSyntax) {
  Project p = parse_text(R"(
services:
  a:
    image: x
    volumes:
      - type: bind
        source: ./src
        target: /src
        read_only: true
      - type: volume
        source: data
        target: /data
        volume: {nocopy: true}
      - type: tmpfs
        target: /tmp
    tmpfs: /run
volumes:
  data: {}
)");
  const auto& v = p.services.at("a").volumes;
  ASSERT_EQ(v.size(), 4u);
  EXPECT_EQ(v[0].kind, Mount::Kind::bind);
  EXPECT_EQ(v[0].source, "./src");
  EXPECT_TRUE(v[0].read_only);
  EXPECT_EQ(v[1].kind, Mount::Kind::volume);
  EXPECT_EQ(v[1].source, "data");
  EXPECT_EQ(v[2].kind, Mount::Kind::tmpfs);
  EXPECT_EQ(v[2].target, "/tmp");
  EXPECT_EQ(v[3].kind, Mount::Kind::tmpfs);
  EXPECT_EQ(v[3].target, "/run");
}

TEST(ComposeParse, VolumeErrors) {
  EXPECT_NE(error_of([] {
              parse_text("services:\n  a:\n    image: x\n    volumes: [\"./x:rel\"]\n");
            }).find("services.a.volumes[0]: the target is an absolute path"),
            std::string::npos);
  EXPECT_NE(error_of([] {
              parse_text("services:\n  a:\n    image: x\n    volumes: [\"./x:/y:bogus\"]\n");
            }).find("unknown volume mode"),
            std::string::npos);
  EXPECT_NE(error_of([] {
              parse_text("services:\n  a:\n    image: x\n    volumes: [\"data:/y\"]\n");
            }).find("volume 'data' is not declared"),
            std::string::npos);
  EXPECT_NE(
      error_of([] {
        parse_text(
            "services:\n  a:\n    image: x\n    volumes:\n      - {type: npipe, target: /x}\n");
      }).find("expected volume, bind or tmpfs"),
      std::string::npos);
}

TEST(ComposeParse, NetworksListAndMap) {
  Project p = parse_text(R"(
services:
  a:
    image: x
    networks: [front, back]
  b:
    image: x
    networks:
      back:
        aliases: [db]
      default:
networks:
  front:
  back:
    name: custom
  outside:
    external: true
    name: shared-net
)");
  EXPECT_EQ(p.services.at("a").networks, (std::vector<std::string>{"front", "back"}));
  EXPECT_EQ(p.services.at("b").networks, (std::vector<std::string>{"back", "default"}));
  EXPECT_TRUE(p.networks.at("outside").external);
  EXPECT_EQ(p.networks.at("outside").external_name, "shared-net");
  EXPECT_FALSE(p.networks.at("back").external);
  // aliases and the custom name are warned about, not applied.
  EXPECT_EQ(p.warnings.size(), 2u);
  EXPECT_NE(error_of([] {
              parse_text("services:\n  a:\n    image: x\n    networks: [nope]\n");
            }).find("network 'nope' is not declared"),
            std::string::npos);
}

TEST(ComposeParse, DependsOnBothSyntaxes) {
  Project p = parse_text(R"(
services:
  web:
    image: x
    depends_on: [db, cache]
  worker:
    image: x
    depends_on:
      db:
        condition: service_healthy
      migrate:
        condition: service_completed_successfully
        required: false
      cache:
  db: {image: x}
  cache: {image: x}
  migrate: {image: x}
)");
  const auto& web = p.services.at("web").depends_on;
  ASSERT_EQ(web.size(), 2u);
  EXPECT_EQ(web[0].service, "db");
  EXPECT_EQ(web[0].condition, Dependency::Condition::started);
  const auto& worker = p.services.at("worker").depends_on;
  ASSERT_EQ(worker.size(), 3u);
  EXPECT_EQ(worker[0].condition, Dependency::Condition::healthy);
  EXPECT_EQ(worker[1].condition, Dependency::Condition::completed_successfully);
  EXPECT_FALSE(worker[1].required);
  EXPECT_TRUE(worker[2].required);
  EXPECT_EQ(worker[1].where.line, 11);
}

TEST(ComposeParse, DependsOnErrors) {
  Error e = caught([] {
    parse_text(
        "services:\n  web:\n    image: x\n    depends_on:\n      - dbb\n  db:\n    image: x\n");
  });
  EXPECT_EQ(e.where().line, 5);
  EXPECT_EQ(e.where().key, "services.web.depends_on[0]");
  EXPECT_NE(e.message().find("'dbb'"), std::string::npos);
  EXPECT_NE(e.message().find("services: db, web"), std::string::npos);
  EXPECT_NE(error_of([] {
              parse_text(
                  "services:\n  web:\n    image: x\n    depends_on:\n      db: {condition: "
                  "ready}\n  db: {image: x}\n");
            }).find("expected service_started, service_healthy"),
            std::string::npos);
}

TEST(ComposeParse, HealthcheckForms) {
  Project p = parse_text(R"(
services:
  a:
    image: x
    healthcheck:
      test: curl -f http://localhost/
      interval: 1m30s
      timeout: 10s
      start_period: 500ms
      retries: 5
  b:
    image: x
    healthcheck:
      test: ["CMD", "pg_isready", "-U", "postgres"]
      interval: 1.5s
  c:
    image: x
    healthcheck:
      test: ["NONE"]
  d:
    image: x
    healthcheck:
      disable: true
)");
  const Healthcheck& a = *p.services.at("a").healthcheck;
  EXPECT_EQ(a.test, (std::vector<std::string>{"CMD-SHELL", "curl -f http://localhost/"}));
  EXPECT_EQ(a.interval, std::chrono::milliseconds(90000));
  EXPECT_EQ(a.timeout, std::chrono::milliseconds(10000));
  EXPECT_EQ(a.start_period, std::chrono::milliseconds(500));
  EXPECT_EQ(a.retries, 5);
  EXPECT_FALSE(a.disable);
  const Healthcheck& b = *p.services.at("b").healthcheck;
  EXPECT_EQ(b.test, (std::vector<std::string>{"CMD", "pg_isready", "-U", "postgres"}));
  EXPECT_EQ(b.interval, std::chrono::milliseconds(1500));
  EXPECT_EQ(b.timeout, std::chrono::milliseconds(30000));
  EXPECT_EQ(b.retries, 3);
  EXPECT_TRUE(p.services.at("c").healthcheck->disable);
  EXPECT_TRUE(p.services.at("d").healthcheck->disable);
}

TEST(ComposeParse, BadDurationAndTestAreErrors) {
  for (const char* bad : {"10", "10x", "s", "1m30", "-5s", "abc"}) {
    Error e = caught([&] {
      parse_text(std::string("services:\n  a:\n    image: x\n    healthcheck:\n      interval: ") +
                 bad + "\n");
    });
    EXPECT_EQ(e.where().line, 5) << bad;
    EXPECT_EQ(e.where().key, "services.a.healthcheck.interval") << bad;
    EXPECT_NE(e.message().find("1m30s"), std::string::npos) << bad;
  }
  EXPECT_NE(
      error_of([] {
        parse_text("services:\n  a:\n    image: x\n    healthcheck:\n      test: [curl, x]\n");
      }).find("starts with CMD, CMD-SHELL or NONE"),
      std::string::npos);
}

TEST(ComposeParse, RestartWorkingDirUser) {
  Project p = parse_text(R"(
services:
  a: {image: x, restart: "on-failure:3", working_dir: /srv, user: "1000:1000"}
  b: {image: x, restart: unless-stopped, user: 1000}
)");
  EXPECT_EQ(p.services.at("a").restart, "on-failure:3");
  EXPECT_EQ(p.services.at("a").working_dir, "/srv");
  EXPECT_EQ(p.services.at("a").user, "1000:1000");
  EXPECT_EQ(p.services.at("b").restart, "unless-stopped");
  EXPECT_EQ(p.services.at("b").user, "1000");
  EXPECT_NE(error_of([] {
              parse_text("services:\n  a: {image: x, restart: sometimes}\n");
            }).find("expected no, always, on-failure[:N] or unless-stopped"),
            std::string::npos);
  EXPECT_NE(error_of([] {
              parse_text("services:\n  a: {image: x, working_dir: rel}\n");
            }).find("absolute path"),
            std::string::npos);
}

TEST(ComposeParse, Limits) {
  Project p = parse_text(R"(
services:
  a:
    image: x
    deploy:
      resources:
        limits: {memory: 512M, cpus: "0.5", pids: 100}
        reservations: {memory: 10M}
  b: {image: x, mem_limit: 1g, cpus: 2, pids_limit: 50}
  c: {image: x, mem_limit: 1048576}
  d: {image: x, mem_limit: 1.5gb, pids_limit: -1}
)");
  EXPECT_EQ(p.services.at("a").memory, 512ull << 20);
  EXPECT_DOUBLE_EQ(p.services.at("a").cpus, 0.5);
  EXPECT_EQ(p.services.at("a").pids, 100);
  EXPECT_EQ(p.services.at("b").memory, 1ull << 30);
  EXPECT_DOUBLE_EQ(p.services.at("b").cpus, 2);
  EXPECT_EQ(p.services.at("b").pids, 50);
  EXPECT_EQ(p.services.at("c").memory, 1048576u);
  EXPECT_EQ(p.services.at("d").memory, 3ull << 29);
  EXPECT_EQ(p.services.at("d").pids, 0);
  EXPECT_EQ(p.warnings.size(), 1u);  // reservations
  for (const char* bad : {"lots", "12q", "1e999", "99999999999999999999g"}) {
    EXPECT_NE(error_of([&] {
                parse_text(std::string("services:\n  a: {image: x, mem_limit: ") + bad + "}\n");
              }).find("services.a.mem_limit"),
              std::string::npos)
        << bad;
  }
  EXPECT_NE(error_of([] {
              parse_text("services:\n  a: {image: x, cpus: many}\n");
            }).find("expected a number of CPUs"),
            std::string::npos);
}

TEST(ComposeParse, ProfilesFilterServices) {
  const char* text = R"(
services:
  web: {image: x}
  debug: {image: x, profiles: [dev]}
  tools: {image: x, profiles: [tools, ops]}
)";
  Project p = parse_text(text);
  EXPECT_EQ(p.services.size(), 1u);
  EXPECT_EQ(p.services.count("web"), 1u);
  Project q = parse_text(text, {{"COMPOSE_PROFILES", "dev, ops"}});
  EXPECT_EQ(q.services.size(), 3u);
  Project all = parse_text(text, {{"COMPOSE_PROFILES", "*"}});
  EXPECT_EQ(all.services.size(), 3u);
}

TEST(ComposeParse, DependencyOnAnInactiveProfile) {
  const char* text = R"(
services:
  web:
    image: x
    depends_on:
      debug: {condition: service_started, required: %s}
  debug: {image: x, profiles: [dev]}
)";
  char buf[512];
  std::snprintf(buf, sizeof buf, text, "true");
  Error e = caught([&] { parse_text(buf); });
  EXPECT_NE(e.message().find("only runs with profile dev"), std::string::npos);
  EXPECT_EQ(e.where().key, "services.web.depends_on.debug");
  std::snprintf(buf, sizeof buf, text, "false");
  Project p = parse_text(buf);
  EXPECT_TRUE(p.services.at("web").depends_on.empty());
}

TEST(ComposeParse, RefusedKeysAreRecordedWithTheirLocation) {
  Project p = parse_text(R"(
services:
  a:
    image: x
    privileged: true
    cap_add: [SYS_ADMIN]
    pid: host
    ipc: host
    network_mode: host
    devices: ["/dev/sda:/dev/sda"]
    security_opt: ["seccomp:unconfined"]
    userns_mode: host
    cgroup_parent: /
    volumes_from: [other]
    sysctls: {net.ipv4.ip_forward: 1}
  b:
    image: x
    privileged: false
    network_mode: bridge
    ipc: private
    cap_add: []
  c:
    image: x
    network_mode: none
)");
  const auto& r = p.services.at("a").refused;
  for (const char* k :
       {"privileged", "cap_add", "pid", "ipc", "network_mode", "devices", "security_opt",
        "userns_mode", "cgroup_parent", "volumes_from", "sysctls"}) {
    ASSERT_EQ(r.count(k), 1u) << k;
    EXPECT_EQ(r.at(k).key, std::string("services.a.") + k);
    EXPECT_EQ(r.at(k).file, "docker-compose.yml");
  }
  EXPECT_EQ(r.at("privileged").line, 5);
  EXPECT_EQ(r.at("sysctls").line, 15);
  EXPECT_TRUE(p.services.at("b").refused.empty());
  EXPECT_EQ(p.services.at("b").network_mode, "");
  EXPECT_EQ(p.services.at("c").network_mode, "none");
}

TEST(ComposeParse, UnknownKeysWarnOncePerKey) {
  Project p = parse_text(R"(
x-common: &common
  anything: goes
services:
  a:
    image: x
    container_name: fixed
    stop_grace_period: 5s
    x-mine: ok
    healthcheck:
      test: "true"
      start_interval: 1s
secrets:
  s: {file: ./s}
)");
  ASSERT_EQ(p.warnings.size(), 3u);
  EXPECT_EQ(p.warnings[0],
            "docker-compose.yml:13: secrets: not supported by CloudyKnight; ignored");
  EXPECT_EQ(p.warnings[1],
            "docker-compose.yml:7: services.a.container_name: not supported by CloudyKnight; "
            "ignored");
  EXPECT_NE(p.warnings[2].find("services.a.healthcheck.start_interval"), std::string::npos);
}

// A key that is not Compose at all is a typo until shown otherwise: refused, as docker-compose
// refuses it, with the key it probably meant; running without the environment is worse.
TEST(ComposeParse, KeysOutsideTheSpecAreRefused) {
  std::string e = error_of([] {
    parse_text("services:\n  a:\n    image: x\n    enviroment:\n      A: b\n");
  });
  EXPECT_NE(e.find("docker-compose.yml:4: services.a.enviroment"), std::string::npos) << e;
  EXPECT_NE(e.find("did you mean `environment`?"), std::string::npos) << e;
  e = error_of([] { parse_text("services:\n  a: {image: x}\nvolumez:\n  d:\n"); });
  EXPECT_NE(e.find("did you mean `volumes`?"), std::string::npos) << e;
  e = error_of([] { parse_text("services:\n  a:\n    image: x\n    frobnicate: 1\n"); });
  EXPECT_NE(e.find("name it x-"), std::string::npos) << e;
  // A key of the spec CloudyKnight does not apply stays a warning.
  Project p = parse_text("services:\n  a:\n    image: x\n    dns: [1.1.1.1]\n");
  ASSERT_EQ(p.warnings.size(), 1u);
  EXPECT_NE(p.warnings[0].find("services.a.dns"), std::string::npos);
}

TEST(ComposeParse, HostnameStopTtyExtraHosts) {
  Project p = parse_text(R"(
services:
  a:
    image: x
    hostname: db-main.local
    stop_signal: SIGINT
    stop_grace_period: 1m30s
    tty: true
    stdin_open: false
    extra_hosts:
      - "somehost:162.242.195.82"
      - "v6host=[::1]"
  b:
    image: x
    extra_hosts: {other: 10.0.0.5}
)");
  EXPECT_TRUE(p.warnings.empty()) << p.warnings.front();
  const Service& a = p.services.at("a");
  EXPECT_EQ(a.hostname, "db-main.local");
  EXPECT_EQ(a.stop_signal, "SIGINT");
  EXPECT_EQ(a.stop_grace_period, std::chrono::seconds(90));
  EXPECT_EQ(a.tty, true);
  EXPECT_EQ(a.stdin_open, false);
  EXPECT_EQ(a.extra_hosts, (std::vector<std::string>{"somehost:162.242.195.82", "v6host:::1"}));
  EXPECT_EQ(p.services.at("b").extra_hosts, std::vector<std::string>{"other:10.0.0.5"});
  for (const char* bad : {"    hostname: -bad\n", "    hostname: a_b\n", "    stop_signal: kill me\n",
                          "    stop_signal: 0\n", "    extra_hosts: [nohost]\n",
                          "    extra_hosts: [\"h:1.2.3.4; rm\"]\n", "    tty: maybe\n"}) {
    EXPECT_FALSE(error_of([&] { parse_text(std::string("services:\n  a:\n    image: x\n") + bad); })
                     .empty())
        << bad;
  }
}

TEST(ComposeParse, TopLevelNameVolumesNetworks) {
  Project p = parse_text(R"(
name: my-app
services:
  a: {image: x}
volumes:
  data:
    labels: {team: web}
  old:
    external: true
  renamed:
    external: {name: real}
networks:
  net: {}
)");
  EXPECT_EQ(p.name, "my-app");
  EXPECT_EQ(p.volumes.at("data").labels.at("team"), "web");
  EXPECT_FALSE(p.volumes.at("data").external);
  EXPECT_TRUE(p.volumes.at("old").external);
  EXPECT_EQ(p.volumes.at("old").external_name, "old");
  EXPECT_EQ(p.volumes.at("renamed").external_name, "real");
  EXPECT_EQ(p.volumes.at("old").where.line, 8);
  EXPECT_FALSE(p.networks.at("net").external);
  EXPECT_NE(error_of([] {
              parse_text("name: Bad Name\nservices:\n  a: {image: x}\n");
            }).find("docker-compose.yml:1: name:"),
            std::string::npos);
}

TEST(ComposeParse, InvalidFilesNameFileLineAndKey) {
  EXPECT_EQ(error_of([] { parse_text("- a\n- b\n"); }),
            "docker-compose.yml:1: the file must be a mapping with a top-level `services:` key");
  Error syntax = caught([] { parse_text("services:\n  a:\n    image: [x\n  b: {\n"); });
  EXPECT_GE(syntax.where().line, 3);
  EXPECT_NE(syntax.message().find("YAML syntax error"), std::string::npos);
  Error type = caught([] { parse_text("services:\n  a:\n    image: [x]\n"); });
  EXPECT_EQ(type.where().line, 3);
  EXPECT_EQ(type.where().key, "services.a.image");
  EXPECT_EQ(type.message(), "expected a string");
  EXPECT_NE(error_of([] {
              parse_text("services:\n  a:\n    environment: {A: 1}\n");
            }).find("needs an image or a build"),
            std::string::npos);
  EXPECT_NE(error_of([] {
              parse_text("services:\n  -bad: {image: x}\n");
            }).find("docker-compose.yml:2: services.-bad: a service name must start"),
            std::string::npos);
  EXPECT_NE(error_of([] {
              parse_text("services:\n  a: {image: x}\n  a: {image: y}\n");
            }).find("duplicate key"),
            std::string::npos);
  EXPECT_NE(error_of([] { parse_text("services: {}\n"); }).find("defines no services"),
            std::string::npos);
  EXPECT_NE(error_of([] {
              parse_text("services:\n  a: {image: x, ports: \"80\"}\n");
            }).find("services.a.ports: expected a list of ports"),
            std::string::npos);
}

TEST(ComposeParse, TwoMegabyteFileIsRefused) {
  std::string text = "services:\n  a: {image: x}\n# " + std::string(2u << 20, 'x') + "\n";
  EXPECT_NE(error_of([&] { parse_text(text); }).find("the limit is 1048576"), std::string::npos);
}

TEST(ComposeParse, BillionLaughsIsRefused) {
  std::string text =
      "a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n";
  std::string prev = "a";
  for (char c = 'b'; c <= 'j'; ++c) {
    text += std::string(1, c) + ": &" + c + " [";
    for (int i = 0; i < 10; ++i) {
      text += (i ? ",*" : "*") + prev;
    }
    text += "]\n";
    prev = std::string(1, c);
  }
  text += "services:\n  a:\n    image: x\n    command: *j\n";
  Error e = caught([&] { parse_text(text); });
  EXPECT_NE(e.message().find("YAML bomb"), std::string::npos) << e.what();
}

TEST(ComposeParse, WideAliasOfLongStringsIsRefusedByBytes) {
  std::string text = "s: &s \"" + std::string(100000, 'x') + "\"\nl: &l [";
  for (int i = 0; i < 200; ++i) {
    text += (i ? ",*s" : "*s");
  }
  text += "]\nm: [";
  for (int i = 0; i < 200; ++i) {
    text += (i ? ",*l" : "*l");
  }
  text += "]\nservices: {a: {image: x}}\n";
  EXPECT_NE(error_of([&] { parse_text(text); }).find("MiB of text"), std::string::npos);
}

TEST(ComposeParse, DeepNestingIsRefused) {
  std::string deep = std::string(5000, '[') + std::string(5000, ']');
  EXPECT_NE(error_of([&] { parse_text("x-deep: " + deep + "\nservices: {a: {image: x}}\n"); }),
            "(no error)");
  std::string mid = std::string(100, '[') + std::string(100, ']');
  EXPECT_NE(error_of([&] {
              parse_text("x-deep: " + mid + "\nservices: {a: {image: x}}\n");
            }).find("nests deeper than 64"),
            std::string::npos);
}

TEST(ComposeParse, HugeListsAndPortRangesAreBounded) {
  std::string many = "services:\n  a:\n    image: x\n    environment:\n";
  for (int i = 0; i < 10001; ++i) {
    many += "      - V" + std::to_string(i) + "=1\n";
  }
  EXPECT_NE(error_of([&] { parse_text(many); }).find("more than 10000 items"), std::string::npos);
  std::string ranges = "services:\n  a:\n    image: x\n    ports:\n";
  for (int i = 0; i < 12; ++i) {
    ranges += "      - \"" + std::to_string(2000 + i * 1000) + "-" +
              std::to_string(2000 + i * 1000 + 998) + "\"\n";
  }
  EXPECT_NE(error_of([&] { parse_text(ranges); }).find("at most 10000 ports"), std::string::npos);
}

TEST(ComposeParse, InvalidUtf8AndControlCharactersAreRefused) {
  Error bad = caught([] { parse_text("services:\n  a:\n    image: \"x\xff\"\n"); });
  EXPECT_EQ(bad.where().line, 3);
  EXPECT_NE(bad.message().find("not valid UTF-8"), std::string::npos);
  EXPECT_NE(error_of([] {
              parse_text(std::string("services:\n  a: {image: x\0}\n", 26));
            }).find("control character"),
            std::string::npos);
  EXPECT_EQ(parse_text("services:\n  a: {image: \"caf\xc3\xa9 \xe2\x9c\x93 \xf0\x9f\x90\xb3\"}\n")
                .services.at("a")
                .image,
            "caf\xc3\xa9 \xe2\x9c\x93 \xf0\x9f\x90\xb3");
}

TEST(ComposeParse, MergeKeysAndAnchors) {
  Project p = parse_text(R"(
x-base: &base
  image: node:18
  restart: always
  environment:
    A: "1"
services:
  a:
    <<: *base
    restart: "no"
  b:
    <<: [*base]
    image: other
)");
  EXPECT_EQ(p.services.at("a").image, "node:18");
  EXPECT_EQ(p.services.at("a").restart, "no");
  EXPECT_EQ(p.services.at("a").environment.at("A"), "1");
  EXPECT_EQ(p.services.at("b").image, "other");
  EXPECT_EQ(p.services.at("b").restart, "always");
}

TEST(ComposeParse, InterpolationAppliesToValuesBeforeTyping) {
  Project p = parse_text(R"(
services:
  web:
    image: "node:${NODE:-18}"
    ports: ["${PORT}:${PORT}"]
    environment:
      ${KEY}: $VALUE
    labels:
      cost: "$$5"
)",
                         {{"PORT", "3000"}, {"VALUE", "v"}});
  const Service& s = p.services.at("web");
  EXPECT_EQ(s.image, "node:18");
  EXPECT_EQ(s.ports.at(0).host_port, 3000);
  EXPECT_EQ(s.environment.at("${KEY}"), "v");
  EXPECT_EQ(s.labels.at("cost"), "$5");
}

TEST(ComposeToYaml, LongAndOddKeysReadBack) {
  Project p;
  p.files = {"x.yml"};
  Service s;
  s.name = "a";
  s.image = "x";
  s.labels[std::string(3000, 'k')] = "v";
  s.labels[std::string("\x01\r\n\"\\", 5)] = "ctl";
  s.environment["<<"] = "merge?";
  p.services["a"] = s;
  Project q = parse_text(to_yaml(p));
  EXPECT_EQ(q.services.at("a").labels, s.labels);
  EXPECT_EQ(q.services.at("a").environment, s.environment);
}

TEST(ComposeStartOrder, TopologicalWithTiesByName) {
  Project p = parse_text(R"(
services:
  web: {image: x, depends_on: [api, cache]}
  api: {image: x, depends_on: [db]}
  db: {image: x}
  cache: {image: x}
  zeta: {image: x}
)");
  EXPECT_EQ(start_order(p), (std::vector<std::string>{"cache", "db", "api", "web", "zeta"}));
}

TEST(ComposeStartOrder, CycleIsNamed) {
  Error e = caught([] {
    parse_text(R"(
services:
  a: {image: x, depends_on: [b]}
  b: {image: x, depends_on: [c]}
  c: {image: x, depends_on: [a]}
  d: {image: x}
)");
  });
  EXPECT_NE(e.message().find("a -> b -> c -> a"), std::string::npos) << e.what();
  EXPECT_NE(
      error_of([] { parse_text("services:\n  a: {image: x, depends_on: [a]}\n"); }).find("a -> a"),
      std::string::npos);
}

TEST(ComposeToYaml, RoundTripsServices) {
  Project p = parse_text(R"(
name: demo
services:
  web:
    build: {context: ./web, dockerfile: Dockerfile, args: {V: "1"}, target: prod}
    command: ["sh", "-c", "echo $$HOME costs $$5"]
    entrypoint: /entry
    environment: {A: "x$$y", PORT: 3000, EMPTY: ""}
    ports: ["127.0.0.1:8080:80", "53/udp"]
    expose: [9000]
    volumes: ["./src:/src:ro", "data:/data", "/anon"]
    tmpfs: /tmp
    networks: [back]
    depends_on: {db: {condition: service_healthy}, job: {condition: service_completed_successfully, required: false}}
    healthcheck: {test: "curl -f localhost", interval: 1m30s, timeout: 1500ms, retries: 2}
    restart: always
    working_dir: /srv
    user: "1000"
    labels: {"cloudyknight.route": "true", note: "true", "<<": "odd key", "a: b": "$$"}
    mem_limit: 256m
    cpus: 0.1
    pids_limit: 64
    network_mode: none
  db:
    image: postgres:16
    healthcheck: {test: ["NONE"]}
  job: {image: "busybox", profiles: [x]}
volumes:
  data: {labels: {a: b}}
  ext: {external: true, name: real}
networks:
  back: {}
)",
                         {{"COMPOSE_PROFILES", "x"}});
  std::string text = to_yaml(p);
  Project q = parse_text(text, {{"COMPOSE_PROFILES", "x"}});
  EXPECT_EQ(q.name, p.name);
  ASSERT_EQ(q.services.size(), p.services.size()) << text;
  for (const auto& [name, a] : p.services) {
    const Service& b = q.services.at(name);
    SCOPED_TRACE(name + "\n" + text);
    EXPECT_EQ(a.image, b.image);
    EXPECT_EQ(a.build.has_value(), b.build.has_value());
    if (a.build) {
      EXPECT_EQ(a.build->context, b.build->context);
      EXPECT_EQ(a.build->dockerfile, b.build->dockerfile);
      EXPECT_EQ(a.build->args, b.build->args);
      EXPECT_EQ(a.build->target, b.build->target);
    }
    EXPECT_EQ(a.command, b.command);
    EXPECT_EQ(a.entrypoint, b.entrypoint);
    EXPECT_EQ(a.environment, b.environment);
    ASSERT_EQ(a.ports.size(), b.ports.size());
    for (std::size_t i = 0; i < a.ports.size(); ++i) {
      EXPECT_EQ(a.ports[i].host_ip, b.ports[i].host_ip);
      EXPECT_EQ(a.ports[i].host_port, b.ports[i].host_port);
      EXPECT_EQ(a.ports[i].container_port, b.ports[i].container_port);
      EXPECT_EQ(a.ports[i].protocol, b.ports[i].protocol);
    }
    EXPECT_EQ(a.expose, b.expose);
    ASSERT_EQ(a.volumes.size(), b.volumes.size());
    for (std::size_t i = 0; i < a.volumes.size(); ++i) {
      EXPECT_EQ(a.volumes[i].kind, b.volumes[i].kind);
      EXPECT_EQ(a.volumes[i].source, b.volumes[i].source);
      EXPECT_EQ(a.volumes[i].target, b.volumes[i].target);
      EXPECT_EQ(a.volumes[i].read_only, b.volumes[i].read_only);
    }
    EXPECT_EQ(a.networks, b.networks);
    ASSERT_EQ(a.depends_on.size(), b.depends_on.size());
    for (std::size_t i = 0; i < a.depends_on.size(); ++i) {
      EXPECT_EQ(a.depends_on[i].service, b.depends_on[i].service);
      EXPECT_EQ(a.depends_on[i].condition, b.depends_on[i].condition);
      EXPECT_EQ(a.depends_on[i].required, b.depends_on[i].required);
    }
    EXPECT_EQ(a.healthcheck.has_value(), b.healthcheck.has_value());
    if (a.healthcheck) {
      EXPECT_EQ(a.healthcheck->test, b.healthcheck->test);
      EXPECT_EQ(a.healthcheck->disable, b.healthcheck->disable);
      EXPECT_EQ(a.healthcheck->interval, b.healthcheck->interval);
      EXPECT_EQ(a.healthcheck->timeout, b.healthcheck->timeout);
      EXPECT_EQ(a.healthcheck->start_period, b.healthcheck->start_period);
      EXPECT_EQ(a.healthcheck->retries, b.healthcheck->retries);
    }
    EXPECT_EQ(a.restart, b.restart);
    EXPECT_EQ(a.working_dir, b.working_dir);
    EXPECT_EQ(a.user, b.user);
    EXPECT_EQ(a.labels, b.labels);
    EXPECT_EQ(a.profiles, b.profiles);
    EXPECT_EQ(a.memory, b.memory);
    EXPECT_DOUBLE_EQ(a.cpus, b.cpus);
    EXPECT_EQ(a.pids, b.pids);
    EXPECT_EQ(a.network_mode, b.network_mode);
  }
  EXPECT_EQ(q.volumes.at("ext").external_name, "real");
  EXPECT_EQ(q.volumes.at("data").labels, p.volumes.at("data").labels);
  EXPECT_NE(text.find("$$HOME"), std::string::npos);
  EXPECT_TRUE(q.warnings.empty()) << q.warnings.front();
}

}  // namespace
}  // namespace ck::compose
