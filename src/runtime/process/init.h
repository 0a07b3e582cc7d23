#pragma once

namespace ck {

/// `cloudyknight __init -- CMD...`: the first process of every workspace app. It joins the
/// cgroups named in CK_INIT_CGROUPS, and when it is PID 1 of new namespaces it builds the
/// sandbox's root and pivots into it (confine.h); then it runs CMD in its own process group,
/// confined (own uid, no capabilities, no_new_privs, rlimits, seccomp), forwards TERM/INT/HUP to it,
/// reaps orphans, and exits with CMD's status (128+signal if CMD was killed), taking any
/// leftover processes with it. Runs in the child only, never in the daemon.
int run_init(int argc, char** argv);

}  // namespace ck
