#include <gtest/gtest.h>
#include <set>
#include <yaml-cpp/yaml.h>

#include "runtime/docker/engine.h"
#include "runtime/docker/plan.h"

namespace ck {
namespace {

RunSpec node_spec() {
  RunSpec s;
  s.name = "shop";
  s.type = "node";
  s.source = "/srv/workspaces/shop";
  s.install = "npm ci";
  s.command = "npm start";
  s.deps_key = "abc";
  s.memory = 256ull << 20;
  s.install_memory = 1ull << 30;
  s.cpus = 0.5;
  s.pids = 128;
  s.env = {{"GREETING", "hi"}};
  return s;
}

bool has(const nlohmann::json& arr, const std::string& v) {
  for (const auto& e : arr) {
    if (e == v) return true;
  }
  return false;
}

TEST(Plan, AppContainerFollowsTheContract) {
  auto p = plan_app(node_spec(), "cloudyknight/node:bookworm", 8080, 8003);
  auto b = create_body(p);
  EXPECT_EQ(b["Image"], "cloudyknight/node:bookworm");
  EXPECT_EQ(b["WorkingDir"], "/app");
  const auto& h = b["HostConfig"];
  // Hardening, always on.
  EXPECT_EQ(h["Memory"], 256ull << 20);
  EXPECT_EQ(h["MemorySwap"], 256ull << 20);
  EXPECT_EQ(h["NanoCpus"], 500000000);
  EXPECT_EQ(h["PidsLimit"], 128);
  EXPECT_TRUE(has(h["CapDrop"], "ALL"));
  EXPECT_TRUE(h["CapAdd"].empty());
  EXPECT_TRUE(has(h["SecurityOpt"], "no-new-privileges:true"));
  EXPECT_EQ(h["PortBindings"]["8080/tcp"][0]["HostIp"], "127.0.0.1");
  EXPECT_EQ(h["PortBindings"]["8080/tcp"][0]["HostPort"], "8003");
  // Only the source (read-only) and named volumes: no host paths, no docker.sock.
  int binds = 0;
  for (const auto& m : h["Mounts"]) {
    if (m["Type"] == "bind") {
      ++binds;
      EXPECT_EQ(m["Source"], "/srv/workspaces/shop");
      EXPECT_EQ(m["Target"], "/workspace");
      EXPECT_EQ(m["ReadOnly"], true);
    } else {
      EXPECT_EQ(m["Type"], "volume");
    }
  }
  EXPECT_EQ(binds, 1);
  EXPECT_FALSE(h.contains("Binds"));
  // Environment: the port inside, the install and command for the entry script.
  EXPECT_TRUE(has(b["Env"], "PORT=8080"));
  EXPECT_TRUE(has(b["Env"], "CK_COMMAND=npm start"));
  EXPECT_TRUE(has(b["Env"], "GREETING=hi"));
  EXPECT_TRUE(has(b["Env"], "CK_DEPS=/app/node_modules"));
  EXPECT_EQ(b["Healthcheck"]["Test"][1], "test -f /app/.container-ready");
  // Every 30 s, not every 2: each check is an exec (a runc process) in every running app.
  EXPECT_EQ(b["Healthcheck"]["Interval"], 30'000'000'000LL);
  // Labels: ours and Traefik's.
  const auto& l = b["Labels"];
  EXPECT_EQ(l["cloudyknight.managed"], "true");
  EXPECT_EQ(l["cloudyknight.workspace"], "shop");
  EXPECT_EQ(l["traefik.http.routers.shop.rule"], "PathPrefix(`/shop`)");
  EXPECT_EQ(l["traefik.http.middlewares.shop-strip.stripprefix.prefixes"], "/shop");
  EXPECT_EQ(l["traefik.http.services.shop.loadbalancer.server.port"], "8080");
  EXPECT_EQ(p.name, "ck-shop");
}

TEST(Plan, TraefikLabelsFollowThePrefixModeAndDomain) {
  // Path routing only, strip: the PathPrefix router with its strip middleware, no Host router.
  auto l = create_body(plan_app(node_spec(), "img", 8080, 8003))["Labels"];
  EXPECT_EQ(l["traefik.http.routers.shop.middlewares"], "shop-strip");
  EXPECT_EQ(l["traefik.http.routers.shop.service"], "shop");
  EXPECT_FALSE(l.contains("traefik.http.routers.shop-host.rule"));
  // With gateway.domain: a second router by host, at the root, without the middleware.
  auto spec = node_spec();
  spec.domain = "example.test";
  l = create_body(plan_app(spec, "img", 8080, 8003))["Labels"];
  EXPECT_EQ(l["traefik.http.routers.shop.rule"], "PathPrefix(`/shop`)");
  EXPECT_EQ(l["traefik.http.routers.shop.middlewares"], "shop-strip");
  EXPECT_EQ(l["traefik.http.routers.shop-host.rule"], "Host(`shop.example.test`)");
  EXPECT_EQ(l["traefik.http.routers.shop-host.service"], "shop");
  EXPECT_FALSE(l.contains("traefik.http.routers.shop-host.middlewares"));
  // Keep: the PathPrefix router forwards /shop/... as sent.
  spec.keep_prefix = true;
  l = create_body(plan_app(spec, "img", 8080, 8003))["Labels"];
  EXPECT_EQ(l["traefik.http.routers.shop.rule"], "PathPrefix(`/shop`)");
  EXPECT_FALSE(l.contains("traefik.http.routers.shop.middlewares"));
  EXPECT_FALSE(l.contains("traefik.http.middlewares.shop-strip.stripprefix.prefixes"));
  EXPECT_EQ(l["traefik.http.routers.shop-host.rule"], "Host(`shop.example.test`)");
}

TEST(Plan, AppEnvironmentCarriesTheBase) {
  auto spec = node_spec();
  spec.env["CK_BASE_PATH"] = "/shop/";
  spec.env["BASE_URL"] = "http://shop.example.test:8080/";
  auto env = create_body(plan_app(spec, "img", 8080, 8003))["Env"];
  EXPECT_TRUE(has(env, "CK_BASE_PATH=/shop/"));
  EXPECT_TRUE(has(env, "BASE_URL=http://shop.example.test:8080/"));
  EXPECT_TRUE(has(create_body(plan_install(spec, "img", NetworkPlan{}))["Env"], "CK_BASE_PATH=/shop/"));
}

// Issue 13 row 6: two workspaces with the same lockfile never share a dependency volume (one
// could trojan the other's node_modules), nor a package download cache.
TEST(Plan, DependencyVolumeIsTheWorkspacesOwnKeyedByLockfileAndImage) {
  auto a = node_spec();
  auto b = node_spec();
  b.name = "other";
  b.source = "/elsewhere";
  EXPECT_NE(deps_volume(a, "img"), deps_volume(b, "img"));  // same lockfile: still not shared
  auto a2 = a;
  a2.source = "/moved";
  EXPECT_EQ(deps_volume(a, "img"), deps_volume(a2, "img"));  // same workspace and lockfile
  a2.deps_key = "changed";
  EXPECT_NE(deps_volume(a, "img"), deps_volume(a2, "img"));
  EXPECT_NE(deps_volume(a, "img"), deps_volume(a, "img2"));
  EXPECT_EQ(deps_volume(a, "img").rfind("ck-deps-shop-node-", 0), 0u);
  EXPECT_EQ(deps_volume(a, "img").rfind(deps_volume_prefix("shop"), 0), 0u);
  EXPECT_NE(deps_volume(b, "img").rfind(deps_volume_prefix("shop"), 0), 0u);
  for (const auto& p : {plan_app(a, "img", 8080, 8003), plan_install(a, "img")}) {
    std::set<std::string> names;
    for (const auto& v : p.volumes) names.insert(v.name);
    EXPECT_EQ(names, (std::set<std::string>{deps_volume(a, "img"), "ck-cache-shop-node"}));
  }
  auto pb = plan_app(b, "img", 8080, 8004);
  for (const auto& v : pb.volumes) EXPECT_EQ(v.name.find("shop"), std::string::npos) << v.name;
}

TEST(Plan, EachWorkspaceHasItsOwnNetwork) {
  auto open = plan_network("shop", true);
  EXPECT_EQ(open.app, "ck-net-shop");
  EXPECT_EQ(open.install, "ck-net-shop");
  EXPECT_FALSE(open.internal);
  auto closed = plan_network("shop", false);
  EXPECT_EQ(closed.app, "ck-net-shop");
  EXPECT_EQ(closed.install, "ck-net-shop-install");  // installs still download packages
  EXPECT_TRUE(closed.internal);

  auto p = plan_app(node_spec(), "img", 8080, 8003, open);
  auto b = create_body(p);
  EXPECT_EQ(b["HostConfig"]["NetworkMode"], "ck-net-shop");
  EXPECT_EQ(b["HostConfig"]["PortBindings"]["8080/tcp"][0]["HostPort"], "8003");
  // Internal: nothing published (it would not work); the port is only exposed.
  auto pi = plan_app(node_spec(), "img", 8080, 8003, closed);
  auto bi = create_body(pi);
  EXPECT_EQ(bi["HostConfig"]["NetworkMode"], "ck-net-shop");
  EXPECT_FALSE(bi["HostConfig"].contains("PortBindings"));
  EXPECT_TRUE(bi["ExposedPorts"].contains("8080/tcp"));
  EXPECT_NE(p.labels["cloudyknight.spec"], pi.labels["cloudyknight.spec"])
      << "changing limits.egress replaces the container";
  EXPECT_EQ(create_body(plan_install(node_spec(), "img", closed))["HostConfig"]["NetworkMode"],
            "ck-net-shop-install");

  auto n = network_body("ck-net-shop", "shop", "inst1", true);
  EXPECT_EQ(n["Name"], "ck-net-shop");
  EXPECT_EQ(n["Driver"], "bridge");
  EXPECT_EQ(n["Internal"], true);
  EXPECT_EQ(n["Options"]["com.docker.network.bridge.enable_icc"], "false");
  std::string bridge = n["Options"]["com.docker.network.bridge.name"];
  EXPECT_EQ(bridge, bridge_name("ck-net-shop"));
  EXPECT_EQ(bridge.rfind("ck-", 0), 0u);
  EXPECT_LE(bridge.size(), 15u) << "Linux interface names are at most 15 characters";
  EXPECT_NE(bridge_name("ck-net-shop"), bridge_name("ck-net-other"));
  EXPECT_EQ(n["Labels"]["cloudyknight.managed"], "true");
  EXPECT_EQ(n["Labels"]["cloudyknight.workspace"], "shop");
  EXPECT_EQ(n["Labels"]["cloudyknight.instance"], "inst1");
  EXPECT_EQ(network_body("ck-net-shop", "shop", "inst1", false)["Internal"], false);
}

TEST(Plan, SpecHashIgnoresTheHostPortButNotTheCommand) {
  auto s = node_spec();
  auto h1 = plan_app(s, "img", 8080, 8001).labels["cloudyknight.spec"];
  auto h2 = plan_app(s, "img", 8080, 8050).labels["cloudyknight.spec"];
  EXPECT_EQ(h1, h2);
  s.command = "node other.js";
  EXPECT_NE(h1, plan_app(s, "img", 8080, 8001).labels["cloudyknight.spec"]);
}

TEST(Plan, BlueGreenAlternatesTwoNamesNoOtherWorkspaceCanTake) {
  EXPECT_EQ(app_container_name("shop", false), "ck-shop");
  EXPECT_EQ(app_container_name("shop", true), "ck-shop.b");
  EXPECT_EQ(plan_app(node_spec(), "img", 8080, 8001).name, app_container_name("shop", false));
  // Workspace names are [a-z0-9-]: "shop-b" (a valid name) never collides with shop's second.
  EXPECT_NE(app_container_name("shop", true), app_container_name("shop-b", false));
  EXPECT_NE(app_container_name("shop", true), app_container_name("shop", false) + "-install");
  EXPECT_TRUE(is_second_app_name("shop", "/ck-shop.b"));
  EXPECT_TRUE(is_second_app_name("shop", "ck-shop.b"));
  EXPECT_TRUE(is_second_app_name("shop", "/ck-shop.b-1a2b3c4d"));  // another plane held the name
  EXPECT_FALSE(is_second_app_name("shop", "/ck-shop"));
  EXPECT_FALSE(is_second_app_name("shop", "/ck-shop-1a2b3c4d"));
  EXPECT_FALSE(is_second_app_name("shop", "/ck-shop.bx"));
  EXPECT_FALSE(is_second_app_name("sho", "/ck-shop.b"));
  EXPECT_FALSE(is_second_app_name("shop-b", "/ck-shop.b"));
}

nlohmann::json listed(const std::string& id, const std::string& role, const std::string& spec,
                      const std::string& state, int port, long long created_s,
                      const std::string& created_ms = "") {
  nlohmann::json c = {{"Id", id},
                      {"State", state},
                      {"Created", created_s},
                      {"Labels", {{"cloudyknight.role", role}, {"cloudyknight.spec", spec}}},
                      {"Ports", nlohmann::json::array()}};
  if (port) c["Ports"].push_back({{"IP", "127.0.0.1"}, {"PrivatePort", 8080}, {"PublicPort", port}});
  if (!created_ms.empty()) c["Labels"]["cloudyknight.created"] = created_ms;
  return c;
}

TEST(Plan, AdoptionPrefersTheNewerOfTwoCurrentContainers) {
  // A control plane killed during a blue/green replace: the old and the new container, both
  // current, created in the same second; the newer (by its ms label) copied the latest source.
  nlohmann::json list = nlohmann::json::array(
      {listed("old", "app", "h", "running", 8001, 100, "100200"),
       listed("new", "app", "h", "running", 8002, 100, "100900")});
  EXPECT_EQ(adoption_order(list, "h", false), (std::vector<std::size_t>{1, 0}));
  // The engine's Created (seconds) when the label is missing (containers of older releases).
  list = nlohmann::json::array({listed("a", "app", "h", "running", 8001, 100),
                                listed("b", "app", "h", "running", 8002, 101, "")});
  EXPECT_EQ(adoption_order(list, "h", false), (std::vector<std::size_t>{1, 0}));
  list = nlohmann::json::array({listed("a", "app", "h", "running", 8001, 100, "100500"),
                                listed("b", "app", "h", "running", 8002, 99, "not a number")});
  EXPECT_EQ(adoption_order(list, "h", false), (std::vector<std::size_t>{0, 1}));
}

TEST(Plan, AdoptionSkipsWhatIsNotACurrentReachableApp) {
  nlohmann::json list = nlohmann::json::array(
      {listed("outdated", "app", "other", "running", 8001, 300),
       listed("exited", "app", "h", "exited", 0, 301),
       listed("created", "app", "h", "created", 0, 302),
       listed("install", "install", "h", "running", 0, 303),
       listed("unpublished", "app", "h", "running", 0, 304),
       listed("good", "app", "h", "running", 8005, 200)});
  EXPECT_EQ(adoption_order(list, "h", false), (std::vector<std::size_t>{5}));
  // On an internal network nothing is published: the address is looked up instead.
  EXPECT_EQ(adoption_order(list, "h", true), (std::vector<std::size_t>{4, 5}));
  // A container a new version was replacing when the control plane died runs outdated source.
  EXPECT_TRUE(adoption_order(list, "h", false, {"good"}).empty());
  EXPECT_EQ(adoption_order(list, "h", true, {"good"}), (std::vector<std::size_t>{4}));
  EXPECT_TRUE(adoption_order(nlohmann::json::object(), "h", false).empty());
  EXPECT_TRUE(adoption_order(nlohmann::json::array({42, "x"}), "h", false).empty());
}

TEST(Plan, InstallStepHasItsOwnMemoryLimitAndNoPort) {
  auto p = plan_install(node_spec(), "img");
  auto b = create_body(p);
  EXPECT_EQ(b["HostConfig"]["Memory"], 1ull << 30);
  EXPECT_FALSE(b.contains("ExposedPorts"));
  EXPECT_TRUE(has(b["Env"], "CK_MODE=install"));
  EXPECT_EQ(b["Labels"]["cloudyknight.role"], "install");
}

TEST(Plan, DockerfileWorkspaceRunsItsImageCommand) {
  auto s = node_spec();
  s.type = "dockerfile";
  s.install.clear();
  s.command.clear();
  auto b = create_body(plan_app(s, "cloudyknight-ws/shop:latest", 5000, 8001));
  EXPECT_FALSE(b.contains("Cmd"));
  EXPECT_TRUE(has(b["Env"], "PORT=5000"));
  EXPECT_TRUE(b["HostConfig"]["Mounts"].empty());
  EXPECT_TRUE(has(b["HostConfig"]["CapDrop"], "ALL"));
}

TEST(Plan, ComposeYamlIsValidAndMatchesThePlan) {
  auto p = plan_app(node_spec(), "cloudyknight/node:bookworm", 8080, 8003);
  YAML::Node y = YAML::Load(compose_yaml(p));
  auto svc = y["services"]["shop"];
  EXPECT_EQ(svc["image"].as<std::string>(), "cloudyknight/node:bookworm");
  EXPECT_EQ(svc["ports"][0].as<std::string>(), "127.0.0.1:8003:8080");
  EXPECT_EQ(svc["volumes"][0].as<std::string>(), "/srv/workspaces/shop:/workspace:ro");
  EXPECT_EQ(svc["cap_drop"][0].as<std::string>(), "ALL");
  EXPECT_EQ(svc["mem_limit"].as<std::string>(), std::to_string(256ull << 20));
  EXPECT_EQ(svc["labels"]["cloudyknight.workspace"].as<std::string>(), "shop");
  // The script survives quoting, with $ doubled so Compose does not interpolate it.
  EXPECT_EQ(svc["command"][2].as<std::string>(), compose_escape(p.cmd[2]));
  EXPECT_NE(p.cmd[2].find("$CK_COMMAND"), std::string::npos);
  EXPECT_NE(svc["command"][2].as<std::string>().find("$$CK_COMMAND"), std::string::npos);
  EXPECT_TRUE(y["volumes"][deps_volume(node_spec(), "cloudyknight/node:bookworm")]["external"].as<bool>());
}

TEST(LogDemuxer, SplitsFramesFedInAnySplit) {
  std::string stream;
  auto frame = [&](char which, const std::string& text) {
    stream += which;
    stream += std::string("\0\0\0", 3);
    stream += static_cast<char>((text.size() >> 24) & 0xff);
    stream += static_cast<char>((text.size() >> 16) & 0xff);
    stream += static_cast<char>((text.size() >> 8) & 0xff);
    stream += static_cast<char>(text.size() & 0xff);
    stream += text;
  };
  frame(1, "hello\n");
  frame(2, "oops\n");
  frame(1, std::string(70000, 'x'));
  for (size_t step : {1u, 3u, 7u, 4096u, 1000000u}) {
    LogDemuxer d;
    std::string out, err;
    for (size_t i = 0; i < stream.size(); i += step) {
      d.feed(std::string_view(stream).substr(i, step), [&](const LogChunk& c) {
        (c.stream == 2 ? err : out).append(c.text);
      });
    }
    EXPECT_EQ(out, "hello\n" + std::string(70000, 'x')) << step;
    EXPECT_EQ(err, "oops\n") << step;
  }
}

TEST(Engine, SplitsImageNames) {
  EXPECT_EQ(split_image_name("node:20-slim"), std::make_pair(std::string("node"), std::string("20-slim")));
  EXPECT_EQ(split_image_name("node"), std::make_pair(std::string("node"), std::string("latest")));
  EXPECT_EQ(split_image_name("reg:5000/team/app"),
            std::make_pair(std::string("reg:5000/team/app"), std::string("latest")));
  EXPECT_EQ(split_image_name("reg:5000/app:v1"), std::make_pair(std::string("reg:5000/app"), std::string("v1")));
}

}  // namespace
}  // namespace ck

namespace ck {

TEST(Plan, NetworksTakeFreeSmallSubnetsOfTheirOwnPool) {
  // Docker's default pools give out about 30 networks; ours has 4096 /28s.
  EXPECT_EQ(pick_subnet({}), "10.213.0.0/28");
  EXPECT_EQ(pick_subnet({"172.17.0.0/16", "10.213.0.0/28", "fd00::/64", "garbage"}), "10.213.0.16/28");
  // A larger network over the start of the pool pushes past all of it.
  EXPECT_EQ(pick_subnet({"10.213.0.0/24"}), "10.213.1.0/28");
  EXPECT_EQ(pick_subnet({"10.0.0.0/8"}), std::nullopt);
  std::vector<std::string> all;
  for (int i = 0; i < 256; ++i) all.push_back("10.213." + std::to_string(i) + ".0/24");
  EXPECT_EQ(pick_subnet(all), std::nullopt);
  all.pop_back();
  EXPECT_EQ(pick_subnet(all), "10.213.255.0/28");
  auto n = network_body("ck-net-shop", "shop", "inst1", false, "10.213.0.16/28");
  EXPECT_EQ(n["IPAM"]["Config"][0]["Subnet"], "10.213.0.16/28");
}

TEST(Plan, RouteCidrsAreWhatTheHostRoutesButTheDefault) {
  const char* table =
      "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n"
      "eth0\t00000000\t0100A8C0\t0003\t0\t0\t0\t00000000\t0\t0\t0\n"       // default: left out
      "eth0\t0000A8C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n"       // 192.168.0.0/24
      "ck-1\t0000D50A\t00000000\t0001\t0\t0\t0\tF0FFFFFF\t0\t0\t0\n"       // 10.213.0.0/28
      "tun0\t0000000A\t00000000\t0001\t0\t0\t0\t000000FF\t0\t0\t0\n"       // 10.0.0.0/8
      "bad\tXYZ\n"
      "odd\t0000D50A\t00000000\t0001\t0\t0\t0\t0F00FFFF\t0\t0\t0\n";      // not a prefix
  auto cidrs = route_cidrs(table);
  EXPECT_EQ(cidrs, (std::vector<std::string>{"192.168.0.0/24", "10.213.0.0/28", "10.0.0.0/8"}));
  // A subnet routed on the host (another engine's bridge) is not picked again.
  EXPECT_EQ(pick_subnet(route_cidrs(std::string(table).substr(0, std::string(table).find("tun0")))),
            "10.213.0.16/28");
  EXPECT_TRUE(route_cidrs("").empty());
  EXPECT_TRUE(route_cidrs("Iface\tDestination\n").empty());
}

}  // namespace ck
