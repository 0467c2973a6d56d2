"""Run a project step unless its own inputs and outputs are unchanged.

    python -m spacy_mat.step KEY --deps A B ... --outputs C ... -- CMD ... [&& CMD ...]

weasel keeps one ``project.lock`` entry per command *name*: after
``all --vars.task chunk``, ``all`` for NER finds the chunk entry for
``train``, ``evaluate`` and ``package`` and reruns them although nothing NER
changed. This wrapper keeps its own record per KEY (e.g.
``train-ner_mat_similarity``) in ``.steps/KEY.json``: the commands, the
checksums of the dependencies and of the outputs (weasel's checksums). When
the record matches, it prints that it skips and exits 0; otherwise it runs the
commands in order (``&&`` separates them; each must succeed; ``python`` is
this interpreter, as in weasel) and writes the record.

``--force`` (or the environment variable ``SPACY_MAT_STEP_FORCE=1``) runs
anyway.
"""
import argparse
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Optional, Sequence

STEPS_DIR = Path(".steps")
SEPARATOR = "&&"


def checksum(path: Path) -> Optional[str]:
    """weasel's checksum of a file or directory, None when it does not exist."""
    from weasel.util import get_checksum

    return get_checksum(path) if path.exists() else None


def split_commands(tokens: Sequence[str]) -> List[List[str]]:
    """``a b && c d`` -> ``[[a, b], [c, d]]``; ``python`` becomes this interpreter."""
    commands: List[List[str]] = [[]]
    for token in tokens:
        if token == SEPARATOR:
            commands.append([])
        else:
            commands[-1].append(token)
    if any(not command for command in commands):
        raise ValueError(f"empty command in {' '.join(tokens)!r}")
    return [[sys.executable, *c[1:]] if c[0] in ("python", "python3") else c for c in commands]


def record(commands: List[List[str]], deps: Sequence[str], outputs: Sequence[str]) -> Dict:
    """What the step depends on: the commands as written, dep and output checksums."""
    as_written = [["python", *c[1:]] if c[0] == sys.executable else c for c in commands]
    return {
        "commands": as_written,
        "deps": {d: checksum(Path(d)) for d in deps},
        "outputs": {o: checksum(Path(o)) for o in outputs},
    }


def is_up_to_date(stamp: Path, current: Dict) -> bool:
    if not stamp.is_file():
        return False
    try:
        previous = json.loads(stamp.read_text(encoding="utf8"))
    except ValueError:
        return False
    outputs_exist = all(value is not None for value in current["outputs"].values())
    return outputs_exist and previous == current


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m spacy_mat.step",
        description="Run CMD (several joined by &&) unless the record .steps/KEY.json says its "
        "deps, outputs and command line are unchanged.")
    parser.add_argument("key", help="record name, unique per step and setting (e.g. train-<config>)")
    parser.add_argument("--deps", nargs="*", default=[], help="files/folders the step reads")
    parser.add_argument("--outputs", nargs="*", default=[], help="files/folders the step writes")
    parser.add_argument("--force", action="store_true", help="run even when up to date")
    parser.epilog = "then: -- CMD ... [&& CMD ...]"
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    cut = argv.index("--") if "--" in argv else len(argv)
    args = build_parser().parse_args(argv[:cut])
    tokens = argv[cut + 1:]
    if not tokens:
        print("error: no command given after --", file=sys.stderr)
        return 2
    if "/" in args.key or args.key.startswith("."):
        print(f"error: KEY must be a plain name, got {args.key!r}", file=sys.stderr)
        return 2
    commands = split_commands(tokens)
    stamp = STEPS_DIR / f"{args.key}.json"
    force = args.force or os.environ.get("SPACY_MAT_STEP_FORCE") == "1"
    missing = [d for d in args.deps if not Path(d).exists()]
    if missing:
        print(f"error: step {args.key}: missing dependencies: {', '.join(missing)}", file=sys.stderr)
        return 1
    if not force and is_up_to_date(stamp, record(commands, args.deps, args.outputs)):
        print(f"Skipping {args.key}: its inputs and outputs are unchanged ({stamp})", flush=True)
        return 0
    stamp.unlink(missing_ok=True)
    for command in commands:
        print("Running:", " ".join(command), flush=True)
        code = subprocess.run(command).returncode
        if code != 0:
            return code
    STEPS_DIR.mkdir(exist_ok=True)
    stamp.write_text(json.dumps(record(commands, args.deps, args.outputs), indent=1) + "\n",
                     encoding="utf8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
