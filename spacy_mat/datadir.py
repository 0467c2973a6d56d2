"""Check the project's ``data_dir`` before weasel fetches the assets from it.

    python -m spacy_mat.datadir DATA_DIR --files conll2003/train.txt ... [--assets assets]

weasel answers a missing local ``data_dir`` with a long traceback; this check
answers with one line saying what to set. A URL base (``https://``, ``s3://``,
...) is not checked (weasel downloads it). When the files are already in the
assets folder, a missing ``data_dir`` is fine: weasel keeps them.
"""
import argparse
import sys
from pathlib import Path
from typing import List, Optional, Sequence

USAGE = ("set it to the folder holding conll2003/{train,dev,test}.txt and "
         "conll2000/{train,test}.txt, e.g. spacy project run all . --vars.data_dir /path/to/conll "
         "(or make all DATA_DIR=/path/to/conll)")


def problems(data_dir: str, files: Sequence[str], assets: Path) -> List[str]:
    """What is missing: empty when the files can be fetched or are already fetched."""
    if "://" in data_dir:
        return []
    if all((assets / f).is_file() for f in files):
        return []
    root = Path(data_dir)
    if not root.is_dir():
        return [f"data_dir {data_dir!r} is not a folder (resolved: {root.resolve()}); {USAGE}"]
    missing = [f for f in files if not (root / f).is_file()]
    if missing:
        return [f"data_dir {data_dir!r} lacks {', '.join(missing)}; {USAGE}"]
    return []


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m spacy_mat.datadir",
                                     description="Check that DATA_DIR holds the corpus files.")
    parser.add_argument("data_dir")
    parser.add_argument("--files", nargs="+", required=True, help="paths relative to DATA_DIR")
    parser.add_argument("--assets", default="assets", help="folder the files are fetched into")
    args = parser.parse_args(argv)
    found = problems(args.data_dir, args.files, Path(args.assets))
    for problem in found:
        print(f"error: {problem}", file=sys.stderr)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
