"""Load deploy.yaml: a bad catalog fails here, naming the file, line, field path, service and
environment, and what was expected. Nothing is built from an invalid catalog."""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

from pydantic import ValidationError

from deploy_pipelines.catalog.models import Catalog
from deploy_pipelines.catalog.rules import cross_field_problems
from deploy_pipelines.catalog.yaml_source import MAX_BYTES, YamlProblem, decode, parse_yaml


class CatalogError(ValueError):
    """The catalog is invalid; `problems` lists one line per mistake."""

    def __init__(self, path: Path, problems: list[str]):
        self.path = path
        self.problems = problems
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"{path}: invalid deploy catalog ({len(problems)} problem"
                         f"{'s' if len(problems) != 1 else ''}):\n{lines}")


def _context(loc: tuple) -> str:
    """'[service api, environment production]' when the path lies inside one."""
    parts = []
    if len(loc) >= 2 and loc[0] == "services":
        parts.append(f"service {loc[1]}")
        if len(loc) >= 4 and loc[2] == "targets":
            parts.append(f"environment {loc[3]}")
    if len(loc) >= 2 and loc[0] == "environments":
        parts.append(f"environment {loc[1]}")
    return f" [{', '.join(parts)}]" if parts else ""


def _format(err: dict, lines: dict[tuple, int]) -> str:
    user_loc = tuple(p for p in err["loc"] if not _is_union_tag(p))
    path = ".".join(f"[{p}]" if isinstance(p, int) else str(p) for p in user_loc).replace(".[", "[")
    line = None
    probe = user_loc
    while probe and line is None:
        line = lines.get(probe)
        probe = probe[:-1]
    where = f"line {line}: " if line else ""
    msg = err["msg"].removeprefix("Value error, ")
    if err["type"] == "extra_forbidden":
        msg = "unknown field (check the spelling against the catalog reference in README.md)"
    elif err["type"] == "missing":
        msg = "required field is missing"
    got = err.get("input")
    if err["type"] not in ("missing", "extra_forbidden", "value_error", "model_type") and not isinstance(got, (dict, list)):
        msg += f" (got {got!r})"
    return f"{where}{path or '<top level>'}: {msg}{_context(user_loc)}"


_UNION_TAGS = {"int", "str", "float", "bool", "constrained-int", "constrained-str", "EnvRef", "list[str]"}


def _is_union_tag(part) -> bool:
    """pydantic names the union member it tried (`port.int`, `port.EnvRef`): the user never wrote it."""
    return isinstance(part, str) and (part in _UNION_TAGS or part.startswith(("function-", "tagged-union")))


def _collapse_unions(errors: list[dict]) -> list[dict]:
    """Of a union's per-member errors for one field keep the most telling: a value that is not
    an {env: NAME} mapping does not need to hear that it is not one."""
    by_path: dict[tuple, list[dict]] = {}
    for e in errors:
        by_path.setdefault(tuple(p for p in e["loc"] if not _is_union_tag(p)), []).append(e)
    kept = []
    for group in by_path.values():
        specific = [e for e in group if "EnvRef" not in e["loc"] and e["type"] not in ("model_type", "int_type",
                                                                                      "string_type")]
        kept.extend(specific or group)
    return kept


def _problems(err: dict, lines: dict[tuple, int]) -> list[str]:
    """The catalog-wide reference checks arrive as one '; '-joined message of 'a.b.c: what' parts:
    one line each, placed at the field it names."""
    if err["loc"] or err["type"] != "value_error":
        return [_format(err, lines)]
    out = []
    for part in err["msg"].removeprefix("Value error, ").split("; "):
        field, sep, what = part.partition(": ")
        loc = tuple(field.split(".")) if sep and re.fullmatch(r"[a-z_][\w]*(\.\w+)*", field) else ()
        line = next((lines[loc[:n]] for n in range(len(loc), 0, -1) if loc[:n] in lines), None)
        out.append(f"line {line}: {part}" if line else (part if loc else f"<top level>: {part}"))
    return out


def parse_catalog(text: str | bytes, path: Path) -> Catalog:
    """The one validation entry point (`check`, the code location and runs all come here):
    YAML shape and bounds, field types, then the cross-field rules; CatalogError lists every problem."""
    try:
        data, lines = parse_yaml(decode(text) if isinstance(text, bytes) else text)
    except YamlProblem as exc:
        raise CatalogError(path, exc.problems) from None
    if not isinstance(data, dict):
        raise CatalogError(path, ["<top level>: expected a mapping with project, environments and services"])
    # Top-level `x-...` keys are extension fields (as in docker-compose): room for YAML anchors.
    data = {k: v for k, v in data.items() if not (isinstance(k, str) and k.startswith("x-"))}
    try:
        catalog = Catalog.model_validate(data)
    except ValidationError as exc:
        raise CatalogError(path, [p for e in _collapse_unions(exc.errors(include_url=False))
                                  for p in _problems(e, lines)]) from None
    problems = [_format({"loc": loc, "msg": msg, "type": "value_error"}, lines)
                for loc, msg in cross_field_problems(catalog)]
    if problems:
        raise CatalogError(path, problems)
    return catalog


def default_catalog_path() -> Path:
    """$DEPLOY_CATALOG, else the demo catalog shipped in examples/."""
    env = os.environ.get("DEPLOY_CATALOG")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[2] / "examples" / "demo" / "deploy.yaml"


def load_catalog(path: str | os.PathLike | None = None) -> Catalog:
    p = Path(path) if path is not None else default_catalog_path()
    return parse_catalog(read_catalog_bytes(p), p)


def catalog_digest(raw: bytes) -> str:
    """sha256 of the catalog file: what a run records at launch to know it reads the same file."""
    return hashlib.sha256(raw).hexdigest()


def read_catalog_bytes(p: Path) -> bytes:
    """The file's bytes, refusing to read more than a catalog could sensibly be."""
    try:
        with open(p, "rb") as f:
            return f.read(MAX_BYTES + 1)
    except OSError as exc:
        raise CatalogError(p, [f"cannot read the catalog: {exc.strerror}"]) from None
