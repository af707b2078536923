"""Load deploy.yaml: a bad catalog fails here, naming the file, line, field path, service and
environment, and what was expected. Nothing is built from an invalid catalog."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from deploy_pipelines.catalog.models import Catalog


class CatalogError(ValueError):
    """The catalog is invalid; `problems` lists one line per mistake."""

    def __init__(self, path: Path, problems: list[str]):
        self.path = path
        self.problems = problems
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"{path}: invalid deploy catalog ({len(problems)} problem"
                         f"{'s' if len(problems) != 1 else ''}):\n{lines}")


def _line_index(node: yaml.Node | None, prefix: tuple = (), out: dict | None = None) -> dict[tuple, int]:
    """Map every field path (as pydantic reports it) to its 1-based line in the file."""
    out = {} if out is None else out
    if node is None:
        return out
    out.setdefault(prefix, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            path = prefix + (key.value,)
            out[path] = key.start_mark.line + 1
            _line_index(value, path, out)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _line_index(item, prefix + (i,), out)
    return out


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


def parse_catalog(text: str, path: Path) -> Catalog:
    try:
        node = yaml.compose(text)
        data: Any = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        raise CatalogError(path, [f"{where}not valid YAML: {getattr(exc, 'problem', exc)}"]) from None
    if not isinstance(data, dict):
        raise CatalogError(path, ["<top level>: expected a mapping with project, environments and services"])
    # Top-level `x-...` keys are extension fields (as in docker-compose): room for YAML anchors.
    data = {k: v for k, v in data.items() if not (isinstance(k, str) and k.startswith("x-"))}
    try:
        return Catalog.model_validate(data)
    except ValidationError as exc:
        lines = _line_index(node)
        problems = [_format(e, lines) for e in _collapse_unions(exc.errors(include_url=False))]
        # Cross-reference checks arrive as one '; '-joined message: one line each.
        split = [part for p in problems for part in p.split("; ")]
        raise CatalogError(path, split) from None


def default_catalog_path() -> Path:
    """$DEPLOY_CATALOG, else the demo catalog shipped in examples/."""
    env = os.environ.get("DEPLOY_CATALOG")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[2] / "examples" / "demo" / "deploy.yaml"


def load_catalog(path: str | os.PathLike | None = None) -> Catalog:
    p = Path(path) if path is not None else default_catalog_path()
    try:
        text = p.read_text()
    except OSError as exc:
        raise CatalogError(p, [f"cannot read the catalog: {exc.strerror}"]) from None
    return parse_catalog(text, p)
