import os
import stat

import pytest

from ecgtool.core.files import atomic_path, write_json
from ecgtool.core.manifest import record_artifact, verify_manifest
from ecgtool.core.errors import BadInput


def test_atomic_write_leaves_no_half_file_and_ordinary_permissions(tmp_path):
    target = tmp_path / "a.bin"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("interrupted")
    assert not target.exists() and list(tmp_path.iterdir()) == []
    write_json(target, {"x": 1})
    mode = stat.S_IMODE(os.stat(target).st_mode)
    assert mode & stat.S_IRGRP, oct(mode)


def test_manifest_records_and_verifies(tmp_path):
    run = tmp_path / "run"
    (run / "m").mkdir(parents=True)
    write_json(run / "manifest.json", {"artifacts": {}})
    f = run / "m" / "w.bin"
    f.write_bytes(b"abc")
    entry = record_artifact(f, command="ecgtool test")
    assert entry["size_bytes"] == 3 and len(entry["sha256"]) == 64
    assert [r["status"] for r in verify_manifest(run)] == ["ok"]
    f.write_bytes(b"abd")
    assert [r["status"] for r in verify_manifest(run)] == ["changed"]
    f.unlink()
    assert [r["status"] for r in verify_manifest(run)] == ["missing"]
    with pytest.raises(BadInput):
        verify_manifest(tmp_path)


def test_atomic_dir_replaces_whole_or_leaves_old(tmp_path):
    from ecgtool.core.files import atomic_dir

    target = tmp_path / "out"
    target.mkdir()
    (target / "old.txt").write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_dir(target) as tmp:
            (tmp / "new.txt").write_text("half")
            raise RuntimeError("interrupted")
    assert [p.name for p in tmp_path.iterdir()] == ["out"] and (target / "old.txt").exists()
    with atomic_dir(target) as tmp:
        (tmp / "new.txt").write_text("new")
    assert [p.name for p in target.iterdir()] == ["new.txt"]
    assert stat.S_IMODE(os.stat(target).st_mode) & stat.S_IRGRP
