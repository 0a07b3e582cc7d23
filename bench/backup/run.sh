#!/usr/bin/env bash
# Backup benchmark (issue 17): `cloudyknight backup`/`restore` beside Debian's restic on the same
# generated 5,000-file workspace (~100 MB: text sources of 200 B-20 KiB, 120 binaries of
# 100 KiB-2 MiB; bench/backup/make_workspace.py, seeded), against one s3rver on 127.0.0.1, in one
# run: first backup, backups 2..10 (one file changed before each), an unchanged backup and a full
# restore into an empty folder, per tool. Prints times, objects written and bytes stored, and
# ours/restic for each step. See bench/backup/bench.py for how each figure is taken.
#
# s3rver serves HTTPS (a throwaway certificate for IP:127.0.0.1 made in the run; restic gets it
# with --cacert, ours through AWS_CA_BUNDLE): restic's S3 library sends uploads aws-chunked over
# plain HTTP, which s3rver 3 stores with the chunk framing in them. Both tools pay for TLS.
# restic always encrypts; "ours" runs with encryption on (CK_BACKUP_KEY); "ours-plain" is an
# extra row without it.
#
# Env options:
#   BENCH_TOOLS        tools to run, any of: ours restic ours-plain (default: all three)
#   BENCH_ROUNDS       rounds; figures are medians          (default 3)
#   BENCH_FILES        files in the workspace               (default 5000)
#   BENCH_BINARIES     how many of them are binaries        (default 120)
#   BENCH_BACKUPS      backups before the unchanged one     (default 10)
#   BENCH_OP_TIMEOUT   limit per backup/restore, seconds    (default 300)
#   BENCH_TIMEOUT      limit for the whole run, seconds     (default 2400)
#   BENCH_DIR          where the temp dir and s3rver's data go (default $TMPDIR or /tmp;
#                      /dev/shm takes the disk out of the comparison)
#   BENCH_KEEP         1 = keep the temp dir
#   CK_BINARY          cloudyknight binary (default build/cloudyknight of this checkout)
# Exit code: 0 when every step of every round was measured and every restore verified (a goal
# not met is a finding, not an error), 1 otherwise.
set -uo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT_DIR="$(cd "$SCRIPT_DIR/../.." && pwd)"
die() { printf '[bench] ERROR: %s\n' "$*" >&2; exit 1; }

# shellcheck source=../../scripts/lib.sh
source "$ROOT_DIR/scripts/lib.sh" || die "cannot read scripts/lib.sh"
set +e  # lib.sh sets -e; failures here are handled one by one
tools="${BENCH_TOOLS:-ours restic ours-plain}"
pkgs=(python3 openssl)
[[ " $tools " == *" restic "* ]] && pkgs+=(restic)
ensure_packages "${pkgs[@]}" || die "installing ${pkgs[*]} failed"
command -v npm >/dev/null 2>&1 || ensure_packages npm || die "installing npm (for s3rver) failed"
CK_S3RVER="${CK_S3RVER:-$(bash "$ROOT_DIR/scripts/s3rver.sh")}" || die "scripts/s3rver.sh could not install s3rver"
export CK_S3RVER
export CK_BINARY="${CK_BINARY:-$ROOT_DIR/build/cloudyknight}"
timeout "$((${BENCH_TIMEOUT:-2400} + 120))" python3 "$SCRIPT_DIR/bench.py"
rc=$?
((rc == 124)) && die "BENCH_TIMEOUT reached: stopped before the end"
exit "$rc"
