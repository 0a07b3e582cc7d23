#include "core/hash.h"

#include <fmt/format.h>

namespace ck {

std::string stable_hash(std::string_view s) { return fmt::format("{:016x}", fnv1a64(s)); }

}  // namespace ck
