#pragma once
// `cloudyknight deploy` (issue 18, part 3): a folder's source to the server the CLI talks to.

#include <string>

#include "cli/api_client.h"
#include "cli/remote_cmd.h"

namespace ck::cli {

struct DeployOptions {
  std::string dir;   // "" = the current folder
  std::string name;  // "" = the folder's name
  bool private_ws = false;  // when the deploy creates the workspace
  bool detach = false;      // stop once the files are in place
  bool watch = false;       // deploy again after each save, until Ctrl-C
};

/// The exit code (remote_cmd.h's).
int deploy_command(const Endpoint& e, DeployOptions o);

}  // namespace ck::cli
