#!/usr/bin/env python3
"""Deterministic workspace for bench/backup (issue 17's backup benchmark).

  make_workspace.py init DIR [--files 5000] [--binaries 120] [--seed 1]
      Writes DIR (which must not exist or be empty): FILES files in all, of which BINARIES are
      incompressible "assets" of 100 KiB-2 MiB (log-uniform, under assets/ and public/) and the
      rest code-like text of 200 B-20 KiB (log-uniform, a median of ~2 KiB: .ts .js .py .css .md
      .json .html .go .cc .h under src/<module>/<package>/, docs/ and tests/), about 40 modules
      and 500 folders. 1 % of the text files are copies of another (LICENSE headers, vendored
      helpers do that), so content dedup has something to find. Default: ~95 MB.
      mtimes are fixed (2024-01-01 plus the file's index), so two runs give identical trees.
      Prints a summary line: files, bytes.
  make_workspace.py mutate DIR --step N [--seed 1]
      Changes one text file of DIR (the Nth pick of a seeded sequence): a line is replaced and
      one appended, and its mtime moves forward to now. Prints the changed path.

Nothing matches the sync ignore rules (storage/ignore.h: node_modules/, .git/, *.log, .env*,
dist/, build/, __pycache__/, vendor/, .vscode/, .idea/, .DS_Store), so every file is source for
CloudyKnight and restic alike. Standard library only.
"""
import argparse
import os
import random
import sys
import time

WORDS = ("int auto const return if else for while struct class void static size_t string "
         "vector map value key result error buffer count index offset length data item node next "
         "prev self this config request response handle open close read write parse format check "
         "update status name path file dir repo commit branch remote token user order cache queue "
         "async await function export import from let var def lambda yield true false None null "
         "0 1 2 16 64 256 1024 ( ) { } [ ] ; , . -> :: = == != < > + - * /").split()
TEXT_EXTS = [".ts", ".js", ".py", ".css", ".md", ".json", ".html", ".go", ".cc", ".h"]
BIN_EXTS = [".png", ".jpg", ".woff2", ".wasm", ".zip", ".pdf"]
BASE_MTIME = 1704067200  # 2024-01-01T00:00:00Z
MAX_FILES = 1_000_000


def text_blob(rng, size):
    out, total = [], 0
    while total < size:
        line = "  " * rng.randint(0, 4) + " ".join(rng.choices(WORDS, k=rng.randint(2, 12))) + "\n"
        out.append(line)
        total += len(line)
    return "".join(out).encode()[:size]


def text_size(rng):
    return int(200 * (100 ** rng.random()))  # 200 B - 20 KiB, log-uniform


def bin_size(rng):
    return int(100 * 1024 * (20 ** rng.random()))  # 100 KiB - 2 MiB, log-uniform


def layout(rng, files, binaries):
    """[(relative path, kind)] for every file, kind "text" or "bin"; deterministic."""
    modules = [f"mod{m:02d}-{rng.choice(WORDS).strip('(){}[];,.<>=!+-*/:') or 'x'}" for m in range(40)]
    folders = []
    for m in modules:
        folders.append(f"src/{m}")
        for p in range(rng.randint(4, 14)):
            folders.append(f"src/{m}/pkg{p:02d}")
            if rng.random() < 0.3:
                folders.append(f"src/{m}/pkg{p:02d}/internal")
    folders += [f"docs/section{s:02d}" for s in range(20)] + [f"tests/suite{s:02d}" for s in range(30)]
    bin_folders = [f"assets/{k}" for k in ("img", "fonts", "media", "wasm")] + \
                  [f"public/static/{k:02d}" for k in range(8)]
    out, seen = [], set()
    for i in range(files):
        kind = "bin" if i < binaries else "text"
        for _ in range(1000):
            if kind == "bin":
                path = f"{rng.choice(bin_folders)}/asset-{rng.randrange(100000):05d}{rng.choice(BIN_EXTS)}"
            else:
                path = f"{rng.choice(folders)}/{rng.choice(WORDS).strip('(){}[];,.<>=!+-*/:') or 'f'}" \
                       f"_{rng.randrange(100000):05d}{rng.choice(TEXT_EXTS)}"
            if path not in seen:
                break
        seen.add(path)
        out.append((path, kind))
    return out


def write(path, data, mtime):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)
    os.utime(path, (mtime, mtime))


def init(args):
    if args.files < 1 or args.files > MAX_FILES or args.binaries < 0 or args.binaries > args.files:
        sys.exit(f"make_workspace.py: need 1 <= --files <= {MAX_FILES} and 0 <= --binaries <= --files")
    if os.path.exists(args.dir) and os.listdir(args.dir):
        sys.exit(f"make_workspace.py: {args.dir} exists and is not empty")
    rng = random.Random(args.seed)
    files = layout(rng, args.files, args.binaries)
    total, texts = 0, []
    for i, (rel, kind) in enumerate(files):
        if kind == "bin":
            data = rng.randbytes(bin_size(rng))
        elif texts and rng.random() < 0.01:
            data = texts[rng.randrange(len(texts))]  # a copy: the same content twice
        else:
            data = text_blob(rng, text_size(rng))
            texts.append(data)
        write(os.path.join(args.dir, rel), data, BASE_MTIME + i)
        total += len(data)
    print(f"{len(files)} files, {total} bytes ({total / 1048576:.1f} MiB), "
          f"{args.binaries} binaries, seed {args.seed}")


def mutate(args):
    rng = random.Random(f"{args.seed}-mutate")
    texts = []
    for root, dirs, names in os.walk(args.dir):
        dirs.sort()
        for n in sorted(names):
            if os.path.splitext(n)[1] in TEXT_EXTS:
                texts.append(os.path.join(root, n))
    if not texts:
        sys.exit(f"make_workspace.py: no text file under {args.dir}")
    for _ in range(args.step):
        rng.random()
    path = texts[int(rng.random() * len(texts))]
    step_rng = random.Random(f"{args.seed}-{args.step}")
    with open(path, "rb") as f:
        lines = f.read().splitlines(keepends=True) or [b"\n"]
    lines[step_rng.randrange(len(lines))] = text_blob(step_rng, 60) + b"\n"
    lines.append(f"// step {args.step}\n".encode())
    with open(path, "wb") as f:
        f.write(b"".join(lines))
    now = time.time()
    os.utime(path, (now, now))
    print(os.path.relpath(path, args.dir))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    i = sub.add_parser("init")
    i.add_argument("dir")
    i.add_argument("--files", type=int, default=5000)
    i.add_argument("--binaries", type=int, default=120)
    i.add_argument("--seed", type=int, default=1)
    m = sub.add_parser("mutate")
    m.add_argument("dir")
    m.add_argument("--step", type=int, required=True)
    m.add_argument("--seed", type=int, default=1)
    args = p.parse_args()
    init(args) if args.cmd == "init" else mutate(args)


if __name__ == "__main__":
    main()
