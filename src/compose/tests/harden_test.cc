// Each safety rule of issue 15 section 4 is its own test, plus pick_route's rules.
#include <gtest/gtest.h>

#include <fstream>
#include <sstream>

#include "compose/model.h"
#include "compose/tests/test_util.h"

namespace ck::compose {
namespace {

namespace fs = std::filesystem;
using testing::caught;
using testing::error_of;
using testing::parse_text;
using testing::TempDir;

class ComposeHarden : public ::testing::Test {
 protected:
  ComposeHarden() {
    policy_.workspace = "express-app";
    policy_.source = dir_.path();
    dir_.write("src/index.js", "x");
    dir_.write("sub/file", "x");
  }
  Project harden_text(const std::string& text) { return harden(parse_text(text), policy_); }
  std::string refusal(const std::string& text) {
    return error_of([&] { harden_text(text); });
  }
  fs::path real(const std::string& rel = "") const {
    return fs::weakly_canonical(dir_.path() / rel);
  }

  TempDir dir_;
  Policy policy_;
};

std::string fixture(const std::string& name) {
  std::ifstream in(std::string(CK_COMPOSE_FIXTURES) + "/" + name);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

TEST_F(ComposeHarden, SeedExampleHardensAndRoutes) {
  Project p = harden(parse_text(fixture("seed-express-app.yml")), policy_);
  EXPECT_EQ(p.name, "ck-express-app");
  const Service& app = p.services.at("app");
  ASSERT_EQ(app.volumes.size(), 1u);
  EXPECT_EQ(app.volumes[0].source, real().string());
  EXPECT_EQ(app.volumes[0].target, "/workspace");
  EXPECT_TRUE(app.volumes[0].read_only);
  EXPECT_TRUE(app.networks.empty());  // the project's default network
  EXPECT_TRUE(p.networks.empty());
  ASSERT_EQ(p.warnings.size(), 1u);
  EXPECT_NE(p.warnings[0].find("traefik-network"), std::string::npos);
  EXPECT_EQ(app.memory, 512ull << 20);
  EXPECT_DOUBLE_EQ(app.cpus, 1);
  EXPECT_EQ(app.pids, 256);
  EXPECT_EQ(app.environment.at("PORT"), "3000");
  Route r = pick_route(p);
  EXPECT_EQ(r.service, "app");
  EXPECT_EQ(r.port, 3000);
  // What `ws compose` prints for it is a valid compose file with the same service.
  Project again = parse_text(to_yaml(p));
  EXPECT_EQ(again.services.at("app").volumes.at(0).source, real().string());
  EXPECT_TRUE(again.services.at("app").networks.empty());
}

TEST_F(ComposeHarden, SeedPrefixWithSubfolderIsRewrittenAndMadeReadOnly) {
  Project p = harden_text(R"(
services:
  a:
    image: x
    volumes: ["/workspaces/express-app/sub:/x"]
)");
  EXPECT_EQ(p.services.at("a").volumes[0].source, real("sub").string());
  EXPECT_TRUE(p.services.at("a").volumes[0].read_only);
}

TEST_F(ComposeHarden, RelativeBindsResolveAgainstTheSourceAndAreReadOnly) {
  Project p = harden_text(R"(
services:
  a:
    image: x
    volumes:
      - ./src:/src
      - .:/code
      - {type: bind, source: ./sub/, target: /s, read_only: false}
      - data:/data
volumes:
  data:
)");
  const auto& v = p.services.at("a").volumes;
  EXPECT_EQ(v[0].source, real("src").string());
  EXPECT_EQ(v[1].source, real().string());
  EXPECT_EQ(v[2].source, real("sub").string());
  for (int i = 0; i < 3; ++i) {
    EXPECT_TRUE(v[i].read_only) << i;
  }
  EXPECT_FALSE(v[3].read_only);  // a named volume stays writable
  EXPECT_EQ(v[3].source, "data");
}

TEST_F(ComposeHarden, BindOutsideTheFolderIsRefused) {
  std::string msg = refusal(
      "services:\n  web:\n    image: x\n    volumes:\n      - ./src:/src\n"
      "      - /etc:/host-etc\n");
  EXPECT_NE(msg.find("docker-compose.yml:6: services.web.volumes[1]:"), std::string::npos) << msg;
  EXPECT_NE(msg.find("'/etc'"), std::string::npos) << msg;
  EXPECT_NE(msg.find("outside the workspace folder"), std::string::npos) << msg;
  EXPECT_NE(refusal("services:\n  web:\n    image: x\n    volumes: [\"../other:/x\"]\n")
                .find("outside the workspace folder"),
            std::string::npos);
  EXPECT_NE(refusal("services:\n  web:\n    image: x\n    volumes: [\"./src/../../x:/x\"]\n")
                .find("outside the workspace folder"),
            std::string::npos);
  EXPECT_NE(refusal("services:\n  web:\n    image: x\n    volumes: [\"/workspaces/other:/x\"]\n")
                .find("outside the workspace folder"),
            std::string::npos);
  EXPECT_NE(refusal("services:\n  web:\n    image: x\n    volumes: [\"/:/host\"]\n")
                .find("outside the workspace folder"),
            std::string::npos);
}

TEST_F(ComposeHarden, HomeFolderBindIsRefused) {
  EXPECT_NE(refusal("services:\n  web:\n    image: x\n    volumes: [\"~/.ssh:/keys\"]\n")
                .find("home folder"),
            std::string::npos);
}

TEST_F(ComposeHarden, SymlinkInsideTheFolderPointingOutsideIsRefused) {
  fs::create_directory_symlink("/etc", dir_.path() / "etc-link");
  std::string msg = refusal("services:\n  web:\n    image: x\n    volumes: [\"./etc-link:/x\"]\n");
  EXPECT_NE(msg.find("services.web.volumes[0]"), std::string::npos) << msg;
  EXPECT_NE(msg.find("link"), std::string::npos) << msg;
  EXPECT_NE(msg.find("/etc"), std::string::npos) << msg;
}

TEST_F(ComposeHarden, DockerSocketIsRefusedWithItsOwnMessage) {
  for (const char* sock : {"/var/run/docker.sock", "/run/docker.sock"}) {
    std::string msg = refusal(std::string("services:\n  web:\n    image: x\n    volumes: [\"") +
                              sock + ":/var/run/docker.sock\"]\n");
    EXPECT_NE(msg.find("Docker socket"), std::string::npos) << msg;
    EXPECT_NE(msg.find("services.web.volumes[0]"), std::string::npos) << msg;
  }
  fs::create_symlink("/var/run/docker.sock", dir_.path() / "sock");
  EXPECT_NE(refusal("services:\n  web:\n    image: x\n    volumes: [\"./sock:/s\"]\n")
                .find("Docker socket"),
            std::string::npos);
}

struct RefusedCase {
  const char* yaml;  // the service's extra line
  const char* key;
  const char* why;
};

class ComposeHardenRefused : public ComposeHarden,
                             public ::testing::WithParamInterface<RefusedCase> {};

TEST_P(ComposeHardenRefused, KeyIsRefusedWithItsReason) {
  const RefusedCase& c = GetParam();
  Error e = caught(
      [&] { harden_text(std::string("services:\n  web:\n    image: x\n    ") + c.yaml + "\n"); });
  EXPECT_EQ(e.where().file, "docker-compose.yml");
  EXPECT_EQ(e.where().line, 4);
  EXPECT_EQ(e.where().key, std::string("services.web.") + c.key);
  EXPECT_NE(e.message().find(c.why), std::string::npos) << e.what();
  EXPECT_NE(e.message().find("remove"), std::string::npos) << e.what();
}

INSTANTIATE_TEST_SUITE_P(
    Rules, ComposeHardenRefused,
    ::testing::Values(
        RefusedCase{"privileged: true", "privileged", "root on the host"},
        RefusedCase{"cap_add: [SYS_ADMIN]", "cap_add", "capabilities"},
        RefusedCase{"pid: host", "pid", "processes"},
        RefusedCase{"ipc: host", "ipc", "IPC namespace"},
        RefusedCase{"network_mode: host", "network_mode", "network namespace"},
        RefusedCase{"network_mode: \"service:db\"", "network_mode", "network namespace"},
        RefusedCase{"network_mode: \"container:abc\"", "network_mode", "network namespace"},
        RefusedCase{"devices: [\"/dev/sda:/dev/sda\"]", "devices", "host's devices"},
        RefusedCase{"security_opt: [\"seccomp:unconfined\"]", "security_opt", "seccomp"},
        RefusedCase{"userns_mode: host", "userns_mode", "user namespace"},
        RefusedCase{"cgroup_parent: /", "cgroup_parent", "limits"},
        RefusedCase{"volumes_from: [other]", "volumes_from", "another container"},
        RefusedCase{"sysctls: {net.ipv4.ip_forward: 1}", "sysctls", "kernel settings"},
        RefusedCase{"uts: host", "uts", "hostname"},
        RefusedCase{"cgroup: host", "cgroup", "cgroup namespace"},
        RefusedCase{"runtime: runc", "runtime", "runtime"},
        RefusedCase{"external_links: [x]", "external_links", "outside this project"},
        RefusedCase{"ulimits: {nofile: 1000000}", "ulimits", "limits"},
        RefusedCase{"oom_kill_disable: true", "oom_kill_disable", "OOM killer"},
        RefusedCase{"gpus: all", "gpus", "GPUs"}));

TEST_F(ComposeHarden, BridgeAndNoneNetworkModesAreAllowed) {
  Project p = harden_text(R"(
services:
  a: {image: x, network_mode: bridge}
  b: {image: x, network_mode: none, ipc: private, privileged: false}
)");
  EXPECT_EQ(p.services.at("a").network_mode, "");
  EXPECT_EQ(p.services.at("b").network_mode, "none");
}

TEST_F(ComposeHarden, LimitsAreCappedByThePolicy) {
  Project p = harden_text(R"(
services:
  unset: {image: x}
  larger: {image: x, mem_limit: 4g, cpus: 8, pids_limit: 100000}
  smaller: {image: x, mem_limit: 64m, cpus: 0.25, pids_limit: 32}
)");
  EXPECT_EQ(p.services.at("unset").memory, 512ull << 20);
  EXPECT_DOUBLE_EQ(p.services.at("unset").cpus, 1);
  EXPECT_EQ(p.services.at("unset").pids, 256);
  EXPECT_EQ(p.services.at("larger").memory, 512ull << 20);
  EXPECT_DOUBLE_EQ(p.services.at("larger").cpus, 1);
  EXPECT_EQ(p.services.at("larger").pids, 256);
  EXPECT_EQ(p.services.at("smaller").memory, 64ull << 20);
  EXPECT_DOUBLE_EQ(p.services.at("smaller").cpus, 0.25);
  EXPECT_EQ(p.services.at("smaller").pids, 32);
}

TEST_F(ComposeHarden, ExternalNetworkIsMappedToTheProjectNetwork) {
  Project p = harden_text(R"(
services:
  a: {image: x, networks: [proxy, back]}
  b: {image: x, networks: [back]}
  c: {image: x}
  d: {image: x, networks: [proxy]}
networks:
  proxy: {external: true, name: traefik}
  back: {}
)");
  EXPECT_EQ(p.services.at("a").networks, (std::vector<std::string>{"default", "back"}));
  EXPECT_EQ(p.services.at("b").networks, std::vector<std::string>{"back"});
  EXPECT_TRUE(p.services.at("c").networks.empty());
  EXPECT_TRUE(p.services.at("d").networks.empty());  // only the default: the empty list
  EXPECT_EQ(p.networks.count("proxy"), 0u);
  EXPECT_FALSE(p.networks.at("default").external);
  for (const auto& [name, n] : p.networks) {
    EXPECT_FALSE(n.external) << name;
  }
  ASSERT_EQ(p.warnings.size(), 1u);
  EXPECT_NE(p.warnings[0].find("docker-compose.yml:8: networks.proxy: external network 'traefik'"),
            std::string::npos)
      << p.warnings[0];
}

TEST_F(ComposeHarden, ExternalVolumeIsRefused) {
  std::string msg = refusal(R"(
services:
  a: {image: x, volumes: ["shared:/data"]}
volumes:
  shared:
    external: true
    name: other-project_data
)");
  EXPECT_NE(msg.find("docker-compose.yml:5: volumes.shared.external:"), std::string::npos) << msg;
  EXPECT_NE(msg.find("other-project_data"), std::string::npos);
  EXPECT_NE(msg.find("outside this workspace"), std::string::npos);
}

TEST_F(ComposeHarden, HostPortsAreDroppedUnlessAllowed) {
  const char* text = R"(
services:
  web: {image: x, ports: ["127.0.0.1:8080:80", "8081:80", "9000"], expose: ["3000"]}
  db: {image: x, ports: ["5432:5432"]}
)";
  Project p = harden_text(text);
  const auto& web = p.services.at("web");
  ASSERT_EQ(web.ports.size(), 2u);
  for (const auto& port : web.ports) {
    EXPECT_EQ(port.host_port, 0);
    EXPECT_EQ(port.host_ip, "");
  }
  EXPECT_EQ(web.ports[0].container_port, 80);
  EXPECT_EQ(web.ports[1].container_port, 9000);
  EXPECT_EQ(web.expose, std::vector<int>{3000});
  EXPECT_EQ(p.services.at("db").ports.at(0).host_port, 0);
  EXPECT_EQ(p.services.at("db").ports.at(0).container_port, 5432);
  policy_.host_ports = true;
  Project kept = harden_text(text);
  EXPECT_EQ(kept.services.at("db").ports.at(0).host_port, 5432);
  EXPECT_EQ(kept.services.at("web").ports.at(0).host_ip, "127.0.0.1");
}

TEST_F(ComposeHarden, CloudyKnightLabelsAreReserved) {
  EXPECT_NE(refusal("services:\n  a:\n    image: x\n    labels: {cloudyknight.workspace: other}\n")
                .find("services.a.labels.cloudyknight.workspace"),
            std::string::npos);
  Project p = harden_text(
      "services:\n  a:\n    image: x\n    labels: {cloudyknight.route: \"true\", "
      "cloudyknight.port: \"80\"}\n");
  EXPECT_EQ(p.services.at("a").labels.size(), 2u);
}

TEST_F(ComposeHarden, BuildContextMustStayInside) {
  Project p = harden_text(R"(
services:
  a: {build: {context: ./src, dockerfile: Dockerfile.dev}}
  b: {build: .}
  c: {build: /workspaces/express-app/sub}
)");
  EXPECT_EQ(p.services.at("a").build->context, "src");
  EXPECT_EQ(p.services.at("b").build->context, ".");
  EXPECT_EQ(p.services.at("c").build->context, "sub");
  EXPECT_NE(refusal("services:\n  a: {build: ../elsewhere}\n").find("outside the workspace"),
            std::string::npos);
  EXPECT_NE(refusal("services:\n  a: {build: {context: ., dockerfile: ../../etc/x}}\n")
                .find("outside the workspace"),
            std::string::npos);
  EXPECT_NE(refusal("services:\n  a: {build: \"https://github.com/x/y.git\"}\n")
                .find("remote build context"),
            std::string::npos);
}

TEST_F(ComposeHarden, RefusesARelativeSource) {
  policy_.source = "relative/path";
  EXPECT_NE(refusal("services:\n  a: {image: x}\n").find("absolute"), std::string::npos);
}

// --- pick_route ----------------------------------------------------------------------

TEST(ComposeRoute, LabelledServiceWithItsPortLabel) {
  Route r = pick_route(parse_text(R"(
services:
  web: {image: x, ports: ["80", "443"], labels: {cloudyknight.route: "true", cloudyknight.port: "8080"}}
  api: {image: x, expose: ["3000"]}
)"));
  EXPECT_EQ(r.service, "web");
  EXPECT_EQ(r.port, 8080);
}

TEST(ComposeRoute, LabelledServiceWithItsOnlyPort) {
  Route r = pick_route(parse_text(R"(
services:
  web: {image: x, expose: ["3000"], labels: ["cloudyknight.route=true"]}
  api: {image: x, expose: ["4000"]}
)"));
  EXPECT_EQ(r.service, "web");
  EXPECT_EQ(r.port, 3000);
}

TEST(ComposeRoute, OnlyServiceWithAPort) {
  Route r = pick_route(parse_text(R"(
services:
  web: {image: x, ports: ["8080:80"]}
  db: {image: x}
  worker: {image: x}
)"));
  EXPECT_EQ(r.service, "web");
  EXPECT_EQ(r.port, 80);
  Route e = pick_route(parse_text("services:\n  a: {image: x, expose: [5000]}\n  b: {image: x}\n"));
  EXPECT_EQ(e.service, "a");
  EXPECT_EQ(e.port, 5000);
}

TEST(ComposeRoute, TraefikLoadBalancerPortLabel) {
  Route r = pick_route(parse_text(R"(
services:
  app:
    image: x
    labels:
      - "traefik.enable=true"
      - "traefik.http.services.app.loadbalancer.server.port=8000"
  db: {image: x}
)"));
  EXPECT_EQ(r.service, "app");
  EXPECT_EQ(r.port, 8000);
}

TEST(ComposeRoute, AmbiguousOrMissingIsAnErrorNamingTheCandidates) {
  std::string two = error_of([] {
    pick_route(parse_text(
        "services:\n  web: {image: x, expose: [80]}\n  api: {image: x, ports: [\"3000\"]}\n"));
  });
  EXPECT_NE(two.find("(api, web)"), std::string::npos) << two;
  EXPECT_NE(two.find("cloudyknight.route=true"), std::string::npos);
  std::string none =
      error_of([] { pick_route(parse_text("services:\n  web: {image: x}\n  db: {image: x}\n")); });
  EXPECT_NE(none.find("services: db, web"), std::string::npos) << none;
  std::string labels = error_of([] {
    pick_route(parse_text(
        "services:\n  a: {image: x, labels: {cloudyknight.route: \"true\"}}\n  b: {image: x, "
        "labels: {cloudyknight.route: \"true\"}}\n"));
  });
  EXPECT_NE(labels.find("(a, b)"), std::string::npos) << labels;
  std::string many =
      error_of([] { pick_route(parse_text("services:\n  a: {image: x, expose: [80, 443]}\n")); });
  EXPECT_NE(many.find("listens on 80, 443"), std::string::npos) << many;
  std::string bad = error_of([] {
    pick_route(parse_text("services:\n  a: {image: x, labels: {cloudyknight.port: http}}\n"));
  });
  EXPECT_NE(bad.find("services.a.labels.cloudyknight.port"), std::string::npos) << bad;
}

}  // namespace
}  // namespace ck::compose

namespace ck::compose {
namespace {

// The issue's comparison cases, as the runner will see them after harden().
TEST_F(ComposeHarden, NodeAppWithARedisBuiltFromADockerfile) {
  dir_.write("redis/Dockerfile", "FROM debian:bookworm-slim\n");
  Project p = harden_text(R"(
services:
  web:
    build: .
    ports: ["3000:3000"]
    environment: {REDIS_URL: "redis://cache:6379"}
    depends_on: [cache]
  cache:
    build: {context: ./redis, dockerfile: Dockerfile}
)");
  EXPECT_EQ(p.services.at("cache").build->context, "redis");
  EXPECT_EQ(p.services.at("web").ports.at(0).host_port, 0);
  EXPECT_EQ(start_order(p), (std::vector<std::string>{"cache", "web"}));
  Route r = pick_route(p);
  EXPECT_EQ(r.service, "web");
  EXPECT_EQ(r.port, 3000);
}

TEST_F(ComposeHarden, PythonAppWithAWorkerAndASharedVolume) {
  Project p = harden_text(R"(
x-app: &app
  image: python:3.11-slim
  working_dir: /app
  volumes: ["./:/app", "shared:/data"]
services:
  web:
    <<: *app
    command: python -m http.server 8000
    labels: {cloudyknight.route: "true", cloudyknight.port: "8000"}
  worker:
    <<: *app
    command: ["python", "worker.py"]
volumes:
  shared: {}
)");
  for (const char* name : {"web", "worker"}) {
    const Service& s = p.services.at(name);
    ASSERT_EQ(s.volumes.size(), 2u) << name;
    EXPECT_EQ(s.volumes[0].source, real().string());
    EXPECT_TRUE(s.volumes[0].read_only);
    EXPECT_EQ(s.volumes[1].kind, Mount::Kind::volume);
    EXPECT_EQ(s.volumes[1].source, "shared");
    EXPECT_FALSE(s.volumes[1].read_only);
  }
  EXPECT_EQ(p.volumes.count("shared"), 1u);
  Route r = pick_route(p);
  EXPECT_EQ(r.service, "web");
  EXPECT_EQ(r.port, 8000);
}

TEST_F(ComposeHarden, WebWaitsForTheOthersHealthcheck) {
  Project p = harden_text(R"(
services:
  web:
    image: nginx
    expose: [80]
    depends_on:
      api: {condition: service_healthy}
  api:
    image: node:18-alpine
    healthcheck:
      test: ["CMD-SHELL", "wget -qO- http://localhost:4000/health || exit 1"]
      interval: 2s
      retries: 10
)");
  EXPECT_EQ(start_order(p), (std::vector<std::string>{"api", "web"}));
  EXPECT_EQ(p.services.at("web").depends_on.at(0).condition, Dependency::Condition::healthy);
  EXPECT_EQ(p.services.at("api").healthcheck->interval, std::chrono::milliseconds(2000));
  Route r = pick_route(p);
  EXPECT_EQ(r.service, "web");
  EXPECT_EQ(r.port, 80);
}

}  // namespace
}  // namespace ck::compose
