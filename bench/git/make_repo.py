#!/usr/bin/env python3
"""Deterministic test repositories for bench/git (issue 16's pull benchmark).

  make_repo.py init BARE [--files 5000] [--commits 1000] [--assets 100] [--seed 1]
      Creates the bare repository BARE (branch main) through `git fast-import`: the first
      commits add the files (100 per commit), the rest each edit 1-5 files (a few lines of a
      source file, now and then a whole asset). Sources are 1-20 KiB of code-like text in
      nested folders (src/<module>/<package>/<package>/..., 40 modules, ~520 folders), assets ~100 KiB of incompressible bytes
      (assets/...). Then `git repack -a -d -b` as a served repository would be (one pack,
      reachability bitmap). The same arguments always give the same commit ids.
  make_repo.py extend BARE [--commits 20] [--touch 100] [--seed N]
      Adds COMMITS commits on main that edit TOUCH distinct existing source files between them
      (the incremental pull case), through fast-import again. Prints the new head.

Only the git CLI and the standard library; nothing leaves BARE.
"""
import argparse
import random
import subprocess
import sys

WORDS = (b"int auto const return if else for while struct class void static size_t std string "
         b"vector map value key result error buffer count index offset length data item node next "
         b"prev self this config request response handle open close read write parse format check "
         b"update status name path file dir repo commit branch remote token user order cache queue "
         b"0 1 2 16 64 256 1024 true false nullptr None ( ) { } [ ] ; , . -> :: = == != < > + - *").split()
EXTS = [b".cc", b".h", b".py", b".ts", b".js", b".go", b".md", b".json"]
BASE_TIME = 1700000000
AUTHOR = b"Bench Author <bench@example.invalid>"


def code_line(rng):
    n = rng.randint(2, 10)
    indent = b"  " * rng.randint(0, 4)
    return indent + b" ".join(rng.choices(WORDS, k=n)) + b"\n"


def source_blob(rng, size):
    out = []
    total = 0
    while total < size:
        line = code_line(rng)
        out.append(line)
        total += len(line)
    return b"".join(out)


def source_size(rng):
    # 1-20 KiB, skewed small (log-uniform): a median of ~4.5 KiB, as source trees have.
    return int(1024 * (20 ** rng.random()))


def edit_source(rng, blob):
    lines = blob.splitlines(keepends=True) or [b"\n"]
    for _ in range(rng.randint(1, 4)):
        at = rng.randrange(len(lines))
        op = rng.random()
        if op < 0.4:
            lines[at] = code_line(rng)
        elif op < 0.8:
            lines.insert(at, code_line(rng))
        elif len(lines) > 1:
            del lines[at]
    return b"".join(lines)


def layout(rng, files, assets):
    paths = []
    modules = [b"mod%02d" % i for i in range(40)]
    for i in range(files - assets):
        m = modules[i % len(modules)]
        # Up to two package levels of three each: ~520 folders, ~10 files a folder, as source
        # trees have.
        depth = rng.randint(0, 2)
        sub = b"".join(b"/pkg%d" % rng.randint(0, 2) for _ in range(depth))
        paths.append(b"src/" + m + sub + b"/file%04d" % i + rng.choice(EXTS))
    for i in range(assets):
        paths.append(b"assets/%s/asset%03d.bin" % (rng.choice([b"img", b"fonts", b"media"]), i))
    rng.shuffle(paths)
    return paths


class Stream:
    def __init__(self, bare):
        self.proc = subprocess.Popen(["git", "-C", bare, "fast-import", "--quiet", "--done"],
                                     stdin=subprocess.PIPE)
        self.out = self.proc.stdin

    def commit(self, mark, n, parent, changes, msg):
        w = self.out.write
        w(b"commit refs/heads/main\nmark :%d\n" % mark)
        t = BASE_TIME + n * 600
        w(b"author %s %d +0000\ncommitter %s %d +0000\n" % (AUTHOR, t, AUTHOR, t))
        w(b"data %d\n%s\n" % (len(msg), msg))
        if parent:
            w(parent + b"\n")
        for path, blob in changes:
            w(b"M 100644 inline %s\ndata %d\n" % (path, len(blob)))
            w(blob)
            w(b"\n")
        w(b"\n")

    def close(self):
        self.out.write(b"done\n")
        self.out.close()
        if self.proc.wait() != 0:
            sys.exit("make_repo.py: git fast-import failed")


def git(bare, *args, capture=False):
    r = subprocess.run(["git", "-C", bare, *args], check=True, stdout=subprocess.PIPE if capture else None)
    return r.stdout


def init(a):
    if a.files < 1 or a.commits < 1 or not 0 <= a.assets <= a.files:
        sys.exit("make_repo.py: need files >= 1, commits >= 1 and 0 <= assets <= files")
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", a.bare], check=True)
    git(a.bare, "config", "gc.auto", "0")
    rng = random.Random(a.seed)
    paths = layout(rng, a.files, a.assets)
    content = {}
    st = Stream(a.bare)
    per_add = 100
    adds = min(a.commits, -(-len(paths) // per_add))
    per_add = -(-len(paths) // adds)
    n = 0
    for c in range(adds):
        batch = paths[c * per_add:(c + 1) * per_add]
        changes = []
        for p in batch:
            blob = rng.randbytes(rng.randint(80, 120) * 1024) if p.startswith(b"assets/") \
                else source_blob(rng, source_size(rng))
            content[p] = blob
            changes.append((p, blob))
        n += 1
        st.commit(n, n, b"from :%d" % (n - 1) if n > 1 else b"", changes, b"add %d files" % len(batch))
    sources = [p for p in paths if not p.startswith(b"assets/")]
    assets = [p for p in paths if p.startswith(b"assets/")]
    while n < a.commits:
        changes = []
        if assets and rng.random() < 0.02:
            p = rng.choice(assets)
            content[p] = rng.randbytes(len(content[p]))
            changes.append((p, content[p]))
        for p in rng.sample(sources, min(len(sources), rng.randint(1, 5))):
            content[p] = edit_source(rng, content[p])
            changes.append((p, content[p]))
        n += 1
        st.commit(n, n, b"from :%d" % (n - 1), changes, b"change %d file(s)" % len(changes))
    st.close()
    git(a.bare, "repack", "-a", "-d", "-b", "-q")
    git(a.bare, "prune-packed")
    print(git(a.bare, "rev-parse", "main", capture=True).decode().strip())


def extend(a):
    rng = random.Random(a.seed)
    head = git(a.bare, "rev-parse", "main", capture=True).strip()
    count = int(git(a.bare, "rev-list", "--count", "main", capture=True))
    listing = git(a.bare, "ls-tree", "-r", "main", capture=True).splitlines()
    sources = []
    for line in listing:
        meta, path = line.split(b"\t", 1)
        if path.startswith(b"src/"):
            sources.append((path, meta.split()[2]))
    touch = rng.sample(sources, min(a.touch, len(sources)))
    # The touched files' current contents, in one `git cat-file --batch`.
    req = b"".join(oid + b"\n" for _, oid in touch)
    raw = subprocess.run(["git", "-C", a.bare, "cat-file", "--batch"], input=req, check=True,
                         stdout=subprocess.PIPE).stdout
    content, pos = {}, 0
    for path, _ in touch:
        nl = raw.index(b"\n", pos)
        size = int(raw[pos:nl].split()[2])
        content[path] = raw[nl + 1:nl + 1 + size]
        pos = nl + 1 + size + 1
    st = Stream(a.bare)
    per = -(-len(touch) // a.commits)
    for i in range(a.commits):
        changes = []
        for path, _ in touch[i * per:(i + 1) * per]:
            content[path] = edit_source(rng, content[path])
            changes.append((path, content[path]))
        n = count + i + 1
        parent = b"from " + head if i == 0 else b"from :%d" % i
        st.commit(i + 1, n, parent, changes, b"change %d file(s)" % len(changes))
    st.close()
    print(git(a.bare, "rev-parse", "main", capture=True).decode().strip())


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    pi = sub.add_parser("init")
    pi.add_argument("bare")
    pi.add_argument("--files", type=int, default=5000)
    pi.add_argument("--commits", type=int, default=1000)
    pi.add_argument("--assets", type=int, default=100)
    pi.add_argument("--seed", type=int, default=1)
    pe = sub.add_parser("extend")
    pe.add_argument("bare")
    pe.add_argument("--commits", type=int, default=20)
    pe.add_argument("--touch", type=int, default=100)
    pe.add_argument("--seed", type=int, default=2)
    a = p.parse_args()
    if a.cmd == "extend" and (a.commits < 1 or a.touch < 1):
        sys.exit("make_repo.py: need commits >= 1 and touch >= 1")
    init(a) if a.cmd == "init" else extend(a)


if __name__ == "__main__":
    main()
