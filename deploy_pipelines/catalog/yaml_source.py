"""deploy.yaml text -> plain data plus a line for every field path, parsed once and bounded.

Why not `yaml.safe_load`: it silently keeps the last of two duplicated keys (a whole service can
vanish), expands aliases without limit (a "billion laughs" document hangs validation), and lets
an impossible date or a non-UTF-8 byte escape as a traceback. Here every such input becomes a
problem line naming the line it is on.
"""

from __future__ import annotations

import math
from typing import Any

import yaml

_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)   # libyaml where installed: ~10x faster

MAX_BYTES = 1_000_000            # a real catalog is a few KB; a megabyte is a mistake or an attack
MAX_NODES = 100_000              # nodes after alias expansion: what validation would have to walk
MAX_DEPTH = 64

_BOOL = "tag:yaml.org,2002:bool"
_FLOAT = "tag:yaml.org,2002:float"
_TIMESTAMP = "tag:yaml.org,2002:timestamp"


class YamlProblem(ValueError):
    """The text is not a catalog-shaped YAML document; `problems` are ready to print."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("; ".join(problems))


def decode(raw: bytes) -> str:
    """UTF-8 (a BOM is tolerated) or a problem naming the line of the first bad byte."""
    if len(raw) > MAX_BYTES:
        raise YamlProblem([f"<top level>: the file is larger than {MAX_BYTES:,} bytes, the limit for a catalog "
                           "(is this the right file?)"])
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise YamlProblem([f"line {line}: not UTF-8 text (byte 0x{raw[exc.start]:02x} at offset {exc.start}): "
                           "save the catalog as UTF-8"]) from None


def _path(loc: tuple) -> str:
    return ".".join(f"[{p}]" if isinstance(p, int) else str(p) for p in loc).replace(".[", "[") or "<top level>"


class _Walk:
    """One pass over the composed node graph: duplicate keys, alias expansion budget, recursion,
    depth, values Python cannot represent, and the field path -> line index."""

    def __init__(self, loader):
        self.loader = loader
        self.lines: dict[tuple, int] = {}
        self.problems: list[str] = []
        self.count = 0
        self.active: set[int] = set()

    def visit(self, node: yaml.Node, loc: tuple) -> None:
        self.count += 1
        line = node.start_mark.line + 1
        if self.count > MAX_NODES:
            raise YamlProblem([f"line {line}: {_path(loc)}: the document expands to more than {MAX_NODES:,} values "
                               "(aliases referring to aliases?): refusing to load it"])
        if len(loc) > MAX_DEPTH:
            raise YamlProblem([f"line {line}: {_path(loc)}: nested more than {MAX_DEPTH} levels deep"])
        if id(node) in self.active:
            raise YamlProblem([f"line {line}: {_path(loc)}: an alias refers to a value that contains it "
                               "(a recursive alias): write the value out"])
        self.lines.setdefault(loc, line)
        if isinstance(node, yaml.ScalarNode):
            self._scalar(node, loc, line)
            return
        self.active.add(id(node))
        try:
            if isinstance(node, yaml.MappingNode):
                self._mapping(node, loc)
            else:
                for i, item in enumerate(node.value):
                    self.visit(item, loc + (i,))
        finally:
            self.active.discard(id(node))

    def _mapping(self, node: yaml.MappingNode, loc: tuple) -> None:
        seen: dict[Any, int] = {}
        for key, value in node.value:
            if key.tag == "tag:yaml.org,2002:merge":      # `<<: *base`: later keys override on purpose
                self.visit(value, loc)
                continue
            if not isinstance(key, yaml.ScalarNode):
                self.problems.append(f"line {key.start_mark.line + 1}: {_path(loc)}: a key must be a plain name, "
                                     "not a list or mapping")
                continue
            line = key.start_mark.line + 1
            if key.value in seen:
                self.problems.append(f"line {line}: {_path(loc + (key.value,))}: duplicate key {key.value!r} "
                                     f"(first at line {seen[key.value]}): YAML would silently keep only the last")
                continue
            seen[key.value] = line
            self.lines[loc + (key.value,)] = line
            self.visit(value, loc + (key.value,))

    def _scalar(self, node: yaml.ScalarNode, loc: tuple, line: int) -> None:
        if node.tag == _TIMESTAMP:
            try:
                self.loader.construct_yaml_timestamp(node)
            except ValueError as exc:
                self.problems.append(f"line {line}: {_path(loc)}: {node.value!r} is not a valid date ({exc})")
        elif node.tag == _FLOAT:
            value = self.loader.construct_yaml_float(node)
            if math.isnan(value):
                self.problems.append(f"line {line}: {_path(loc)}: {node.value} (not a number) is not allowed: "
                                     "write a number")


class _CatalogLoader(_Loader):
    """Safe loading where only true/false are booleans (YAML 1.2): `replicas: yes` then fails as
    'not an integer' instead of becoming 1, and `yes`/`on` still validate where a bool is meant."""

    def construct_yaml_bool(self, node):
        return node.value


_CatalogLoader.add_constructor(_BOOL, _CatalogLoader.construct_yaml_bool)


def parse_yaml(text: str) -> tuple[Any, dict[tuple, int]]:
    """(data, {field path: line}) or YamlProblem. The text is parsed exactly once."""
    if len(text) > MAX_BYTES:
        raise YamlProblem([f"<top level>: the catalog is {len(text):,} characters; the limit is {MAX_BYTES:,}"])
    loader = _CatalogLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            raise YamlProblem(["<top level>: the file is empty: expected project, environments and services"])
        walk = _Walk(loader)
        walk.visit(node, ())
        if walk.problems:
            raise YamlProblem(walk.problems)
        data = loader.construct_document(node)
    except yaml.reader.ReaderError as exc:    # a character YAML forbids (NUL, other controls)
        line = text.count("\n", 0, exc.position) + 1
        raise YamlProblem([f"line {line}: not valid YAML: character {exc.character!r} is not allowed in a "
                           "YAML file"]) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        raise YamlProblem([f"{where}not valid YAML: {getattr(exc, 'problem', None) or exc}"]) from None
    finally:
        loader.dispose()
    return data, walk.lines
