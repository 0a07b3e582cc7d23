# Shared by scripts/run.sh and scripts/test.sh: install what is missing, then build.
set -euo pipefail

CK_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CK_BUILD=${CK_BUILD:-$CK_ROOT/build}

say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

# ensure_packages PKG...: installs the Debian packages that are not installed yet.
ensure_packages() {
  local missing=()
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  say "installing Debian packages: ${missing[*]}"
  if [ -z "${CK_APT_UPDATED:-}" ]; then
    as_root apt-get update -qq
    export CK_APT_UPDATED=1
  fi
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# ensure_command CMD PKG...: installs PKG... when CMD is not on PATH (e.g. node from elsewhere).
ensure_command() {
  local cmd=$1
  shift
  command -v "$cmd" >/dev/null 2>&1 || ensure_packages "$@"
}

ensure_build_deps() {
  ensure_packages g++ cmake ninja-build ccache pkg-config libboost-dev libboost-system-dev \
    nlohmann-json3-dev libyaml-cpp-dev libspdlog-dev libfmt-dev libcli11-dev zlib1g-dev \
    libgtest-dev libarchive-dev libsqlite3-dev libssl-dev ca-certificates curl libcurl4-openssl-dev \
    libargon2-dev libseccomp-dev libgit2-dev
}

# The runtimes the bundled examples use (node + npm for hello-node, python3 for hello-python).
ensure_example_runtimes() {
  ensure_command node nodejs
  ensure_command npm npm
  ensure_command python3 python3
  # `python3 -m venv` for Debian's python3, which the process runtime's sandbox uses.
  ensure_packages python3-venv
}

docker_answers() {
  curl -sf --max-time 2 --unix-socket "${CK_DOCKER_SOCKET:-/var/run/docker.sock}" http://localhost/_ping >/dev/null 2>&1
}

# ensure_docker: installs Debian's docker.io (and debootstrap, for offline images) and starts
# dockerd by hand when no engine answers (these machines have no systemd).
ensure_docker() {
  ensure_packages docker.io debootstrap
  if ! docker_answers; then
    say "starting dockerd (its log: /tmp/cloudyknight-dockerd.log)"
    as_root sh -c 'nohup dockerd >/tmp/cloudyknight-dockerd.log 2>&1 </dev/null &'
    for _ in $(seq 1 120); do
      docker_answers && break
      sleep 0.5
    done
  fi
  if ! docker_answers; then
    say "dockerd did not start; the end of its log:"
    tail -n 20 /tmp/cloudyknight-dockerd.log >&2 || true
    return 1
  fi
}

# ensure_images TYPE...: the runtime images for those types (offline from Debian packages
# when no registry answers); quick when they exist.
ensure_images() {
  say "runtime images: $*"
  "$CK_BUILD/cloudyknight" images build --data "$CK_BUILD/image-scratch" "$@"
}

# build [CMAKE ARGS...]: configures and builds into $CK_BUILD; $CK_BUILD_TARGET (e.g. cloudyknight)
# limits the build to one target and what it links, skipping the tests, fuzzers and benchmarks.
build() {
  say "building ${CK_BUILD_TARGET:-everything} into $CK_BUILD"
  export CCACHE_DIR=${CCACHE_DIR:-$HOME/.cache/ccache}
  # Paths relative to the checkout, so a fresh clone elsewhere (CI) reuses what another
  # checkout of the same tree compiled.
  export CCACHE_BASEDIR=${CCACHE_BASEDIR:-$CK_ROOT} CCACHE_NOHASHDIR=${CCACHE_NOHASHDIR:-true}
  # -g1 (line tables and function names, what a backtrace needs) compiles in three quarters of
  # the time -g takes with Boost's templates.
  cmake -S "$CK_ROOT" -B "$CK_BUILD" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O2 -g1 -DNDEBUG" "$@" >/dev/null
  cmake --build "$CK_BUILD" -j "$(nproc)" ${CK_BUILD_TARGET:+--target "$CK_BUILD_TARGET"}
}
