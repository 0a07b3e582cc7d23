#pragma once
// Small pieces every CLI command file uses.

#include <cstdlib>
#include <iostream>
#include <optional>
#include <string>

namespace ck::cli {

/// An environment variable, nullopt when unset.
inline std::optional<std::string> env(const std::string& name) {
  const char* v = std::getenv(name.c_str());
  return v ? std::optional<std::string>(v) : std::nullopt;
}

/// Prints "cloudyknight: <message>" on stderr and answers the exit code.
inline int error(const std::string& message, int code = 1) {
  std::cerr << "cloudyknight: " << message << "\n";
  return code;
}

}  // namespace ck::cli
