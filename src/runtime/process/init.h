#pragma once

namespace ck {

/// `cloudyknight __init -- CMD...`: the first process of every workspace app. It joins the
/// cgroups named in CK_INIT_CGROUPS, and when it is PID 1 of a new pid namespace it mounts a
/// private /proc; then it runs CMD in its own process group, forwards TERM/INT/HUP to it,
/// reaps orphans, and exits with CMD's status (128+signal if CMD was killed), taking any
/// leftover processes with it. Runs in the child only, never in the daemon.
int run_init(int argc, char** argv);

}  // namespace ck
