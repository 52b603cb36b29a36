"""The run manifest (manifest.json): every artifact of a run with its SHA-256, size, parent and command.

One reader and one writer; writes hold an exclusive lock on the run's `.manifest.lock`, so two
commands recording into one run folder at once never lose each other's entries.
"""

from __future__ import annotations

import datetime as _dt
import fcntl
import os
import shlex
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from ecgtool.core.errors import BadInput
from ecgtool.core.files import read_json, sha256, write_json
from ecgtool.core.names import CONFIG, MANIFEST, MANIFEST_LOCK


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
    return start.parent if (start / CONFIG).exists() else start


def read_manifest(run: str | os.PathLike) -> dict:
    """The manifest of a run folder ({"artifacts": {}} when there is none); BadInput when it is malformed."""
    path = Path(run) / MANIFEST
    if not path.exists():
        return {"artifacts": {}}
    try:
        doc = read_json(path)
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise BadInput(f"{path}: not a readable manifest ({type(exc).__name__})") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("artifacts"), dict):
        raise BadInput(f"{path}: malformed manifest (expected an object with an 'artifacts' object)")
    return doc


@contextmanager
def locked_manifest(run: str | os.PathLike) -> Iterator[dict]:
    """Read-modify-write of a run's manifest under an exclusive file lock; written when the block succeeds."""
    run = Path(run)
    run.mkdir(parents=True, exist_ok=True)
    with open(run / MANIFEST_LOCK, "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            manifest = read_manifest(run)
            yield manifest
            write_json(run / MANIFEST, manifest)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def manifest_entry(path: str | os.PathLike) -> dict:
    """`path`'s entry in its run's manifest ({} if none)."""
    p = Path(path).resolve()
    run = find_run_root(p)
    if not (run / MANIFEST).is_file():
        return {}
    return read_manifest(run)["artifacts"].get(os.path.relpath(p, run), {})


def recorded_check(path: str | os.PathLike) -> dict:
    """The export check stored for `path` in its run's manifest ({} if none)."""
    return manifest_entry(path).get("check", {})


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
    entry = {
        "sha256": sha256(path),
        "size_bytes": path.stat().st_size,
        "parent": os.path.relpath(Path(parent).resolve(), run) if parent else None,
        "command": command if command is not None else current_command(),
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    if extra:
        entry.update(extra)
    with locked_manifest(run) as manifest:
        manifest["artifacts"][os.path.relpath(path, run)] = entry
    return entry


def record_in_run(path: str | os.PathLike, *, parent: str | os.PathLike, extra: dict | None = None) -> dict | None:
    """record_artifact for a file written where the user said (`--out`): recorded in the manifest of the run it
    lies in (a folder that has one, or its parent's run); a file written elsewhere (`--out /tmp/x.onnx`) is not
    recorded, so that no manifest.json appears in a folder that is not a run (`evaluate /tmp/x.onnx` writes its
    JSON beside a lone file: not recorded either). None when not recorded."""
    run = find_run_root(path)
    if not (run / MANIFEST).exists() and (run != find_run_root(parent) or not _in_model_folder(parent)):
        return None  # not in a run, and not beside a model folder's own files (a lone /tmp/x.onnx is neither)
    return record_artifact(path, parent=parent, run_dir=run, extra=extra)


def _in_model_folder(path: str | os.PathLike) -> bool:
    """A model folder, or a file in one (its config.json beside it): the start of a run without a manifest yet."""
    p = Path(path).resolve()
    return ((p if p.is_dir() else p.parent) / CONFIG).exists()


def verify_manifest(run_dir: str | os.PathLike) -> list[dict]:
    """Check every artifact listed in a run's manifest; one row per artifact with status ok/missing/changed.

    Only regular files inside the run folder are read (a listed path that leaves the run, a link or a
    device is reported, never opened), and a file is hashed only when its size matches the entry, so a
    manifest cannot make `verify` read without bound.
    """
    run = Path(run_dir)
    if not (run / MANIFEST).exists():
        raise BadInput(f"{run / MANIFEST}: no manifest.json in this run folder")
    root = run.resolve()
    rows = []
    for rel, entry in read_manifest(run)["artifacts"].items():
        sha = entry.get("sha256") if isinstance(entry, dict) else None
        size = entry.get("size_bytes") if isinstance(entry, dict) else None
        p = run / rel
        if not isinstance(sha, str) or not isinstance(size, int):
            status = "malformed entry"
        elif os.path.isabs(rel) or os.path.normpath(rel).startswith(".."):
            status = "outside the run folder"
        elif p.is_symlink() or (p.exists() and not p.is_file()):
            status = "not a regular file"
        elif not p.exists():
            status = "missing"
        elif not p.resolve().is_relative_to(root):
            status = "outside the run folder"
        elif p.stat().st_size != size or sha256(p) != sha:
            status = "changed"
        else:
            status = "ok"
        rows.append({"artifact": rel, "status": status, "sha256": sha})
    return rows


#: whether artifacts inside a run are checked against the manifest before use (`ecgtool --no-verify` turns it off)
_VERIFY = {"on": not os.environ.get("ECGTOOL_NO_VERIFY")}


def set_verify(on: bool) -> None:
    _VERIFY["on"] = bool(on)


def is_verifying() -> bool:
    """Whether artifacts are checked against the manifest before use (off with `ecgtool --no-verify`)."""
    return _VERIFY["on"]


def verify_artifact(path: str | os.PathLike) -> None:
    """Refuse (BadInput) an artifact inside a run whose file(s) differ from their manifest entry.

    Files the manifest does not list (an artifact outside any run, a file made by hand) are not checked.
    """
    if not _VERIFY["on"]:
        return
    from ecgtool.core.artifacts import shipped_files

    p = Path(path).resolve()
    run = find_run_root(p)
    if not (run / MANIFEST).is_file():
        return
    listed = read_manifest(run)["artifacts"]
    for f in shipped_files(p):
        entry = listed.get(os.path.relpath(f.resolve(), run))
        if not isinstance(entry, dict) or "sha256" not in entry:
            continue
        if not f.is_file() or f.stat().st_size != entry.get("size_bytes") or sha256(f) != entry["sha256"]:
            raise BadInput(f"{f}: differs from its SHA-256 in {run / MANIFEST} (tampered or edited?); "
                           "refusing to use it (`ecgtool --no-verify ...` runs it anyway)")
