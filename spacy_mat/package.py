"""Package a trained pipeline as an installable wheel, next to a spacy_mat wheel.

    python -m spacy_mat.package MODEL OUTPUT_DIR --name mat_ner --version 0.1.0
        [--description TEXT] [--author NAME] [--untrained refuse|warn] [--no-spacy-mat-wheel]

writes ``OUTPUT_DIR/en_<name>/`` (the ``spacy package`` source folder) and
``OUTPUT_DIR/en_<name>/dist/`` holding two wheels:
``en_<name>-<version>+<build>-py3-none-any.whl`` and
``spacy_mat-<version>-py3-none-any.whl`` (built from the source checkout this
spacy_mat was installed from), so that

    pip install --find-links OUTPUT_DIR/en_<name>/dist en_<name>

installs the pipeline and its component without an index when spaCy and
torch are already installed.

The package version gets a build label, ``+<UTC time of the model's newest
file>`` (e.g. ``0.1.0+20261130101500``): a retrained model is a new, higher
version, so ``pip install`` of the new wheel replaces the installed one (a
rebuilt ``0.1.0`` would be "already satisfied"), while repackaging the same
model gives the same version. Before building, the model's training record
(``python -m spacy_mat.final``) is checked: an untrained (step-0) model is
refused (``--untrained warn``: packaged with a loud warning, for tiny test
budgets); a model without a record gets a warning.
"""
import argparse
import datetime
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import List, Optional, Sequence

from .final import META_KEY

DEFAULT_AUTHOR = "spacy_mat"


class PackageError(ValueError):
    pass


def build_label(model: Path) -> str:
    """UTC time of the newest file in ``model`` as ``YYYYMMDDHHMMSS``."""
    newest = max(p.stat().st_mtime for p in model.rglob("*") if p.is_file())
    return datetime.datetime.fromtimestamp(newest, datetime.timezone.utc).strftime("%Y%m%d%H%M%S")


def check_trained(meta: dict, model: Path, allow_untrained: bool) -> Optional[str]:
    """None when the model's record says it was trained; a warning text when
    there is no record; raises PackageError for an untrained model."""
    record = meta.get(META_KEY)
    if record is None or record.get("trained") is None:
        return (f"WARNING: cannot verify that {model} was trained past step 0 (no "
                f"{META_KEY!r} record in meta.json): run python -m spacy_mat.final TRAIN_DIR "
                "--dev DEV.spacy after spacy train")
    if record["trained"] is False:
        message = (f"{model} is the untrained step-0 model (dev score {record['dev_score']:.4f}; "
                   f"model-last scored {record['model_last_dev_score']:.4f}): train longer "
                   "(more epochs/steps)")
        if not allow_untrained:
            raise PackageError(message + ", or pass --untrained warn")
        return "WARNING: packaging anyway: " + message
    return None


def spacy_mat_source() -> Optional[Path]:
    """The source checkout spacy_mat was installed from (editable install), if any."""
    import spacy_mat

    root = Path(spacy_mat.__file__).resolve().parents[1]
    return root if (root / "setup.py").is_file() or (root / "pyproject.toml").is_file() else None


def run(command: List[str]) -> None:
    print("Running:", " ".join(command), flush=True)
    result = subprocess.run(command)
    if result.returncode != 0:
        raise PackageError(f"command failed with exit code {result.returncode}: {' '.join(command)}")


def package(model: Path, output_dir: Path, name: str, version: str, description: Optional[str] = None,
            author: str = DEFAULT_AUTHOR, allow_untrained: bool = False,
            spacy_mat_wheel: bool = True) -> Path:
    """Build the wheels; return the ``dist`` folder."""
    meta_path = model / "meta.json"
    if not meta_path.is_file():
        raise PackageError(f"{model} is not a trained pipeline folder (no meta.json)")
    meta = json.loads(meta_path.read_text(encoding="utf8"))
    warning = check_trained(meta, model, allow_untrained)
    if warning:
        print(f"\n{'!' * 78}\n{warning}\n{'!' * 78}\n", file=sys.stderr, flush=True)
    full_version = f"{version}+{build_label(model)}"
    if description is None:
        record = meta.get(META_KEY) or {}
        score = f"; dev score {record['dev_score']:.4f}" if "dev_score" in record else ""
        description = (f"spacy_mat mat_tagger (CharCNN-BiLSTM-CRF) trained from {model}{score}; "
                       "needs the spacy_mat package")
    # spacy package's meta: description and author filled, the rest from the model
    meta.update({"description": description, "author": author})
    output_dir.mkdir(parents=True, exist_ok=True)
    target = output_dir / f"en_{name}"
    staging = output_dir / f".staging-en_{name}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    staged_meta = staging / "meta.json"
    staged_meta.write_text(json.dumps(meta, indent=2), encoding="utf8")
    run([sys.executable, "-m", "spacy", "package", str(model), str(staging), "--name", name,
         "--version", full_version, "--meta-path", str(staged_meta), "--build", "none"])
    built = staging / f"en_{name}-{full_version}"
    shutil.rmtree(target, ignore_errors=True)
    built.rename(target)
    shutil.rmtree(staging)
    dist = target / "dist"
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "--wheel-dir", str(dist), str(target)])
    if spacy_mat_wheel:
        source = spacy_mat_source()
        if source is None:
            raise PackageError("spacy_mat was not installed from a source checkout, so its wheel "
                               "cannot be built here: pass --no-spacy-mat-wheel")
        run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
             "--wheel-dir", str(dist), str(source)])
    for wheel in sorted(dist.glob("*.whl")):
        print(f"built {wheel}")
    return dist


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m spacy_mat.package",
        description="Package a trained pipeline as OUTPUT_DIR/en_NAME/dist/en_NAME-VERSION+BUILD "
        "wheel, next to a spacy_mat wheel (pip install --find-links OUTPUT_DIR/en_NAME/dist en_NAME).")
    parser.add_argument("model", help="trained pipeline folder (e.g. training/<config>/model-best)")
    parser.add_argument("output_dir", help="parent folder of the package")
    parser.add_argument("--name", required=True, help="package name without the en_ prefix")
    parser.add_argument("--version", required=True, help="base version; a +BUILD label is added")
    parser.add_argument("--description", default=None, help="meta description (default: generated)")
    parser.add_argument("--author", default=DEFAULT_AUTHOR, help="meta author")
    parser.add_argument("--untrained", choices=["refuse", "warn"], default="refuse",
                        help="what to do with a model whose record says it is the untrained "
                        "step-0 model (default: refuse)")
    parser.add_argument("--no-spacy-mat-wheel", dest="spacy_mat_wheel", action="store_false",
                        help="do not build the spacy_mat wheel beside the package")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        package(Path(args.model), Path(args.output_dir), args.name, args.version, args.description,
                args.author, args.untrained == "warn", args.spacy_mat_wheel)
    except PackageError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
