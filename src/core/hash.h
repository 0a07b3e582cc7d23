#pragma once
// A stable, fast, non-cryptographic hash for change detection (dependency keys, spec hashes,
// cache volume names): FNV-1a 64, the same on every build and machine, unlike std::hash.

#include <cstdint>
#include <string>
#include <string_view>

namespace ck {

constexpr std::uint64_t fnv1a64(std::string_view s, std::uint64_t h = 0xcbf29ce484222325ull) {
  for (unsigned char c : s) {
    h ^= c;
    h *= 0x100000001b3ull;
  }
  return h;
}

/// fnv1a64 as 16 lowercase hex digits.
std::string stable_hash(std::string_view s);

}  // namespace ck
