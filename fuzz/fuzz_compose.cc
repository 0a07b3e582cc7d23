// A workspace's docker-compose file: parse, order, route, harden and print never crash, and
// what to_yaml prints parses back to the same services.
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "compose/model.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size > (64u << 10)) {
    return 0;  // load() caps files at 1 MiB; the parser's budgets are tested in unit tests
  }
  namespace compose = ck::compose;
  std::string_view text(reinterpret_cast<const char*>(data), size);
  const compose::Vars vars = {{"PORT", "3000"}, {"EMPTY", ""}, {"TAG", "18-alpine"}};
  compose::Project hardened;
  try {
    compose::Project project = compose::parse(text, "docker-compose.yml", vars);
    (void)compose::start_order(project);
    try {
      (void)compose::pick_route(project);
    } catch (const compose::Error&) {
    }
    compose::Policy policy;
    policy.workspace.assign("fuzzws");
    policy.source = "/nonexistent-ck-fuzz/fuzzws";  // binds resolve lexically; nothing is created
    hardened = compose::harden(std::move(project), policy);
  } catch (const compose::Error&) {
    return 0;
  }
  std::string printed = compose::to_yaml(hardened);
  if (printed.size() > (1u << 20)) {
    return 0;
  }
  try {
    compose::Project again = compose::parse(printed, "printed.yml", {{"COMPOSE_PROFILES", "*"}});
    if (again.services.size() != hardened.services.size()) {
      std::abort();
    }
  } catch (const compose::Error&) {
    std::abort();  // to_yaml printed something that does not parse
  }
  return 0;
}
