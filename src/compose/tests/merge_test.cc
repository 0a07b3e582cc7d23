#include <gtest/gtest.h>

#include "compose/model.h"
#include "compose/tests/test_util.h"

namespace ck::compose {
namespace {

using testing::parse_text;

const char* kBase = R"(
name: base
services:
  web:
    image: web:1
    command: npm start
    environment: {A: "1", B: "2"}
    labels: {keep: "k", over: "base"}
    ports: ["8080:80", "9000"]
    expose: ["3000"]
    volumes: ["data:/data", "./src:/src"]
    networks: [front]
    depends_on: [db]
    restart: always
    mem_limit: 256m
  db:
    image: postgres
volumes:
  data: {labels: {a: "1"}}
networks:
  front: {}
)";

const char* kOverride = R"(
services:
  web:
    image: web:2
    command: ["node", "dev.js"]
    environment: {B: "two", C: "3"}
    labels: {over: "override"}
    ports: ["8080:80", "9229:9229"]
    expose: ["3000", "3001"]
    volumes: ["./other:/src:ro", "/logs"]
    networks: [back]
    depends_on: {db: {condition: service_healthy}}
    working_dir: /app
  worker:
    image: worker
  db:
    image: postgres
networks:
  back: {}
)";

TEST(ComposeMerge, FollowsTheSpecRules) {
  Project m = merge(parse_text(kBase), parse_text(kOverride));
  EXPECT_EQ(m.name, "base");
  EXPECT_EQ(m.files, (std::vector<std::string>{"docker-compose.yml", "docker-compose.yml"}));
  const Service& web = m.services.at("web");
  EXPECT_EQ(web.image, "web:2");                                          // replaced
  EXPECT_EQ(*web.command, (std::vector<std::string>{"node", "dev.js"}));  // replaced
  EXPECT_EQ(web.environment,
            (std::map<std::string, std::string>{{"A", "1"}, {"B", "two"}, {"C", "3"}}));  // by key
  EXPECT_EQ(web.labels,
            (std::map<std::string, std::string>{{"keep", "k"}, {"over", "override"}}));  // by key
  ASSERT_EQ(web.ports.size(), 3u);  // appended, the exact duplicate once
  EXPECT_EQ(web.ports[2].container_port, 9229);
  EXPECT_EQ(web.expose, (std::vector<int>{3000, 3001}));
  ASSERT_EQ(web.volumes.size(), 3u);  // by target: /src replaced, /logs added
  EXPECT_EQ(web.volumes[1].source, "./other");
  EXPECT_TRUE(web.volumes[1].read_only);
  EXPECT_EQ(web.volumes[2].target, "/logs");
  EXPECT_EQ(web.networks, (std::vector<std::string>{"front", "back"}));
  ASSERT_EQ(web.depends_on.size(), 1u);
  EXPECT_EQ(web.depends_on[0].condition, Dependency::Condition::healthy);
  EXPECT_EQ(web.restart, "always");     // kept
  EXPECT_EQ(web.working_dir, "/app");   // added
  EXPECT_EQ(web.memory, 256ull << 20);  // kept
  EXPECT_EQ(m.services.count("worker"), 1u);
  EXPECT_EQ(m.networks.size(), 2u);
  EXPECT_EQ(m.volumes.at("data").labels.at("a"), "1");
}

TEST(ComposeMerge, BuildArgsMergeAndHealthcheckReplaces) {
  Project base = parse_text(R"(
services:
  a:
    build: {context: ./a, args: {X: "1", Y: "2"}}
    healthcheck: {test: "true", retries: 9}
)");
  Project over = parse_text(R"(
services:
  a:
    build: {dockerfile: Dockerfile.dev, args: {Y: "y"}}
    healthcheck: {test: ["CMD", "check"]}
    profiles: [dev]
)",
                            {{"COMPOSE_PROFILES", "dev"}});
  Project m = merge(base, over);
  const Service& a = m.services.at("a");
  EXPECT_EQ(a.build->context, "./a");
  EXPECT_EQ(a.build->dockerfile, "Dockerfile.dev");
  EXPECT_EQ(a.build->args, (std::map<std::string, std::string>{{"X", "1"}, {"Y", "y"}}));
  EXPECT_EQ(a.healthcheck->test, (std::vector<std::string>{"CMD", "check"}));
  EXPECT_EQ(a.healthcheck->retries, 3);
  EXPECT_EQ(a.profiles, std::vector<std::string>{"dev"});
}

TEST(ComposeMerge, RunSettingsOverrideAndExtraHostsAppend) {
  Project base = parse_text(R"(
services:
  a:
    image: x
    hostname: one
    tty: true
    stop_grace_period: 5s
    extra_hosts: ["h1:10.0.0.1"]
)");
  Project over = parse_text(R"(
services:
  a:
    image: x
    hostname: two
    stop_signal: SIGQUIT
    extra_hosts: ["h2:10.0.0.2", "h1:10.0.0.1"]
)");
  Project m = merge(base, over);
  const Service& a = m.services.at("a");
  EXPECT_EQ(a.hostname, "two");
  EXPECT_EQ(a.stop_signal, "SIGQUIT");
  EXPECT_EQ(a.tty, true);  // not named by the override: kept
  EXPECT_EQ(a.stop_grace_period, std::chrono::seconds(5));
  EXPECT_EQ(a.extra_hosts, (std::vector<std::string>{"h1:10.0.0.1", "h2:10.0.0.2"}));
}

}  // namespace
}  // namespace ck::compose
