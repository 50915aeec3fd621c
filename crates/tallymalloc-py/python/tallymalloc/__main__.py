"""python -m tallymalloc [--report] SCRIPT.py ARGS... | -m MODULE ARGS... | --lib | --include

Runs a script or module with tallymalloc serving CPython's allocator domains from before its
first line; ``--report`` prints the stats table on stderr when it ends. ``--lib`` prints the
path of the C library the package loads (for ``LD_PRELOAD=$(python -m tallymalloc --lib)``),
``--include`` the directory of its headers.
"""

from __future__ import annotations

import atexit
import os
import runpy
import sys

import tallymalloc

USAGE = (
    "usage: python -m tallymalloc [--report] (SCRIPT.py | -m MODULE) [ARGS...]\n"
    "       python -m tallymalloc (--lib | --include)"
)


def main(arguments: list) -> None:
    if arguments in (["--lib"], ["--include"]):
        print(tallymalloc.library_path() if arguments[0] == "--lib" else tallymalloc.get_include())
        return
    report = False
    if arguments[:1] == ["--report"]:
        report, arguments = True, arguments[1:]
    if not arguments or arguments[0] in ("-h", "--help"):
        print(USAGE, file=sys.stderr if not arguments else sys.stdout)
        sys.exit(2 if not arguments else 0)
    tallymalloc.install()
    if report:
        atexit.register(tallymalloc.report, sys.stderr)
    if arguments[0] == "-m":
        if len(arguments) < 2:
            print(USAGE, file=sys.stderr)
            sys.exit(2)
        sys.argv = arguments[1:]
        runpy.run_module(arguments[1], run_name="__main__", alter_sys=True)
    else:
        sys.argv = arguments
        sys.path[0] = os.path.dirname(os.path.abspath(arguments[0]))
        runpy.run_path(arguments[0], run_name="__main__")


if __name__ == "__main__":
    main(sys.argv[1:])
