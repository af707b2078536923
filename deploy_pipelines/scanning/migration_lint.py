"""Migration-safety lint: the zero-downtime rules of the seeds (additive changes only, NULL-able
first, NOT NULL later, drop only in a later release, CREATE INDEX CONCURRENTLY) checked on the
migrations a release would apply, before the database is touched.

Statements are read with comments and string literals blanked out (so a keyword inside either
never triggers), keeping line numbers. Tables created in the same file are exempt: nothing reads
them yet. A rule is allowed for one file by a comment `-- deploy:allow MIG00X <reason>` in it,
or by a catalog allow entry {id: MIG00X, file: ..., reason: ...}.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from deploy_pipelines.scanning.findings import Finding


@dataclass(frozen=True)
class Rule:
    id: str
    title: str
    advice: str
    dialects: tuple[str, ...] = ("postgres", "mysql")


RULES = {r.id: r for r in [
    Rule("MIG001", "drops a column", "the running version may still read it: stop using the column in one release, "
         "drop it in a later one"),
    Rule("MIG002", "drops a table", "the running version may still read it: stop using the table in one release, "
         "drop it in a later one"),
    Rule("MIG003", "adds a NOT NULL column without a default", "add it NULL-able (or with a DEFAULT), backfill, "
         "then SET NOT NULL in a later release"),
    Rule("MIG004", "sets NOT NULL on an existing column", "add a CHECK (col IS NOT NULL) NOT VALID constraint, "
         "VALIDATE it, then SET NOT NULL (PostgreSQL 12+ uses the validated check)"),
    Rule("MIG005", "renames a column or table", "the running version uses the old name: add the new column, "
         "write both, backfill, switch reads, drop the old one later"),
    Rule("MIG006", "changes a column's type", "rewrites the table under an exclusive lock and breaks readers: "
         "add a new column of the new type, backfill, switch, drop the old later"),
    Rule("MIG007", "creates an index without CONCURRENTLY", "use CREATE INDEX CONCURRENTLY (outside a "
         "transaction), so writes are not blocked while it builds", ("postgres",)),
    Rule("MIG107", "adds an index without ALGORITHM=INPLACE, LOCK=NONE", "add ALGORITHM=INPLACE, LOCK=NONE so "
         "writes continue while it builds", ("mysql",)),
    Rule("MIG008", "adds a foreign key or check constraint without NOT VALID", "add it NOT VALID, then "
         "VALIDATE CONSTRAINT in a separate statement (takes a weaker lock)", ("postgres",)),
    Rule("MIG009", "takes an ACCESS EXCLUSIVE lock without lock_timeout", "start the migration with "
         "SET lock_timeout = '5s' so it fails fast instead of queueing every query behind it", ("postgres",)),
]}

ALLOW = re.compile(r"--\s*deploy:allow\s+(MIG\d{3})\b[ \t]*(.*)", re.I)
IDENT = r'(?:"[^"]+"|`[^`]+`|[A-Za-z_][\w$]*)(?:\.(?:"[^"]+"|`[^`]+`|[A-Za-z_][\w$]*))?'


def _blank(sql: str) -> str:
    """Comments and string literals replaced by spaces (newlines kept); quoted identifiers kept."""
    out, i, n = [], 0, len(sql)
    while i < n:
        c = sql[i]
        if sql.startswith("--", i) or (c == "#" ):
            j = sql.find("\n", i)
            j = n if j < 0 else j
            out.append(" " * (j - i))
            i = j
        elif sql.startswith("/*", i):
            j = sql.find("*/", i + 2)
            j = n if j < 0 else j + 2
            out.append(re.sub(r"[^\n]", " ", sql[i:j]))
            i = j
        elif c == "'" or (c == "$" and re.match(r"\$\w*\$", sql[i:])):
            if c == "'":
                j = i + 1
                while j < n:
                    if sql[j] == "'" and sql[j + 1:j + 2] == "'":
                        j += 2
                        continue
                    if sql[j] == "\\" and j + 1 < n:
                        j += 2
                        continue
                    if sql[j] == "'":
                        break
                    j += 1
                j = min(j + 1, n)
            else:
                tag = re.match(r"\$\w*\$", sql[i:]).group(0)
                k = sql.find(tag, i + len(tag))
                j = n if k < 0 else k + len(tag)
            out.append("'" + re.sub(r"[^\n]", " ", sql[i + 1:j - 1]) + "'" if j - i >= 2 else " ")
            i = j
        else:
            out.append(c)
            i += 1
    return "".join(out)


def _statements(sql: str) -> list[tuple[int, str]]:
    """(1-based line, statement text normalised to single spaces) for each statement."""
    blank = _blank(sql)
    result, start = [], 0
    for m in re.finditer(r";|\Z", blank):
        chunk = blank[start:m.start()]
        if chunk.strip():
            lead = len(chunk) - len(chunk.lstrip())
            line = blank.count("\n", 0, start + lead) + 1
            result.append((line, " ".join(chunk.split())))
        start = m.end()
        if m.end() >= len(blank):
            break
    return result


def _name(raw: str) -> str:
    return raw.strip('"`').split(".")[-1].strip('"`').lower()


def _check(stmt: str, dialect: str, created: set[str], has_lock_timeout: bool) -> list[str]:
    s = stmt.upper()
    hits: list[str] = []
    m = re.match(rf"ALTER TABLE (?:IF EXISTS )?(?:ONLY )?({IDENT})", stmt, re.I)
    table = _name(m.group(1)) if m else None
    new_table = table in created if table else False
    if m and not new_table:
        body = s[m.end():]
        if re.search(r"\bDROP (?:COLUMN )?(?:IF EXISTS )?(?!CONSTRAINT\b|INDEX\b|KEY\b|DEFAULT\b|NOT\b|PRIMARY\b|"
                     r"FOREIGN\b|CHECK\b|PARTITION\b|IDENTITY\b|EXPRESSION\b)[\"`]?\w", body):
            hits.append("MIG001")
        for add in re.finditer(r"\bADD (?:COLUMN )?(?:IF NOT EXISTS )?(?!CONSTRAINT\b|INDEX\b|KEY\b|UNIQUE\b|"
                               r"PRIMARY\b|FOREIGN\b|CHECK\b)(.*?)(?=, ADD |$)", body):
            col = add.group(1)
            if re.search(r"\bNOT NULL\b", col) and not re.search(r"\bDEFAULT\b|\bGENERATED\b", col):
                hits.append("MIG003")
        if re.search(r"\bALTER (?:COLUMN )?[\"`]?\w+[\"`]? SET NOT NULL\b", body):
            hits.append("MIG004")
        if re.search(r"\bRENAME (?:COLUMN )?[\"`]?\w+[\"`]? TO\b|\bRENAME TO\b|\bRENAME AS\b", body) or \
                (dialect == "mysql" and re.search(r"\bCHANGE (?:COLUMN )?[\"`]?(\w+)[\"`]? [\"`]?(\w+)", body) and
                 _renamed(body)):
            hits.append("MIG005")
        if re.search(r"\bALTER (?:COLUMN )?[\"`]?\w+[\"`]? (?:SET DATA )?TYPE\b", body) or \
                (dialect == "mysql" and re.search(r"\b(?:MODIFY|CHANGE)\b", body)):
            hits.append("MIG006")
            if dialect == "mysql" and re.search(r"\bNOT NULL\b", body):
                hits.append("MIG004")
        if dialect == "postgres" and re.search(r"\bADD (?:CONSTRAINT [\"`]?\w+[\"`]? )?(?:FOREIGN KEY|CHECK)\b", body) \
                and "NOT VALID" not in body:
            hits.append("MIG008")
        if dialect == "mysql" and re.search(r"\bADD (?:UNIQUE |FULLTEXT |SPATIAL )?(?:INDEX|KEY)\b", body) and not (
                re.search(r"ALGORITHM\s*=\s*INPLACE", body) and re.search(r"LOCK\s*=\s*NONE", body)):
            hits.append("MIG107")
        if dialect == "postgres" and not has_lock_timeout:
            hits.append("MIG009")
    if re.match(r"DROP TABLE\b", s):
        targets = [_name(t) for t in re.sub(r"^DROP TABLE (?:IF EXISTS )?", "", stmt, flags=re.I).split(" ")[0].split(",")]
        if any(t not in created for t in targets):
            hits.append("MIG002")
    if re.match(r"ALTER TABLE \S+ RENAME TO\b", s) is None and re.match(r"RENAME TABLE\b", s):
        hits.append("MIG005")
    idx = re.match(rf"CREATE (?:UNIQUE )?INDEX (CONCURRENTLY )?(?:IF NOT EXISTS )?(?:{IDENT} )?ON (?:ONLY )?({IDENT})",
                   stmt, re.I)
    if idx and _name(idx.group(2)) not in created:
        if dialect == "postgres" and not idx.group(1):
            hits.append("MIG007")
        if dialect == "mysql" and not (re.search(r"ALGORITHM\s*=\s*INPLACE", s) and re.search(r"LOCK\s*=\s*NONE", s)):
            hits.append("MIG107")
    return hits


def _renamed(body: str) -> bool:
    m = re.search(r"\bCHANGE (?:COLUMN )?[\"`]?(\w+)[\"`]? [\"`]?(\w+)", body)
    return bool(m and m.group(1).lower() != m.group(2).lower())


def lint(files: list[tuple[str, str]], dialect: str, allow: list | None = None) -> list[Finding]:
    """Findings for each (file name, SQL text). `allow`: entries with id (rule), file and reason."""
    if dialect not in ("postgres", "mysql"):
        raise ValueError(f"unknown SQL dialect {dialect!r}: postgres or mysql")
    findings: list[Finding] = []
    for name, sql in files:
        inline = {}
        for m in ALLOW.finditer(sql):
            reason = m.group(2).strip()
            if len(reason) < 3:
                findings.append(Finding(id="MIG000", severity="high", tool="migration-lint", target=name,
                                        title=f"deploy:allow {m.group(1)} without a reason",
                                        advice="say why the rule does not apply here: -- deploy:allow MIG00X <reason>"))
            else:
                inline[m.group(1).upper()] = reason
        created: set[str] = set()
        has_lock_timeout = False
        for line, stmt in _statements(sql):
            up = stmt.upper()
            c = re.match(rf"CREATE (?:TEMP |TEMPORARY |UNLOGGED )?TABLE (?:IF NOT EXISTS )?({IDENT})", stmt, re.I)
            if c:
                created.add(_name(c.group(1)))
                continue
            if re.match(r"SET (?:LOCAL |SESSION )?LOCK_TIMEOUT\b", up):
                has_lock_timeout = True
                continue
            for rule_id in dict.fromkeys(_check(stmt, dialect, created, has_lock_timeout)):
                rule = RULES[rule_id]
                if dialect not in rule.dialects:
                    continue
                f = Finding(id=rule.id, severity="high", tool="migration-lint", target=f"{name}:{line}",
                            title=f"{rule.title}: {stmt[:120]}", advice=rule.advice)
                if rule.id in inline:
                    f = f.allowed(inline[rule.id])
                else:
                    entry = next((a for a in allow or [] if a.id == rule.id and (a.file is None or
                                                                                 name.endswith(a.file))), None)
                    if entry is not None:
                        f = f.allowed(entry.reason)
                findings.append(f)
    return findings
