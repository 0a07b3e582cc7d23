#pragma once
// Dev servers detection recognises in a package.json script (DESIGN.md "Gateway routing"):
// they write absolute URLs under their base, so the gateway keeps the /<name> prefix for them
// and they are given the base on their command line where a flag exists. Pure.

#include <string>
#include <string_view>

namespace ck {

struct DevServer {
  /// "vite", "astro", "next", "sveltekit", "webpack-dev-server"; empty: none recognised.
  std::string name;
  /// The script already passes a base (--base / --base=...).
  bool has_base = false;
  /// A base can be given on the command line (vite, astro): `--base "$CK_BASE_PATH"`.
  bool takes_base_flag = false;
};

/// Looks at the command that ends `script` (after any `a && b` or `a; b`): `vite` (also
/// `vite dev` / `vite serve`; not build, preview or optimize), `astro dev`, `next dev` (or
/// bare `next`), `webpack serve`, `webpack-cli serve`, `webpack-dev-server`, and `vite dev`
/// with @sveltejs/kit among the dependencies (`sveltekit`). Leading VAR=value assignments,
/// `cross-env`, `npx` and `exec` are skipped, and node_modules/.bin/ paths accepted. A script
/// with pipes, redirections, subshells, background jobs or comments is never recognised.
DevServer recognise_dev_server(std::string_view script, bool has_sveltekit);

/// The script's command with the base appended: `<command> --base "$CK_BASE_PATH"`, or, when
/// npm runs the script (`npm start`), `npm start -- --base "$CK_BASE_PATH"`.
std::string with_base_flag(std::string_view command);

}  // namespace ck
