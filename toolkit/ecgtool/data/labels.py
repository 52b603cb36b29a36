"""Label sets: which classes an import produces and which source labels map to each.

The paper's seven classes are the default (`labelsets/default.yaml`, shipped with the package), not
a constant: `ecgtool data import --classes FILE` reads a user's YAML of the same shape, so SVT,
junctional rhythm or ventricular tachycardia can be added. Every downstream stage reads the class
list from the prepared dataset's meta.json.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Iterable

import yaml

from ecgtool.core.errors import BadInput

#: source keys of a class entry; each maps a source's own label to the class
SOURCE_KEYS = ("snomed", "challenge", "mitdb", "ptbxl", "cinc2017")
CLASS_KEYS = {"name", "description", "mitdb_beats", *SOURCE_KEYS}
#: sources whose labels are matched case-insensitively (abbreviations written inconsistently)
CASE_INSENSITIVE = {"challenge"}


@dataclass(frozen=True)
class LabelSet:
    """Classes in output order, a {source: {source label: class}} table and a priority order."""

    classes: list[str]
    priority: list[str]
    table: dict[str, dict[str, str]]
    #: class -> (beat symbols, rhythm notes): MIT-BIH windows of those rhythms holding such a beat
    beat_rules: dict[str, tuple[frozenset, frozenset]] = field(default_factory=dict)
    descriptions: dict[str, str] = field(default_factory=dict)
    path: str = "default"

    def index(self, name: str) -> int:
        return self.classes.index(name)

    def classes_of(self, source: str, labels: Iterable[str]) -> list[str]:
        """The classes the given source labels map to (unknown labels are ignored), no duplicates."""
        table = self.table.get(source, {})
        out: list[str] = []
        for lab in labels:
            key = _key(source, lab)
            cls = table.get(key)
            if cls is not None and cls not in out:
                out.append(cls)
        return out

    def resolve(self, classes: Iterable[str]) -> str | None:
        """One class out of several by the priority order; None when there is none."""
        present = set(classes)
        for name in self.priority:
            if name in present:
                return name
        return None

    def label(self, source: str, labels: Iterable[str]) -> str | None:
        """classes_of + resolve: the one class of a record carrying these source labels."""
        return self.resolve(self.classes_of(source, labels))

    def to_meta(self) -> dict[str, Any]:
        return {"file": self.path, "priority": list(self.priority)}


def _key(source: str, label: Any) -> str:
    text = str(label).strip()
    return text.lower() if source in CASE_INSENSITIVE else text


def default_label_set_path() -> Path:
    return Path(str(resources.files("ecgtool.data") / "labelsets" / "default.yaml"))


def load_label_set(path: str | os.PathLike | None = None) -> LabelSet:
    """Read and validate a label-set YAML (None: the packaged default); BadInput names file and reason."""
    src = Path(path) if path is not None else default_label_set_path()
    if not src.is_file():
        raise BadInput(f"{src}: label-set file not found")
    try:
        doc = yaml.safe_load(src.read_bytes().decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise BadInput(f"{src}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        line = f" at line {where.line + 1}" if where is not None else ""
        raise BadInput(f"{src}: not valid YAML{line} ({getattr(exc, 'problem', None) or exc})") from None
    return parse_label_set(doc, str(src) if path is not None else "default")


def parse_label_set(doc: Any, name: str = "<label set>") -> LabelSet:
    """Validate a label-set document (already parsed YAML) and build the LabelSet."""
    def bad(reason: str) -> BadInput:
        return BadInput(f"{name}: {reason}")

    if not isinstance(doc, dict):
        raise bad("expected a mapping with 'classes' and 'priority'")
    unknown = set(doc) - {"classes", "priority"}
    if unknown:
        raise bad(f"unknown top-level key(s) {', '.join(sorted(map(str, unknown)))} (allowed: classes, priority)")
    entries = doc.get("classes")
    if not isinstance(entries, list) or not entries:
        raise bad("'classes' must be a non-empty list of {name: ..., <source>: [labels]}")

    classes: list[str] = []
    table: dict[str, dict[str, str]] = {s: {} for s in SOURCE_KEYS}
    beat_rules: dict[str, tuple[frozenset, frozenset]] = {}
    descriptions: dict[str, str] = {}
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str) or not entry["name"].strip():
            raise bad(f"class #{i + 1} needs a 'name' (a non-empty string)")
        cname = entry["name"].strip()
        if cname in classes:
            raise bad(f"class {cname!r} is defined twice")
        extra = set(entry) - CLASS_KEYS
        if extra:
            raise bad(f"class {cname!r}: unknown key(s) {', '.join(sorted(map(str, extra)))} "
                      f"(allowed: {', '.join(sorted(CLASS_KEYS))})")
        classes.append(cname)
        descriptions[cname] = str(entry.get("description", ""))
        for source in SOURCE_KEYS:
            for lab in _label_list(entry.get(source, []), f"class {cname!r}: '{source}'", bad):
                key = _key(source, lab)
                other = table[source].get(key)
                if other is not None and other != cname:
                    raise bad(f"{source} label {lab!r} maps to both {other!r} and {cname!r}")
                table[source][key] = cname
        if "mitdb_beats" in entry:
            rule = entry["mitdb_beats"]
            if not isinstance(rule, dict) or set(rule) != {"beats", "in_rhythms"}:
                raise bad(f"class {cname!r}: 'mitdb_beats' must be {{beats: [...], in_rhythms: [...]}}")
            beat_rules[cname] = (
                frozenset(_label_list(rule["beats"], f"class {cname!r}: 'mitdb_beats.beats'", bad)),
                frozenset(_label_list(rule["in_rhythms"], f"class {cname!r}: 'mitdb_beats.in_rhythms'", bad)),
            )

    priority = doc.get("priority", classes)
    if not isinstance(priority, list) or not all(isinstance(p, str) for p in priority):
        raise bad("'priority' must be a list of class names")
    missing = [c for c in classes if c not in priority]
    strangers = [p for p in priority if p not in classes]
    if strangers:
        raise bad(f"'priority' names unknown class(es) {', '.join(strangers)} (classes: {', '.join(classes)})")
    if missing:
        raise bad(f"'priority' lacks class(es) {', '.join(missing)}")
    if len(set(priority)) != len(priority):
        raise bad("'priority' lists a class twice")
    if len(classes) < 2:
        raise bad("a label set needs at least two classes")
    return LabelSet(classes=classes, priority=list(priority), table=table, beat_rules=beat_rules,
                    descriptions=descriptions, path=name)


def _label_list(value: Any, what: str, bad) -> list[str]:
    if isinstance(value, (str, int)):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, (str, int)) and not isinstance(v, bool) for v in value):
        raise bad(f"{what} must be a list of labels (strings or codes)")
    return [str(v).strip() for v in value]
