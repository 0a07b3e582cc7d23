#include "runtime/docker/compose_plan.h"

#include <gtest/gtest.h>

#include "runtime/docker/plan.h"

namespace ck {
namespace {

using nlohmann::json;

// A hardened project as harden() leaves it: the seed's web app (built image, a bind of the
// workspace folder, read-only) and a redis with a healthcheck and a named volume.
compose::Project two_services() {
  compose::Project p;
  compose::Service web;
  web.name = "web";
  web.image = "cloudyknight/node:bookworm";
  web.command = std::vector<std::string>{"node", "server.js"};
  web.environment = {{"REDIS_URL", "redis://redis:6379"}, {"CK_BASE_PATH", "/mine/"}};
  web.ports = {compose::Port{"", 0, 3000, "tcp"}};
  web.volumes = {
      compose::Mount{compose::Mount::Kind::bind, "/srv/ws/shop", "/workspace", true, {}}};
  web.depends_on = {
      compose::Dependency{"redis", compose::Dependency::Condition::healthy, true, {}}};
  web.labels = {{"cloudyknight.route", "true"}};
  web.working_dir = "/workspace";
  web.user = "1000:1000";
  web.memory = 256ull << 20;
  web.cpus = 0.5;
  web.pids = 128;
  web.restart = "unless-stopped";
  compose::Service redis;
  redis.name = "redis";
  redis.build = compose::Build{"redis", "Dockerfile.redis", {{"V", "7"}}, "prod"};
  redis.ports = {compose::Port{"127.0.0.1", 6379, 6379, "tcp"}};
  redis.volumes = {compose::Mount{compose::Mount::Kind::volume, "data", "/data", false, {}},
                   compose::Mount{compose::Mount::Kind::volume, "", "/scratch", false, {}},
                   compose::Mount{compose::Mount::Kind::tmpfs, "", "/tmp", false, {}}};
  compose::Healthcheck hc;
  hc.test = {"CMD", "redis-cli", "ping"};
  hc.interval = std::chrono::milliseconds(500);
  hc.timeout = std::chrono::seconds(2);
  hc.start_period = std::chrono::seconds(1);
  hc.retries = 5;
  redis.healthcheck = hc;
  redis.restart = "on-failure:3";
  redis.memory = 128ull << 20;
  redis.cpus = 1;
  redis.pids = 64;
  p.services = {{"web", web}, {"redis", redis}};
  compose::Volume data;
  data.name = "data";
  data.labels = {{"purpose", "cache"}};
  p.volumes = {{"data", data}};
  return p;
}

ComposePlanOptions options() {
  ComposePlanOptions o;
  o.workspace = "shop";
  o.instance = "inst1";
  o.order = {"redis", "web"};
  o.route = {"web", 3000};
  o.host_port = 8042;
  o.env = {{"CK_BASE_PATH", "/shop/"}, {"BASE_URL", "http://127.0.0.1:8080/shop/"}};
  return o;
}

bool has(const json& arr, const std::string& v) {
  for (const auto& e : arr) {
    if (e == v) return true;
  }
  return false;
}

TEST(ComposePlan, NamesFollowTheProject) {
  auto plan = plan_compose(two_services(), options());
  EXPECT_EQ(plan.project, "ck-shop");
  EXPECT_EQ(plan.network, "ck-shop");
  ASSERT_EQ(plan.containers.size(), 2u);
  // Start order as given; stop is the reverse.
  EXPECT_EQ(plan.containers[0].service, "redis");
  EXPECT_EQ(plan.containers[0].name, "ck-shop-redis");
  EXPECT_EQ(plan.containers[1].name, "ck-shop-web");
  EXPECT_TRUE(plan.containers[1].route);
  EXPECT_FALSE(plan.containers[0].route);
  ASSERT_EQ(plan.volumes.size(), 1u);  // the anonymous one is the engine's
  EXPECT_EQ(plan.volumes[0].name, "ck-shop_data");
  EXPECT_EQ(plan.volumes[0].labels["cloudyknight.managed"], "true");
  EXPECT_EQ(plan.volumes[0].labels["cloudyknight.workspace"], "shop");
  EXPECT_EQ(plan.volumes[0].labels["cloudyknight.instance"], "inst1");
  EXPECT_EQ(plan.volumes[0].labels["purpose"], "cache");
}

TEST(ComposePlan, ServicesNotInTheOrderDoNotRun) {
  auto o = options();
  o.order = {"web"};
  auto plan = plan_compose(two_services(), o);
  ASSERT_EQ(plan.containers.size(), 1u);
  EXPECT_EQ(plan.containers[0].service, "web");
  EXPECT_TRUE(plan.volumes.empty());
  EXPECT_TRUE(plan.builds.empty());
}

TEST(ComposePlan, BuildsAreTaggedPerService) {
  auto plan = plan_compose(two_services(), options());
  ASSERT_EQ(plan.builds.size(), 1u);
  const auto& b = plan.builds[0];
  EXPECT_EQ(b.service, "redis");
  EXPECT_EQ(b.tag, "ck-shop-redis:latest");
  EXPECT_EQ(b.context, "redis");
  EXPECT_EQ(b.dockerfile, "Dockerfile.redis");
  EXPECT_EQ(b.args.at("V"), "7");
  EXPECT_EQ(b.target, "prod");
  EXPECT_EQ(plan.containers[0].image, "ck-shop-redis:latest");
  EXPECT_EQ(plan.containers[0].body["Image"], "ck-shop-redis:latest");
}

TEST(ComposePlan, LabelsSayWhoseAndWhichRole) {
  auto plan = plan_compose(two_services(), options());
  const json& web = plan.containers[1].body["Labels"];
  EXPECT_EQ(web["cloudyknight.managed"], "true");
  EXPECT_EQ(web["cloudyknight.workspace"], "shop");
  EXPECT_EQ(web["cloudyknight.service"], "web");
  EXPECT_EQ(web["cloudyknight.role"], "route");
  EXPECT_EQ(web["cloudyknight.instance"], "inst1");
  EXPECT_EQ(web["cloudyknight.route"], "true");  // the service's own labels stay
  EXPECT_EQ(web["cloudyknight.spec"], plan.containers[1].hash);
  const json& redis = plan.containers[0].body["Labels"];
  EXPECT_EQ(redis["cloudyknight.role"], "service");
  EXPECT_EQ(redis["cloudyknight.service"], "redis");
}

TEST(ComposePlan, TheFileCannotSetTheRuntimesOwnLabels) {
  auto p = two_services();
  p.services["redis"].labels = {{"cloudyknight.instance", "other"},
                                {"cloudyknight.workspace", "victim"},
                                {"cloudyknight.deps", "ck-deps-victim-node-1"},
                                {"com.docker.compose.project", "ck-victim"},
                                {"cloudyknight.port", "6379"},
                                {"app.tier", "cache"}};
  p.volumes["data"].labels = {{"cloudyknight.deps", "ck-deps-victim-node-1"},
                              {"cloudyknight.workspace", "victim"}};
  auto plan = plan_compose(p, options());
  const json& l = plan.containers[0].body["Labels"];
  EXPECT_EQ(l["cloudyknight.instance"], "inst1");
  EXPECT_EQ(l["cloudyknight.workspace"], "shop");
  EXPECT_FALSE(l.contains("cloudyknight.deps"));
  EXPECT_EQ(l["com.docker.compose.project"], "ck-shop");
  EXPECT_EQ(l["cloudyknight.port"], "6379");  // the routing hints stay
  EXPECT_EQ(l["app.tier"], "cache");
  const json& v = plan.volumes[0].labels;
  EXPECT_FALSE(v.contains("cloudyknight.deps"));
  EXPECT_EQ(v["cloudyknight.workspace"], "shop");
}

TEST(ComposePlan, OnlyTheRoutedPortIsPublishedOnLoopback) {
  auto plan = plan_compose(two_services(), options());
  const json& web = plan.containers[1].body;
  ASSERT_TRUE(web["HostConfig"].contains("PortBindings"));
  const json& b = web["HostConfig"]["PortBindings"]["3000/tcp"];
  ASSERT_EQ(b.size(), 1u);
  EXPECT_EQ(b[0]["HostIp"], "127.0.0.1");
  EXPECT_EQ(b[0]["HostPort"], "8042");
  EXPECT_TRUE(web["ExposedPorts"].contains("3000/tcp"));
  // redis asked for 127.0.0.1:6379 on the host: exposed on the project network only.
  const json& redis = plan.containers[0].body;
  EXPECT_FALSE(redis["HostConfig"].contains("PortBindings"));
  EXPECT_TRUE(redis["ExposedPorts"].contains("6379/tcp"));
}

TEST(ComposePlan, HostPortsPolicyPublishesTheFilesPortsOnLoopback) {
  auto o = options();
  o.host_ports = true;
  auto plan = plan_compose(two_services(), o);
  const json& b = plan.containers[0].body["HostConfig"]["PortBindings"]["6379/tcp"];
  ASSERT_EQ(b.size(), 1u);
  EXPECT_EQ(b[0]["HostIp"], "127.0.0.1");
  EXPECT_EQ(b[0]["HostPort"], "6379");
}

TEST(ComposePlan, ServicesReachEachOtherByName) {
  auto plan = plan_compose(two_services(), options());
  for (const auto& c : plan.containers) {
    EXPECT_EQ(c.body["HostConfig"]["NetworkMode"], "ck-shop");
    const json& ep = c.body["NetworkingConfig"]["EndpointsConfig"]["ck-shop"];
    EXPECT_EQ(ep["Aliases"], json::array({c.service}));
  }
  json net = compose_network_body("ck-shop", "shop", "inst1", false, "10.213.0.16/28");
  EXPECT_EQ(net["Name"], "ck-shop");
  EXPECT_EQ(net["Options"]["com.docker.network.bridge.enable_icc"], "true");
  EXPECT_EQ(net["Options"]["com.docker.network.bridge.name"], bridge_name("ck-shop"));
  EXPECT_EQ(net["Labels"]["cloudyknight.workspace"], "shop");
  EXPECT_EQ(net["Labels"]["cloudyknight.managed"], "true");
  EXPECT_EQ(net["IPAM"]["Config"][0]["Subnet"], "10.213.0.16/28");
  EXPECT_TRUE(compose_network_body("ck-shop", "shop", "inst1", true)["Internal"].get<bool>());
  EXPECT_EQ(plan_compose(two_services(), options()).networks, std::vector<std::string>{"ck-shop"});
}

// Each network the file declares is a network of its own, as Compose makes them; a service is
// on exactly the ones it lists, so a database only on `back` cannot be reached from `front`.
TEST(ComposePlan, DeclaredNetworksStaySeparate) {
  auto p = two_services();
  p.services["web"].networks = {"front", "back"};
  p.services["redis"].networks = {"back"};
  compose::Service proxy;
  proxy.name = "proxy";
  proxy.image = "cloudyknight/node:bookworm";  // lists none: the default network
  p.services["proxy"] = proxy;
  compose::Service offline;
  offline.name = "offline";
  offline.image = "cloudyknight/node:bookworm";
  offline.network_mode = "none";
  p.services["offline"] = offline;
  auto o = options();
  o.order = {"redis", "offline", "proxy", "web"};
  auto plan = plan_compose(p, o);
  EXPECT_EQ(plan.networks,
            (std::vector<std::string>{"ck-shop_back", "ck-shop", "ck-shop_front"}));
  ASSERT_EQ(plan.containers.size(), 4u);
  const auto& redis = plan.containers[0];
  EXPECT_EQ(redis.networks, std::vector<std::string>{"ck-shop_back"});
  EXPECT_EQ(redis.body["HostConfig"]["NetworkMode"], "ck-shop_back");
  EXPECT_EQ(redis.body["NetworkingConfig"]["EndpointsConfig"]["ck-shop_back"]["Aliases"],
            json::array({"redis"}));
  const auto& offline_c = plan.containers[1];
  EXPECT_TRUE(offline_c.networks.empty());
  EXPECT_EQ(offline_c.body["HostConfig"]["NetworkMode"], "none");
  EXPECT_FALSE(offline_c.body.contains("NetworkingConfig"));
  EXPECT_EQ(plan.containers[2].networks, std::vector<std::string>{"ck-shop"});
  const auto& web = plan.containers[3];
  EXPECT_EQ(web.networks, (std::vector<std::string>{"ck-shop_front", "ck-shop_back"}));
  // The create body names the first; the runner connects the second before the start.
  EXPECT_EQ(web.body["HostConfig"]["NetworkMode"], "ck-shop_front");
  EXPECT_EQ(web.body["NetworkingConfig"]["EndpointsConfig"].size(), 1u);
  EXPECT_EQ(web.body["Labels"]["cloudyknight.networks"], "ck-shop_front,ck-shop_back");
  // Moving a service to another network changes its spec: the next start replaces it.
  auto moved = p;
  moved.services["web"].networks = {"front"};
  EXPECT_NE(plan_compose(moved, o).containers[3].hash, web.hash);
  EXPECT_EQ(compose_network_name("shop", "default"), "ck-shop");
  EXPECT_EQ(compose_network_name("shop", "back"), "ck-shop_back");
  EXPECT_EQ(compose_network_body("ck-shop_back", "shop", "inst1", false)["Name"], "ck-shop_back");
}

TEST(ComposePlan, HostnameStopTtyAndExtraHostsReachTheEngine) {
  auto p = two_services();
  compose::Service& web = p.services["web"];
  web.hostname = "front";
  web.stop_signal = "SIGINT";
  web.stop_grace_period = std::chrono::milliseconds(2500);
  web.tty = true;
  web.stdin_open = true;
  web.extra_hosts = {"db.local:10.0.0.5"};
  auto plan = plan_compose(p, options());
  const auto& c = plan.containers[1];
  EXPECT_EQ(c.body["Hostname"], "front");
  EXPECT_EQ(c.body["StopSignal"], "SIGINT");
  EXPECT_EQ(c.body["StopTimeout"], 2);
  EXPECT_EQ(c.stop_seconds, 2);
  EXPECT_EQ(c.body["Tty"], true);
  EXPECT_TRUE(c.tty);
  EXPECT_EQ(c.body["OpenStdin"], true);
  EXPECT_EQ(c.body["HostConfig"]["ExtraHosts"], json::array({"db.local:10.0.0.5"}));
  const auto& redis = plan.containers[0];
  for (const char* k : {"Hostname", "StopSignal", "StopTimeout", "Tty", "OpenStdin"}) {
    EXPECT_FALSE(redis.body.contains(k)) << k;
  }
  EXPECT_FALSE(redis.tty);
}

TEST(ComposePlan, RunSettingsComeFromTheService) {
  auto plan = plan_compose(two_services(), options());
  const json& web = plan.containers[1].body;
  EXPECT_EQ(web["Cmd"], json::array({"node", "server.js"}));
  EXPECT_FALSE(web.contains("Entrypoint"));
  EXPECT_EQ(web["WorkingDir"], "/workspace");
  EXPECT_EQ(web["User"], "1000:1000");
  // The file's environment wins over the runtime's additions; the rest are added.
  EXPECT_TRUE(has(web["Env"], "CK_BASE_PATH=/mine/"));
  EXPECT_TRUE(has(web["Env"], "BASE_URL=http://127.0.0.1:8080/shop/"));
  EXPECT_TRUE(has(web["Env"], "REDIS_URL=redis://redis:6379"));
  // Only the routed service gets them.
  EXPECT_FALSE(has(plan.containers[0].body["Env"], "BASE_URL=http://127.0.0.1:8080/shop/"));
  const json& h = web["HostConfig"];
  EXPECT_EQ(h["Memory"], 256ull << 20);
  EXPECT_EQ(h["MemorySwap"], 256ull << 20);
  EXPECT_EQ(h["NanoCpus"], 500'000'000);
  EXPECT_EQ(h["PidsLimit"], 128);
  EXPECT_EQ(h["CapDrop"], json::array({"ALL"}));
  EXPECT_TRUE(has(h["SecurityOpt"], "no-new-privileges:true"));
  EXPECT_EQ(h["RestartPolicy"]["Name"], "unless-stopped");
  EXPECT_EQ(plan.containers[0].body["HostConfig"]["RestartPolicy"],
            json({{"Name", "on-failure"}, {"MaximumRetryCount", 3}}));
  ASSERT_EQ(h["Mounts"].size(), 1u);
  EXPECT_EQ(h["Mounts"][0], json({{"Type", "bind"},
                                  {"Source", "/srv/ws/shop"},
                                  {"Target", "/workspace"},
                                  {"ReadOnly", true}}));
}

TEST(ComposePlan, VolumesAreProjectPrefixed) {
  auto plan = plan_compose(two_services(), options());
  const json& m = plan.containers[0].body["HostConfig"]["Mounts"];
  ASSERT_EQ(m.size(), 3u);
  EXPECT_EQ(m[0]["Type"], "volume");
  EXPECT_EQ(m[0]["Source"], "ck-shop_data");
  EXPECT_EQ(m[0]["Target"], "/data");
  EXPECT_FALSE(m[1].contains("Source"));  // anonymous
  EXPECT_EQ(m[2], json({{"Type", "tmpfs"}, {"Target", "/tmp"}}));
}

TEST(ComposePlan, HealthcheckInNanoseconds) {
  auto plan = plan_compose(two_services(), options());
  const json& h = plan.containers[0].body["Healthcheck"];
  EXPECT_EQ(h["Test"], json::array({"CMD", "redis-cli", "ping"}));
  EXPECT_EQ(h["Interval"], 500'000'000LL);
  EXPECT_EQ(h["Timeout"], 2'000'000'000LL);
  EXPECT_EQ(h["StartPeriod"], 1'000'000'000LL);
  EXPECT_EQ(h["Retries"], 5);
  EXPECT_FALSE(plan.containers[1].body.contains("Healthcheck"));
  auto p = two_services();
  p.services["redis"].healthcheck->disable = true;
  EXPECT_EQ(plan_compose(p, options()).containers[0].body["Healthcheck"],
            json({{"Test", json::array({"NONE"})}}));
}

TEST(ComposePlan, SpecHashIgnoresTheHostPortOnly) {
  auto a = plan_compose(two_services(), options());
  auto o = options();
  o.host_port = 8077;
  auto b = plan_compose(two_services(), o);
  EXPECT_EQ(a.containers[1].hash, b.containers[1].hash);
  EXPECT_EQ(b.containers[1].body["HostConfig"]["PortBindings"]["3000/tcp"][0]["HostPort"], "8077");
  o.host_port = 0;  // the plan made before a port is taken (to find one to adopt)
  EXPECT_EQ(plan_compose(two_services(), o).containers[1].hash, a.containers[1].hash);
  auto p = two_services();
  p.services["web"].environment["X"] = "1";
  EXPECT_NE(plan_compose(p, options()).containers[1].hash, a.containers[1].hash);
  EXPECT_EQ(plan_compose(p, options()).containers[0].hash, a.containers[0].hash);
  o = options();
  o.image_ids = {{"redis", "sha256:abc"}};  // a rebuilt image
  EXPECT_NE(plan_compose(two_services(), o).containers[0].hash, a.containers[0].hash);
}

TEST(ComposePlan, ExternalVolumesAreUsedNotCreated) {
  auto p = two_services();
  p.volumes["data"].external = true;
  p.volumes["data"].external_name = "shared-data";
  auto plan = plan_compose(p, options());
  EXPECT_TRUE(plan.volumes.empty());
  EXPECT_EQ(plan.containers[0].body["HostConfig"]["Mounts"][0]["Source"], "shared-data");
}

TEST(ComposePlan, InternalNetworkPublishesNothing) {
  auto o = options();
  o.host_port = 0;
  auto plan = plan_compose(two_services(), o);
  EXPECT_FALSE(plan.containers[1].body["HostConfig"].contains("PortBindings"));
  EXPECT_TRUE(plan.containers[1].body["ExposedPorts"].contains("3000/tcp"));
}

}  // namespace
}  // namespace ck
