"""The experiment grid on Ray: ``python -m spacy_mat.experiments ... --ray [ADDRESS]``.

Every unfinished (row, task, seed) of the grid becomes one Ray task that
declares ``--cpus-per-run`` CPUs and ``--gpus-per-run`` GPUs (fractions allowed:
``0.25`` lets four runs share a GPU). Without ADDRESS, ``ray.init()`` joins the
cluster named by ``RAY_ADDRESS`` or one started with ``ray start`` on this
machine, else it starts a local Ray instance (``--ray local`` always starts
one; ``--ray-cpus`` caps its CPUs); with ADDRESS (``HOST:6379``,
``ray://HOST:10001``, ``auto``) it joins that cluster.

Nothing has to be shared between the machines but the installed package:

* the driver packs the task's inputs into one tar in Ray's object store, once:
  the converted corpora ``<data-dir>/<task>/{train,dev,test}.spacy``, the
  configs of the runs, and every ``[paths]`` entry (config or ``--paths.X``
  override, ``train``/``dev`` aside, and ``--vectors``) that is a *relative*
  path to a local file or folder, e.g. ``vectors/glove-6b-50d``. A worker unpacks it
  once per node into ``$TMPDIR/spacy_mat_ray/inputs-<digest>/`` and runs there,
  so relative paths in configs and extra overrides resolve as on the driver
  (the overrides are passed through unchanged; absolute paths must exist on
  the workers).
* the run itself is :func:`spacy_mat.experiments.run_one` (the plain runner's
  code) in a scratch folder on the worker; the run folder comes back as a tar
  (``result.json``, ``test.json``, logs, the learning and confidence curves,
  ``training/model-best`` with ``--keep-models``) and the driver unpacks it
  into ``<output>/<task>_<row>/seed<k>/``, ``result.json`` included only when
  the run finished, so the summary and plots are built in one place and a
  rerun skips the finished runs, exactly as with the plain runner.

A run that fails (``spacy train`` or the evaluation exits non-zero, the worker
or its node dies) is resubmitted by the driver up to ``--max-retries`` times
(default 2), each attempt printed; after that it is reported as failed (exit
code 1, its logs in its run folder, listed as missing in the summary).
"""
import argparse
import hashlib
import io
import json
import os
import platform
import shutil
import sys
import tarfile
import tempfile
import time
import uuid
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from .experiments import RESULT, Run, Settings, _write_json, run_one

INSTALL_HINT = ("--ray needs Ray, an optional extra: pip install 'spacy_mat[ray]' "
                "(from a clone: pip install -e '.[ray]'), or pip install 'ray[default]>=2.9'")
SCRATCH = "spacy_mat_ray"
# [paths] keys that the runner sets itself (run_one passes --paths.train/--paths.dev)
OWN_PATHS = ("train", "dev")


class RayMissing(ImportError):
    pass


def import_ray():
    """``import ray``, or :class:`RayMissing` with the install command."""
    try:
        import ray
    except ImportError as err:
        raise RayMissing(f"{INSTALL_HINT} ({err})") from err
    return ray


# ---------------------------------------------------------------- arguments
def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(
        "Ray", "run the grid as Ray tasks (pip install 'spacy_mat[ray]'); see docs/scaling.md")
    group.add_argument("--ray", nargs="?", const="", default=None, metavar="ADDRESS",
                       help="schedule the runs on Ray: no ADDRESS = RAY_ADDRESS, a cluster "
                       "started here with `ray start`, else a new local Ray instance; "
                       "'local' = always a new local instance; HOST:PORT, ray://HOST:10001 "
                       "or 'auto' = join that cluster")
    group.add_argument("--cpus-per-run", type=float, default=1.0, metavar="C",
                       help="Ray: CPUs each run reserves (default 1); also its torch threads "
                       "unless --threads is set")
    group.add_argument("--gpus-per-run", type=float, default=0.0, metavar="G",
                       help="Ray: GPUs each run reserves (default 0 = CPU); fractions "
                       "share a GPU, e.g. 0.25 = four runs per GPU")
    group.add_argument("--max-retries", type=int, default=2, metavar="N",
                       help="Ray: resubmit a failed run (crash, dead worker or node) up to N "
                       "times before reporting it as failed (default 2)")
    group.add_argument("--keep-models", action="store_true",
                       help="Ray: also bring each run's training/model-best back to --output "
                       "(default: metrics, logs and curves only)")
    group.add_argument("--ray-cpus", type=int, default=None, metavar="N",
                       help="Ray: CPUs of a local instance this command starts (default: all)")


def check_arguments(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Refuse (exit code 2, via ``parser.error``) bad Ray settings and ``--ray``
    without Ray installed, before anything runs."""
    ray_only = {"--cpus-per-run": args.cpus_per_run != 1.0, "--gpus-per-run": args.gpus_per_run != 0.0,
                "--max-retries": args.max_retries != 2, "--keep-models": args.keep_models,
                "--ray-cpus": args.ray_cpus is not None}
    if args.ray is None:
        used = [name for name, set_ in ray_only.items() if set_]
        if used:
            parser.error(f"{', '.join(used)} only apply with --ray")
        return
    if args.cpus_per_run <= 0:
        parser.error(f"--cpus-per-run must be > 0, got {args.cpus_per_run}")
    if args.gpus_per_run < 0 or (args.gpus_per_run > 1 and not args.gpus_per_run.is_integer()):
        parser.error(f"--gpus-per-run must be a fraction in [0, 1] or a whole number, "
                     f"got {args.gpus_per_run}")
    if args.max_retries < 0:
        parser.error(f"--max-retries must be >= 0, got {args.max_retries}")
    if args.gpu_id != -1:
        parser.error("with --ray, Ray assigns the GPUs: use --gpus-per-run instead of --gpu-id")
    if not (args.list or args.summary_only):
        try:
            import_ray()
        except RayMissing as err:
            parser.error(str(err))


# ------------------------------------------------------------------- inputs
@dataclass(frozen=True)
class Inputs:
    """What the driver put in the object store: where the data and configs
    lie inside the unpacked tar, and the tar's digest (its cache key)."""
    digest: str
    data_dir: str
    configs_dir: str
    n_files: int
    n_bytes: int


def _arcname(path: Path, cwd: Path) -> str:
    """``path``'s name in the tar: relative to the driver's working directory
    when below it (so relative paths keep working), else under ``_abs/``."""
    path = Path(os.path.abspath(path))
    try:
        return path.relative_to(cwd).as_posix() or "."
    except ValueError:
        return "_abs" + path.as_posix()


def _path_values(configs: Sequence[Path], extra: Sequence[str]) -> List[str]:
    """The ``[paths]`` values of the configs and the ``--paths.X`` overrides,
    without the runner's own train/dev."""
    from thinc.api import Config

    values: List[str] = []
    for config in configs:
        paths = Config().from_disk(config, interpolate=False).get("paths", {})
        values += [str(v) for k, v in paths.items() if k not in OWN_PATHS and v]
    extra = list(extra)
    for i, item in enumerate(extra):
        if not item.startswith("--paths."):
            continue
        key, _, value = item[len("--paths."):].partition("=")
        if not value and i + 1 < len(extra):
            value = extra[i + 1]
        if key not in OWN_PATHS and value:
            values.append(value)
    return values


def input_files(runs: Sequence[Run], settings: Settings, cwd: Path) -> Dict[str, Path]:
    """Every file the runs read, by its name in the tar."""
    files: Dict[str, Path] = {}
    for task in sorted({run.task for run in runs}):
        for split in ("train", "dev", "test"):
            path = settings.data_dir / task / f"{split}.spacy"
            files[_arcname(path, cwd)] = path
    configs = sorted({run.config(settings.configs_dir) for run in runs})
    for config in configs:
        files[_arcname(config, cwd)] = config
    values = _path_values(configs, settings.extra)
    if getattr(settings, "vectors", None):  # --vectors, passed as --paths.vectors by run_one
        values.append(str(settings.vectors))
    for value in values:
        path = Path(value)
        if path.is_absolute() or not (cwd / path).exists():
            continue  # a package name, null, or a path the workers must have themselves
        path = cwd / path
        for item in ([path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())):
            files[_arcname(item, cwd)] = item
    return files


def pack_inputs(runs: Sequence[Run], settings: Settings,
                cwd: Optional[Path] = None) -> Tuple[Inputs, bytes]:
    cwd = Path(os.path.abspath(cwd or Path.cwd()))
    files = input_files(runs, settings, cwd)
    digest = hashlib.sha256()
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name in sorted(files):
            data = files[name].read_bytes()
            digest.update(name.encode() + b"\0" + hashlib.sha256(data).digest())
            info = tarfile.TarInfo(name)
            info.size, info.mtime = len(data), 0
            tar.addfile(info, io.BytesIO(data))
    blob = buffer.getvalue()
    inputs = Inputs(digest=digest.hexdigest()[:20], data_dir=_arcname(settings.data_dir, cwd),
                    configs_dir=_arcname(settings.configs_dir, cwd), n_files=len(files),
                    n_bytes=len(blob))
    return inputs, blob


def _extract(blob: bytes, target: Path) -> None:
    with tarfile.open(fileobj=io.BytesIO(blob)) as tar:
        if hasattr(tarfile, "data_filter"):
            tar.extractall(target, filter="data")
        else:  # Python < 3.11.4: our own tars only, names checked
            for member in tar.getmembers():
                if member.name.startswith("/") or ".." in Path(member.name).parts:
                    raise ValueError(f"unsafe path in the run archive: {member.name}")
            tar.extractall(target)


def materialize(inputs: Inputs, blob_holder: Sequence[Any]) -> Path:
    """The unpacked inputs on this node, fetched from the object store the
    first time (``blob_holder`` is ``[ObjectRef]``, or ``[bytes]`` in tests)."""
    base = Path(tempfile.gettempdir()) / SCRATCH
    target = base / f"inputs-{inputs.digest}"
    if (target / ".complete").exists():
        return target
    blob = blob_holder[0]
    if not isinstance(blob, bytes):
        blob = import_ray().get(blob)
    tmp = base / f".inputs-{inputs.digest}-{uuid.uuid4().hex}"
    _extract(blob, tmp)
    (tmp / ".complete").touch()
    try:
        os.rename(tmp, target)
    except OSError:  # another worker of this node was faster
        shutil.rmtree(tmp, ignore_errors=True)
    return target


# ------------------------------------------------------------- on a worker
def sweep_scratch() -> List[Path]:
    """Remove the scratch folders of attempts whose worker died (killed, its
    node restarted): ``run-<pid>-*`` whose process no longer exists."""
    removed = []
    for folder in (Path(tempfile.gettempdir()) / SCRATCH).glob("run-*-*"):
        try:
            pid = int(folder.name.split("-")[1])
            os.kill(pid, 0)
        except ProcessLookupError:
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
        except (ValueError, PermissionError, OSError):
            continue  # not ours, or the process is alive
    return removed


def pack_run(folder: Path, keep_models: bool) -> bytes:
    """The run folder as a gzipped tar: everything but ``training/``, plus
    ``training/model-best`` with ``keep_models``."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        if folder.exists():
            for item in sorted(folder.iterdir()):
                if item.name != "training":
                    tar.add(str(item), arcname=item.name)
            best = folder / "training" / "model-best"
            if keep_models and best.exists():
                tar.add(str(best), arcname="training/model-best")
    return buffer.getvalue()


def execute(run: Run, settings: Settings, inputs: Inputs, blob_holder: Sequence[Any],
            keep_models: bool) -> Dict[str, Any]:
    """One attempt at one run, on a Ray worker: unpack the inputs (once per
    node), :func:`run_one` in a scratch folder, return the run folder as a tar.
    A failed training or evaluation comes back as ``ok: False`` with its logs."""
    start = time.time()
    sweep_scratch()
    workdir = materialize(inputs, blob_holder)
    scratch = Path(tempfile.gettempdir()) / SCRATCH / f"run-{os.getpid()}-{uuid.uuid4().hex}"
    local = replace(settings, data_dir=workdir / inputs.data_dir,
                    configs_dir=workdir / inputs.configs_dir, output=scratch)
    gpu_ids: List[Any] = []
    if settings.gpu_id >= 0:
        gpu_ids = list(import_ray().get_gpu_ids())
    os.chdir(workdir)  # relative [paths] and overrides resolve as on the driver
    error = None
    try:
        try:
            run_one(run, local)
        except RuntimeError as err:
            error = str(err)
        archive = pack_run(run.folder(scratch), keep_models)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return {"ok": error is None, "error": error, "archive": archive, "host": platform.node(),
            "pid": os.getpid(), "gpu_ids": gpu_ids, "seconds": round(time.time() - start, 1)}


# ---------------------------------------------------------------- driver
def receive(run: Run, payload: Dict[str, Any], output: Path, config: Path, attempt: int,
            errors: Sequence[str]) -> Optional[Dict[str, Any]]:
    """Unpack an attempt's run folder into ``<output>``; for a finished run,
    record the attempt in ``result.json`` (written last, via a hidden folder
    renamed into place) and return the result."""
    folder = run.folder(output)
    incoming = folder.with_name(f".{folder.name}.incoming")
    shutil.rmtree(incoming, ignore_errors=True)
    incoming.mkdir(parents=True)
    _extract(payload["archive"], incoming)
    result = None
    result_path = incoming / RESULT
    if payload["ok"]:
        if not result_path.exists():
            raise RuntimeError(f"{run.name}: the worker reported success without {RESULT}")
        result = json.loads(result_path.read_text(encoding="utf8"))
        result["config"] = str(config)
        result["ray"] = {"attempt": attempt, "host": payload["host"], "gpu_ids": payload["gpu_ids"],
                         "seconds": payload["seconds"], "failed_attempts": list(errors)}
        _write_json(result_path, result)
    elif result_path.exists():
        result_path.unlink()
    if folder.exists():
        shutil.rmtree(folder)
    os.replace(incoming, folder)
    return result


@dataclass
class RayOptions:
    address: Optional[str] = None  # None: ray.init()'s own resolution; "local": a new instance
    cpus_per_run: float = 1.0
    gpus_per_run: float = 0.0
    max_retries: int = 2
    keep_models: bool = False
    num_cpus: Optional[int] = None  # of a local instance started here
    include_dashboard: Optional[bool] = None


def _first_line(text: str, limit: int = 300) -> str:
    """The first line of an error, and its last one (the exception at the end
    of a log tail) when there are several."""
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()] or [""]
    line = lines[0] if len(lines) == 1 else f"{lines[0]} ... {lines[-1]}"
    return line if len(line) <= limit else line[:limit] + "..."


def _connect(ray, options: RayOptions, log: Callable[[str], None]) -> bool:
    """``ray.init`` unless already connected; True when this call connected."""
    if ray.is_initialized():
        return False
    kwargs: Dict[str, Any] = {"include_dashboard": options.include_dashboard}
    if options.num_cpus is not None:
        kwargs["num_cpus"] = options.num_cpus
    context = ray.init(address=options.address or None, **kwargs)
    url = getattr(context, "dashboard_url", None)
    log(f"Ray dashboard: http://{url}" if url else
        "Ray dashboard: not running (it comes with pip install 'ray[default]')")
    return True


def run_grid(todo: Sequence[Run], settings: Settings, options: RayOptions,
             task: Callable[..., Dict[str, Any]] = execute,
             log: Callable[[str], None] = lambda text: print(text, flush=True)) -> List[str]:
    """Run ``todo`` as Ray tasks, retrying failed attempts; returns the names of
    the runs that still failed after ``options.max_retries`` retries."""
    if not todo:
        return []
    ray = import_ray()
    try:
        connected = _connect(ray, options, log)
    except Exception as err:  # no cluster at ADDRESS, or a local node that did not start
        try:
            ray.shutdown()  # a failed start leaves the processes it did start running
        except Exception:
            pass
        where = f"join the Ray cluster at {options.address}" if options.address not in (
            None, "local") else "start a local Ray instance"
        raise RuntimeError(f"could not {where}: {type(err).__name__}: {err}") from err
    pending: Dict[Any, Tuple[Run, int]] = {}
    try:
        resources = ray.cluster_resources()
        cpus, gpus = resources.get("CPU", 0), resources.get("GPU", 0)
        if options.cpus_per_run > cpus or options.gpus_per_run > gpus:
            raise RuntimeError(
                f"each run asks for {options.cpus_per_run:g} CPU and {options.gpus_per_run:g} GPU "
                f"but the Ray cluster has {cpus:g} CPUs and {gpus:g} GPUs: lower "
                "--cpus-per-run / --gpus-per-run or add nodes")
        worker_settings = replace(
            settings, gpu_id=0 if options.gpus_per_run > 0 else -1,  # Ray sets CUDA_VISIBLE_DEVICES
            threads=settings.threads or max(1, int(options.cpus_per_run)))
        inputs, blob = pack_inputs(todo, settings)
        holder = [ray.put(blob)]  # in a list: a worker fetches it only if its node lacks it
        remote = ray.remote(task).options(num_cpus=options.cpus_per_run,
                                          num_gpus=options.gpus_per_run,
                                          max_retries=0, retry_exceptions=False)
        log(f"Ray: {len(todo)} runs on {cpus:g} CPUs, {gpus:g} GPUs "
            f"({options.cpus_per_run:g} CPU, {options.gpus_per_run:g} GPU, "
            f"{worker_settings.threads} threads per run; up to {options.max_retries} retries); "
            f"inputs: {inputs.n_files} files, {inputs.n_bytes / 1e6:.1f} MB")

        def submit(run: Run, attempt: int) -> None:
            ref = remote.remote(run, worker_settings, inputs, holder, options.keep_models)
            pending[ref] = (run, attempt)

        for run in todo:
            submit(run, 1)
        errors: Dict[Run, List[str]] = {run: [] for run in todo}
        failed: List[str] = []
        done = 0
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            run, attempt = pending.pop(ready[0])
            try:
                payload = ray.get(ready[0])
            except ray.exceptions.RayError as err:  # the worker or its node died, ...
                payload, error = None, f"{type(err).__name__}: {_first_line(str(err))}"
            else:
                error = None if payload["ok"] else payload["error"]
                if error:
                    error = f"on {payload['host']}: {error}"
            result = None
            if payload is not None:
                try:
                    result = receive(run, payload, settings.output,
                                     run.config(settings.configs_dir), attempt, errors[run])
                except (RuntimeError, OSError, ValueError, tarfile.TarError) as err:
                    error = error or f"the run folder could not be unpacked here: {err}"
            if error is None:
                done += 1
                key = result["score_key"]
                dev = result["dev"].get(key)
                log(f"[{done}/{len(todo)}] {run.name}: dev {key} "
                    f"{'-' if dev is None else f'{dev:.4f}'}, test {key} {result['test'][key]:.4f} "
                    f"({result['train_seconds']:.0f} s on {payload['host']}, attempt {attempt}); "
                    f"{len(todo) - done - len(failed)} left")
                continue
            errors[run].append(error)
            if attempt <= options.max_retries:
                log(f"[retry] {run.name}: attempt {attempt} failed ({_first_line(error)}); "
                    f"resubmitting (attempt {attempt + 1} of {options.max_retries + 1})")
                submit(run, attempt + 1)
            else:
                failed.append(run.name)
                print(f"error: {run.name} failed {attempt} time(s); logs in "
                      f"{run.folder(settings.output)}; last error: {error}",
                      file=sys.stderr, flush=True)
                log(f"[failed] {run.name}; {len(todo) - done - len(failed)} left")
        return failed
    finally:
        for ref in pending:  # interrupted: do not leave runs behind on a cluster
            try:
                ray.cancel(ref, force=True)
            except Exception as err:  # already finished, or the cluster is gone
                print(f"warning: could not cancel a pending run: {err}", file=sys.stderr)
        if connected:
            ray.shutdown()


def run_from_args(todo: Sequence[Run], settings: Settings, args: argparse.Namespace) -> List[str]:
    """The ``--ray`` branch of :func:`spacy_mat.experiments.main`."""
    options = RayOptions(address=args.ray or None, cpus_per_run=args.cpus_per_run,
                         gpus_per_run=args.gpus_per_run, max_retries=args.max_retries,
                         keep_models=args.keep_models, num_cpus=args.ray_cpus)
    try:
        return run_grid(todo, settings, options)
    except RuntimeError as err:  # e.g. runs that no node of the cluster can hold
        print(f"error: {err}", file=sys.stderr, flush=True)
        return [run.name for run in todo]
