"""Strip the debug symbols from the shared libraries inside wheels, in place,
so that the wheels carried to the GPU machine fit its 64 MiB working-tree
limit (``bench/gpu_grid.sh prepare``): spaCy's cp312 wheel goes from about
35 MB to 9 MB. The wheel's RECORD is rewritten with the new hashes.

    python bench/strip_wheels.py WHEEL_DIR
"""
import base64
import hashlib
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path


def _record_line(name: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{name},sha256={digest},{len(data)}"


def strip_wheel(wheel: Path) -> int:
    """Strip ``wheel`` in place; returns the bytes saved (0: nothing compiled)."""
    with zipfile.ZipFile(wheel) as z:
        names = [n for n in z.namelist() if not n.endswith("/")]
        if not any(n.endswith(".so") for n in names):
            return 0
        with tempfile.TemporaryDirectory() as tmp:
            z.extractall(tmp)
            root = Path(tmp)
            for name in names:
                if name.endswith(".so"):
                    subprocess.run(["strip", "--strip-unneeded", str(root / name)], check=True)
            record = next(n for n in names if n.endswith(".dist-info/RECORD"))
            lines = [_record_line(n, (root / n).read_bytes()) for n in names if n != record]
            (root / record).write_text("\n".join(lines + [f"{record},,"]) + "\n")
            before = wheel.stat().st_size
            out = wheel.with_suffix(".tmp")
            with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as new:
                for name in names:
                    new.write(root / name, name)
            out.replace(wheel)
    return before - wheel.stat().st_size


def main() -> int:
    folder = Path(sys.argv[1])
    for wheel in sorted(folder.glob("*.whl")):
        saved = strip_wheel(wheel)
        if saved:
            print(f"{wheel.name}: {saved / 1e6:.1f} MB smaller")
    return 0


if __name__ == "__main__":
    sys.exit(main())
