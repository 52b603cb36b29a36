"""Atomic file writes, hashes and the run manifest (manifest.json) that lists every artifact."""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import shlex
import shutil
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

MANIFEST = "manifest.json"


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it onto `path` only if the block succeeds.

    An interrupted run therefore never leaves a half-written file under the final name.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    tmp_path.chmod(0o666 & ~_umask())  # mkstemp makes it owner-only; artifacts are ordinary files
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


@contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary folder beside `path`; if the block succeeds it replaces `path` whole.

    A dataset, a pruned model or a bundle is therefore either complete or absent, never half there.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    tmp.chmod(0o777 & ~_umask())  # mkdtemp makes it owner-only; these folders are ordinary shared data
    try:
        yield tmp
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_text(path: str | os.PathLike, text: str) -> Path:
    return write_bytes(path, text.encode("utf-8"))


def write_json(path: str | os.PathLike, obj: Any) -> Path:
    return write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n")


def read_json(path: str | os.PathLike) -> Any:
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


def _json_default(obj: Any) -> Any:
    import numpy as np

    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating,)):
        return float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def sha256(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def current_command() -> str:
    """The command line that is running now, for the manifest."""
    argv = list(sys.argv)
    if argv and argv[0].endswith(("ecgtool", "__main__.py")):
        argv[0] = "ecgtool"
    return " ".join(shlex.quote(a) for a in argv)


def find_run_root(path: str | os.PathLike) -> Path:
    """The run folder of an artifact: the nearest ancestor holding manifest.json, else its model folder's parent."""
    p = Path(path).resolve()
    start = p if p.is_dir() else p.parent
    for cand in [start, *start.parents]:
        if (cand / MANIFEST).exists():
            return cand
    return start.parent if (start / "config.json").exists() else start


def record_artifact(
    path: str | os.PathLike,
    *,
    parent: str | os.PathLike | None = None,
    command: str | None = None,
    run_dir: str | os.PathLike | None = None,
    extra: dict | None = None,
) -> dict:
    """Add (or refresh) one artifact in its run's manifest.json with SHA-256, size, parent and command."""
    path = Path(path).resolve()
    run = Path(run_dir).resolve() if run_dir else find_run_root(path)
    manifest_path = run / MANIFEST
    manifest = read_json(manifest_path) if manifest_path.exists() else {"artifacts": {}}
    rel = os.path.relpath(path, run)
    entry = {
        "sha256": sha256(path),
        "size_bytes": path.stat().st_size,
        "parent": os.path.relpath(Path(parent).resolve(), run) if parent else None,
        "command": command if command is not None else current_command(),
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    if extra:
        entry.update(extra)
    manifest["artifacts"][rel] = entry
    write_json(manifest_path, manifest)
    return entry


def verify_manifest(run_dir: str | os.PathLike) -> list[dict]:
    """Check every artifact listed in a run's manifest; one row per artifact with status ok/missing/changed."""
    from ecgtool.core.errors import BadInput

    run = Path(run_dir)
    manifest_path = run / MANIFEST
    if not manifest_path.exists():
        raise BadInput(f"{manifest_path}: no manifest.json in this run folder")
    rows = []
    for rel, entry in read_json(manifest_path)["artifacts"].items():
        p = run / rel
        if not p.exists():
            status = "missing"
        elif p.stat().st_size != entry["size_bytes"] or sha256(p) != entry["sha256"]:
            status = "changed"
        else:
            status = "ok"
        rows.append({"artifact": rel, "status": status, "sha256": entry["sha256"]})
    return rows
