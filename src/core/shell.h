#pragma once
// Writing shell command lines.

#include <string>
#include <string_view>

namespace ck {

/// One shell word: 'it', with each ' written as '\''. Pure.
std::string shell_quote(std::string_view word);

}  // namespace ck
