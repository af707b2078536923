"""The bad-catalog corpus: a valid base catalog and, per case, one edit of its text plus the exact
problem line the loader must report (file prefix aside). Edits are text replacements so line
numbers in the expectations stay readable against BASE."""

from __future__ import annotations

from dataclasses import dataclass

BASE = """\
project: shop
timezone: UTC
environments:
  staging:
    docker: {host: "unix:///run/podman.sock", nginx_prefix: /srv/nginx}
    registry: "127.0.0.1:5000"
    prometheus: "http://127.0.0.1:9090"
    backup_root: "file:///var/backups"
  production:
    requires: staging
    approval: manual
    docker: {host: "unix:///run/podman.sock", nginx_prefix: /srv/nginx}
    registry: "127.0.0.1:5000"
    prometheus: "http://127.0.0.1:9090"
    backup_root: "file:///var/backups"
services:
  api:
    repo: /srv/git/api.git
    image: {repository: shop/api, build_args: {PIP_INDEX: {env: PIP_INDEX_URL}}}
    scan: {fail_on: high, allow: [{id: CVE-2025-1234, until: 2026-12-31, reason: no fix yet}]}
    database:
      engine: postgres
      url: {env: API_DATABASE_URL}
      backup: {schedule: "0 2 * * *", keep_days: 30, keep_last: 7}
    targets:
      staging: {port: 8080, replicas: 2, strategy: rolling, env: {LOG_LEVEL: info}}
      production:
        port: 8081
        replicas: 3
        strategy: {canary: {steps: [{setWeight: 10, pause: 5m}, {setWeight: 100}]}}
    verify:
      health: {path: /health, timeout: 30s, interval: 5s}
      rules:
        - {name: error_rate, query: "sum(rate(x[1m]))", max: 0.05, for: 2m}
notify:
  slack: {webhook: {env: SLACK_WEBHOOK}}
  ui_url: "http://127.0.0.1:3000"
triggers: {enabled: true, poll_interval: 5s}
"""

WEB = """\
  web:
    repo: /srv/git/web.git
    image: {repository: shop/web}
    targets:
      staging: {port: 8090}
"""


@dataclass(frozen=True)
class Case:
    id: str
    family: str
    edits: tuple[tuple[str, str], ...]      # (old, new) replacements of BASE, each must match once
    raw: bytes | None = None                # the whole file, for cases that are not text edits

    def text(self) -> bytes:
        if self.raw is not None:
            return self.raw
        out = BASE
        for old, new in self.edits:
            assert out.count(old) == 1, f"{self.id}: {old!r} must occur once in BASE"
            out = out.replace(old, new)
        return out.encode()


def c(id: str, family: str, old: str, new: str) -> Case:
    return Case(id, family, ((old, new),))


def add_web(id: str, family: str, web: str) -> Case:
    return Case(id, family, (("notify:\n", web + "notify:\n"),))


CASES = [
    # --- YAML syntax and encoding
    c("yaml-tab-indent", "yaml", "project: shop\n", "project: shop\n\tbad: 1\n"),
    c("yaml-unclosed-flow", "yaml", "image: {repository: shop/api, build_args", "image: {repository: shop/api build_args"),
    c("yaml-unclosed-quote", "yaml", '  ui_url: "http://127.0.0.1:3000"', '  ui_url: "http://127.0.0.1:3000'),
    c("yaml-bad-indent", "yaml", "    approval: manual\n", "     approval: manual\n"),
    c("yaml-undefined-alias", "yaml", "    repo: /srv/git/api.git", "    repo: *nowhere"),
    c("yaml-two-documents", "yaml", "triggers:", "---\nproject: other\ntriggers:"),
    c("yaml-list-top", "yaml", "project: shop\n", "- project: shop\n"),
    Case("yaml-empty", "yaml", (), raw=b""),
    Case("yaml-scalar", "yaml", (), raw=b"just a string\n"),
    Case("non-utf8", "encoding", (), raw=b"project: shop\ntimezone: \xff\xfeUTC\n"),
    Case("latin1-name", "encoding", (), raw="project: caf\u00e9\n".encode("latin-1")),
    Case("nul-byte", "yaml", (), raw=b"project: shop\x00\n"),
    # --- duplicates
    c("dup-service", "duplicate-key", "notify:\n", "  api:\n    repo: /srv/git/other.git\nnotify:\n"),
    c("dup-top-key", "duplicate-key", "timezone: UTC\n", "timezone: UTC\nproject: shop2\n"),
    c("dup-env", "duplicate-key", "services:\n", "  staging: {}\nservices:\n"),
    c("dup-in-flow", "duplicate-key", "{port: 8080, replicas: 2,", "{port: 8080, port: 8082, replicas: 2,"),
    c("dup-target", "duplicate-key", "    verify:\n", "      staging: {port: 8085}\n    verify:\n"),
    # --- bounds
    Case("alias-bomb", "bounds", (), raw=("x-a: &a [" + ",".join(["1"] * 10) + "]\n" + "".join(
        f"x-{chr(98 + i)}: &{chr(98 + i)} [" + ",".join([f"*{chr(97 + i)}"] * 10) + "]\n" for i in range(8))
        + BASE).encode()),
    Case("recursive-alias", "bounds", (), raw=("x-loop: &loop [*loop]\n" + BASE).encode()),
    Case("recursive-alias-map", "bounds", (), raw=("x-loop: &loop {self: *loop}\n" + BASE).encode()),
    Case("too-deep", "bounds", (), raw=("x-deep: " + "[" * 100 + "]" * 100 + "\n" + BASE).encode()),
    Case("too-big", "bounds", (), raw=(BASE + "x-pad: |\n" + ("  " + "a" * 98 + "\n") * 11000).encode()),
    # --- scalars and dates
    c("impossible-date", "date", "until: 2026-12-31", "until: 2026-02-30"),
    c("bad-date-text", "date", "until: 2026-12-31", "until: someday"),
    c("replicas-yes", "type", "replicas: 3", "replicas: yes"),
    c("replicas-true", "type", "replicas: 3", "replicas: true"),
    c("replicas-float", "type", "replicas: 3", "replicas: 2.5"),
    c("replicas-zero", "range", "replicas: 3", "replicas: 0"),
    c("replicas-huge", "range", "replicas: 3", "replicas: 1000"),
    c("max-nan", "type", "max: 0.05", "max: .nan"),
    c("max-string", "type", "max: 0.05", "max: five"),
    c("port-zero", "range", "port: 8081", "port: 0"),
    c("port-high", "range", "port: 8081", "port: 70000"),
    c("port-text", "type", "port: 8081", "port: http"),
    c("keep-last-zero", "range", "keep_last: 7", "keep_last: 0"),
    c("keep-days-negative", "range", "keep_days: 30", "keep_days: -1"),
    c("duration-bad", "type", "pause: 5m", "pause: 5 minutes"),
    c("duration-negative", "range", "timeout: 30s", "timeout: -5"),
    c("duration-bool", "type", "timeout: 30s, interval: 5s", "timeout: 30s, interval: yes"),
    c("poll-too-fast", "range", "poll_interval: 5s", "poll_interval: 100ms"),
    c("weight-over-100", "range", "setWeight: 10,", "setWeight: 150,"),
    c("weights-decrease", "strategy", "{setWeight: 100}", "{setWeight: 5}"),
    c("timezone-unknown", "type", "timezone: UTC", "timezone: Mars/Olympus"),
    c("timezone-too-long", "type", "timezone: UTC", "timezone: " + "A" * 300),
    c("timezone-number", "type", "timezone: UTC", "timezone: 9"),
    c("cron-bad", "type", 'schedule: "0 2 * * *"', 'schedule: "every night"'),
    c("patch-schedule-bad", "type", "triggers:", "patch: {schedule: sometimes}\ntriggers:"),
    # --- shapes and names
    c("unknown-field", "shape", "replicas: 3", "replica: 3"),
    c("unknown-top", "shape", "timezone: UTC", "timezone: UTC\nversion: 2"),
    c("missing-project", "shape", "project: shop\n", ""),
    c("missing-port", "shape", "        port: 8081\n", ""),
    c("missing-image", "shape", "    image: {repository: shop/api, build_args: {PIP_INDEX: {env: PIP_INDEX_URL}}}\n", ""),
    c("project-upper", "name", "project: shop", "project: Shop"),
    c("service-name-dash", "name", "  api:\n", "  my-api:\n"),
    c("env-name-space", "name", "environments:\n  staging:", "environments:\n  stag ing:"),
    c("repository-upper", "name", "repository: shop/api", "repository: Shop/API"),
    c("no-targets", "shape", "    targets:\n      staging: {port: 8080, replicas: 2, strategy: rolling, env: {LOG_LEVEL: info}}\n      production:\n        port: 8081\n        replicas: 3\n        strategy: {canary: {steps: [{setWeight: 10, pause: 5m}, {setWeight: 100}]}}\n", "    targets: {}\n"),
    c("services-list", "shape", "services:\n  api:", "services:\n - api:"),
    c("engine-unknown", "shape", "engine: postgres", "engine: oracle"),
    c("health-path-relative", "shape", "path: /health", "path: health"),
    c("rule-two-bounds", "shape", "max: 0.05,", "max: 0.05, min: 0.01,"),
    c("rule-no-bound", "shape", "max: 0.05,", ""),
    c("rule-dup-name", "shape", '- {name: error_rate, query: "sum(rate(x[1m]))", max: 0.05, for: 2m}',
      '- {name: error_rate, query: "sum(rate(x[1m]))", max: 0.05, for: 2m}\n        - {name: error_rate, query: y, max: 1}'),
    c("allow-no-reason", "shape", ", reason: no fix yet", ""),
    c("severity-unknown", "shape", "fail_on: high", "fail_on: severe"),
    # --- strategies
    c("canary-bare-list", "strategy", "strategy: {canary: {steps: [{setWeight: 10, pause: 5m}, {setWeight: 100}]}}",
      "strategy: {canary: [{setWeight: 10, pause: 5m}, {setWeight: 100}]}"),
    c("rolling-true", "strategy", "strategy: rolling", "strategy: {rolling: true}"),
    c("strategy-unknown", "strategy", "strategy: rolling", "strategy: recreate"),
    c("strategy-two", "strategy", "strategy: rolling", "strategy: {rolling: {}, blue_green: {}}"),
    c("canary-no-steps", "strategy", "{canary: {steps: [{setWeight: 10, pause: 5m}, {setWeight: 100}]}}", "{canary: {steps: []}}"),
    c("canary-empty-step", "strategy", "{setWeight: 100}", "{}"),
    c("rolling-stuck", "strategy", "strategy: rolling", "strategy: {rolling: {max_surge: 0, max_unavailable: 0}}"),
    c("strategy-number", "strategy", "strategy: rolling", "strategy: 3"),
    # --- cross-field
    c("platform-kubernetes", "cross-field", "port: 8081\n", "port: 8081\n        platform: kubernetes\n"),
    c("platform-ecs", "cross-field", "{port: 8080,", "{platform: ecs, port: 8080,"),
    c("platform-unknown", "shape", "{port: 8080,", "{platform: nomad, port: 8080,"),
    c("requires-cycle", "cross-field", "  staging:\n    docker", "  staging:\n    requires: production\n    docker"),
    c("requires-self", "cross-field", "requires: staging", "requires: production"),
    c("requires-unknown", "cross-field", "requires: staging", "requires: qa"),
    c("target-unknown-env", "cross-field", "      production:\n        port", "      prod:\n        port"),
    c("missing-docker", "cross-field", '    docker: {host: "unix:///run/podman.sock", nginx_prefix: /srv/nginx}\n    registry: "127.0.0.1:5000"\n    prometheus: "http://127.0.0.1:9090"\n    backup_root: "file:///var/backups"\n  production', '    registry: "127.0.0.1:5000"\n    prometheus: "http://127.0.0.1:9090"\n    backup_root: "file:///var/backups"\n  production'),
    Case("job-name-collision", "cross-field", (("services:\n", "  a_staging: {docker: {host: \"unix:///run/podman.sock\", nginx_prefix: /srv/nginx}, registry: \"127.0.0.1:5000\"}\nservices:\n"),
         ("notify:\n", "  web:\n    repo: /srv/git/web.git\n    image: {repository: shop/web}\n    targets: {a_staging: {port: 8095}}\n  web_a:\n    repo: /srv/git/web.git\n    image: {repository: shop/web}\n    targets: {staging: {port: 8096}}\nnotify:\n"))),
    add_web("port-collision", "cross-field", WEB.replace("8090", "8080")),
    add_web("port-collision-other-service-prod", "cross-field", WEB.replace("staging: {port: 8090}", "production: {port: 8081}\n      staging: {port: 8092}")),
    c("secret-in-env", "secret", "env: {LOG_LEVEL: info}", "env: {LOG_LEVEL: info, DB_PASSWORD: hunter2}"),
    c("token-in-env", "secret", "env: {LOG_LEVEL: info}", "env: {LOG_LEVEL: info, GITHUB_TOKEN: ghp_abc}"),
    c("url-password-in-env", "secret", "env: {LOG_LEVEL: info}", "env: {LOG_LEVEL: info, CACHE: \"redis://u:pw@127.0.0.1:6379\"}"),
    c("secret-build-arg", "secret", "{PIP_INDEX: {env: PIP_INDEX_URL}}", "{NPM_TOKEN: abc123}"),
    c("repo-with-token", "secret", "repo: /srv/git/api.git", "repo: \"https://x:ghp_abc@github.com/a/b.git\""),
    c("database-url-inline", "secret", "url: {env: API_DATABASE_URL}", "url: \"postgresql://u:p@h/db\""),
    c("webhook-inline", "secret", "webhook: {env: SLACK_WEBHOOK}", "webhook: \"https://hooks.slack.com/services/T/B/X\""),
    c("forgot-env-host", "secret", 'host: "unix:///run/podman.sock", nginx_prefix: /srv/nginx}\n    registry: "127.0.0.1:5000"\n    prometheus: "http://127.0.0.1:9090"\n    backup_root: "file:///var/backups"\n  production', 'host: DEPLOY_DOCKER_HOST, nginx_prefix: /srv/nginx}\n    registry: "127.0.0.1:5000"\n    prometheus: "http://127.0.0.1:9090"\n    backup_root: "file:///var/backups"\n  production'),
    c("forgot-env-repo", "secret", "repo: /srv/git/api.git", "repo: API_REPO_URL"),
    c("env-ref-bad-name", "secret", "url: {env: API_DATABASE_URL}", "url: {env: API-DATABASE-URL}"),
    c("env-ref-extra", "secret", "url: {env: API_DATABASE_URL}", "url: {env: API_DATABASE_URL, default: x}"),
    c("ui-url-not-url", "url", 'ui_url: "http://127.0.0.1:3000"', "ui_url: dagster-ui"),
    c("ui-url-ftp", "url", 'ui_url: "http://127.0.0.1:3000"', 'ui_url: "ftp://127.0.0.1"'),
    c("prometheus-not-url", "url", '  staging:\n    docker: {host: "unix:///run/podman.sock", nginx_prefix: /srv/nginx}\n    registry: "127.0.0.1:5000"\n    prometheus: "http://127.0.0.1:9090"', '  staging:\n    docker: {host: "unix:///run/podman.sock", nginx_prefix: /srv/nginx}\n    registry: "127.0.0.1:5000"\n    prometheus: "127.0.0.1:9090"'),
    c("docker-host-not-address", "url", 'host: "unix:///run/podman.sock", nginx_prefix: /srv/nginx}\n    registry: "127.0.0.1:5000"\n    prometheus: "http://127.0.0.1:9090"\n    backup_root: "file:///var/backups"\n  production', 'host: "/run/podman.sock", nginx_prefix: /srv/nginx}\n    registry: "127.0.0.1:5000"\n    prometheus: "http://127.0.0.1:9090"\n    backup_root: "file:///var/backups"\n  production'),
    c("backup-root-not-location", "url", '    backup_root: "file:///var/backups"\n  production', '    backup_root: "backups"\n  production'),
    c("tag-pattern-never-matches", "cross-field", "repo: /srv/git/api.git", "repo: /srv/git/api.git\n    tag_pattern: '^release-(?P<version>.*)$'"),
    c("tag-pattern-not-regex", "shape", "repo: /srv/git/api.git", "repo: /srv/git/api.git\n    tag_pattern: '^v(['"),
]



# The first problem line each case must report (reviewed by hand against BASE).
EXPECTED = {
    'yaml-tab-indent':
        'line 2, column 1: not valid YAML: found a tab character that violates indentation',
    'yaml-unclosed-flow':
        "line 19, column 44: not valid YAML: did not find expected ',' or '}'",
    'yaml-unclosed-quote':
        'line 39, column 1: not valid YAML: found unexpected end of stream',
    'yaml-bad-indent':
        'line 11, column 14: not valid YAML: mapping values are not allowed in this context',
    'yaml-undefined-alias':
        'line 18, column 11: not valid YAML: found undefined alias',
    'yaml-two-documents':
        'line 38, column 1: not valid YAML: but found another document',
    'yaml-list-top':
        "line 2, column 1: not valid YAML: did not find expected '-' indicator",
    'yaml-empty':
        '<top level>: the file is empty: expected project, environments and services',
    'yaml-scalar':
        '<top level>: expected a mapping with project, environments and services',
    'non-utf8':
        'line 2: not UTF-8 text (byte 0xff at offset 24): save the catalog as UTF-8',
    'latin1-name':
        'line 1: not UTF-8 text (byte 0xe9 at offset 12): save the catalog as UTF-8',
    'nul-byte':
        'line 1: not valid YAML: character 0 is not allowed in a YAML file',
    'dup-service':
        "line 35: services.api: duplicate key 'api' (first at line 17): YAML would silently keep only the last",
    'dup-top-key':
        "line 3: project: duplicate key 'project' (first at line 1): YAML would silently keep only the last",
    'dup-env':
        "line 16: environments.staging: duplicate key 'staging' (first at line 4): YAML would silently keep only the last",
    'dup-in-flow':
        "line 26: services.api.targets.staging.port: duplicate key 'port' (first at line 26): YAML would silently keep only the last",
    'dup-target':
        "line 31: services.api.targets.staging: duplicate key 'staging' (first at line 26): YAML would silently keep only the last",
    'alias-bomb':
        'line 1: x-e[7][8][8][8][9]: the document expands to more than 100,000 values (aliases referring to aliases?): refusing to load it',
    'recursive-alias':
        'line 1: x-loop[0]: an alias refers to a value that contains it (a recursive alias): write the value out',
    'recursive-alias-map':
        'line 1: x-loop.self: an alias refers to a value that contains it (a recursive alias): write the value out',
    'too-deep':
        'line 1: x-deep[0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0]: nested more than 64 levels deep',
    'too-big':
        '<top level>: the file is larger than 1,000,000 bytes, the limit for a catalog (is this the right file?)',
    'impossible-date':
        "line 20: services.api.scan.allow[0].until: '2026-02-30' is not a valid date (day is out of range for month)",
    'bad-date-text':
        "line 20: services.api.scan.allow[0].until: Input should be a valid date or datetime, input is too short (got 'someday') [service api]",
    'replicas-yes':
        "line 29: services.api.targets.production.replicas: Input should be a valid integer, unable to parse string as an integer (got 'yes') [service api, environment production]",
    'replicas-true':
        "line 29: services.api.targets.production.replicas: Input should be a valid integer, unable to parse string as an integer (got 'true') [service api, environment production]",
    'replicas-float':
        'line 29: services.api.targets.production.replicas: Input should be a valid integer, got a number with a fractional part (got 2.5) [service api, environment production]',
    'replicas-zero':
        'line 29: services.api.targets.production.replicas: Input should be greater than or equal to 1 (got 0) [service api, environment production]',
    'replicas-huge':
        'line 29: services.api.targets.production.replicas: Input should be less than or equal to 100 (got 1000) [service api, environment production]',
    'max-nan':
        'line 34: services.api.verify.rules[0].max: .nan (not a number) is not allowed: write a number',
    'max-string':
        "line 34: services.api.verify.rules[0].max: Input should be a valid number, unable to parse string as a number (got 'five') [service api]",
    'port-zero':
        'line 28: services.api.targets.production.port: Input should be greater than or equal to 1 (got 0) [service api, environment production]',
    'port-high':
        'line 28: services.api.targets.production.port: Input should be less than or equal to 65535 (got 70000) [service api, environment production]',
    'port-text':
        "line 28: services.api.targets.production.port: Input should be a valid integer, unable to parse string as an integer (got 'http') [service api, environment production]",
    'keep-last-zero':
        'line 24: services.api.database.backup.keep_last: Input should be greater than or equal to 1 (got 0) [service api]',
    'keep-days-negative':
        'line 24: services.api.database.backup.keep_days: Input should be greater than or equal to 0 (got -1) [service api]',
    'duration-bad':
        "line 30: services.api.targets.production.strategy.canary.steps[0].pause: '5 minutes' is not a duration: write e.g. 30s, 5m, 1h or 1h30m [service api, environment production]",
    'duration-negative':
        'line 32: services.api.verify.health.timeout: a duration cannot be negative [service api]',
    'duration-bool':
        "line 32: services.api.verify.health.interval: 'yes' is not a duration: write e.g. 30s, 5m, 1h or 1h30m [service api]",
    'poll-too-fast':
        'line 38: triggers.poll_interval: poll_interval must be at least 1s',
    'weight-over-100':
        'line 30: services.api.targets.production.strategy.canary.steps[0].setWeight: Input should be less than or equal to 100 (got 150) [service api, environment production]',
    'weights-decrease':
        "line 30: services.api.targets.production.strategy.canary: steps[1].weight 5 is below the previous step's 10: canary weights only go up [service api, environment production]",
    'timezone-unknown':
        "line 2: timezone: unknown time zone 'Mars/Olympus' (an IANA name such as Asia/Tokyo)",
    'timezone-too-long':
        "line 2: timezone: unknown time zone 'AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA (an IANA name such as Asia/Tokyo)",
    'timezone-number':
        'line 2: timezone: Input should be a valid string (got 9)',
    'cron-bad':
        "line 24: services.api.database.backup.schedule: 'every night' is not a cron expression (five fields, e.g. '0 2 * * *') [service api]",
    'patch-schedule-bad':
        "line 38: patch.schedule: String should match pattern '^(first|second|third|fourth|last)-(monday|tuesday|wednesday|thursday|friday|saturday|sunday) ([01]\\d|2[0-3]):[0-5]\\d$' (got 'sometimes')",
    'unknown-field':
        'line 29: services.api.targets.production.replica: unknown field (check the spelling against the catalog reference in README.md) [service api, environment production]',
    'unknown-top':
        'line 3: version: unknown field (check the spelling against the catalog reference in README.md)',
    'missing-project':
        'project: required field is missing',
    'missing-port':
        'line 27: services.api.targets.production.port: required field is missing [service api, environment production]',
    'missing-image':
        'line 17: services.api.image: required field is missing [service api]',
    'project-upper':
        "line 1: project: String should match pattern '^[a-z][a-z0-9_]*$' (got 'Shop')",
    'service-name-dash':
        "line 16: services: name 'my-api' must match ^[a-z][a-z0-9_]*$ (it becomes part of Dagster job names)",
    'env-name-space':
        "line 3: environments: name 'stag ing' must match ^[a-z][a-z0-9_]*$ (it becomes part of Dagster job names)",
    'repository-upper':
        "line 19: services.api.image.repository: String should match pattern '^[a-z0-9]+(?:[._/-][a-z0-9]+)*$' (got 'Shop/API') [service api]",
    'no-targets':
        'line 25: services.api.targets: Dictionary should have at least 1 item after validation, not 0 [service api]',
    'services-list':
        'line 16: services: Input should be a valid dictionary',
    'engine-unknown':
        "line 22: services.api.database.engine: Input should be 'postgres' or 'mysql' (got 'oracle') [service api]",
    'health-path-relative':
        "line 32: services.api.verify.health.path: String should match pattern '^/' (got 'health') [service api]",
    'rule-two-bounds':
        "line 34: services.api.verify.rules[0]: rule 'error_rate' needs exactly one of max or min [service api]",
    'rule-no-bound':
        "line 34: services.api.verify.rules[0]: rule 'error_rate' needs exactly one of max or min [service api]",
    'rule-dup-name':
        'line 31: services.api.verify: rule names must be unique: error_rate repeated [service api]',
    'allow-no-reason':
        'line 20: services.api.scan.allow[0].reason: required field is missing [service api]',
    'severity-unknown':
        "line 20: services.api.scan.fail_on: Input should be 'critical', 'high', 'medium', 'low' or 'none' (got 'severe') [service api]",
    'canary-bare-list':
        'line 30: services.api.targets.production.strategy: canary takes a mapping of its settings, not a list: write {canary: {steps: [{setWeight: 10, pause: 5m}, ...]}} [service api, environment production]',
    'rolling-true':
        "line 26: services.api.targets.staging.strategy: rolling takes a mapping of its settings, not 'true': write rolling or {rolling: {...}} [service api, environment staging]",
    'strategy-unknown':
        "line 26: services.api.targets.staging.strategy: unknown strategy 'recreate': rolling, blue_green or canary [service api, environment staging]",
    'strategy-two':
        'line 26: services.api.targets.staging.strategy: write exactly one strategy: {rolling: {...}}, {blue_green: {...}} or {canary: {steps: [...]}} [service api, environment staging]',
    'canary-no-steps':
        'line 30: services.api.targets.production.strategy.canary.steps: List should have at least 1 item after validation, not 0 [service api, environment production]',
    'canary-empty-step':
        'line 30: services.api.targets.production.strategy.canary.steps[1]: a canary step needs a weight (setWeight) and/or a pause [service api, environment production]',
    'rolling-stuck':
        'line 26: services.api.targets.staging.strategy.rolling: max_surge and max_unavailable cannot both be 0: the rollout could never progress [service api, environment staging]',
    'strategy-number':
        'line 26: services.api.targets.staging.strategy: Input should be a valid dictionary or object to extract fields from (got 3) [service api, environment staging]',
    'platform-kubernetes':
        'line 29: services.api.targets.production.platform: kubernetes needs environments.production.kubernetes (namespace, kubeconfig) [service api, environment production]',
    'platform-ecs':
        'line 4: environments.staging.aws: platform ecs needs aws: {region: ...} [environment staging]',
    'platform-unknown':
        "line 26: services.api.targets.staging.platform: Input should be 'docker', 'kubernetes' or 'ecs' (got 'nomad') [service api, environment staging]",
    'requires-cycle':
        'line 11: environments.production.requires: requires forms a cycle (production -> staging -> production): no environment could be released first [environment production]',
    'requires-self':
        'line 10: environments.production.requires: an environment cannot require itself',
    'requires-unknown':
        "line 10: environments.production.requires: unknown environment 'qa'",
    'target-unknown-env':
        "line 27: services.api.targets.prod: unknown environment 'prod' (known: staging, production) [service api]",
    'missing-docker':
        'line 25: services.api.targets.staging.platform: docker needs environments.staging.docker (host) [service api, environment staging]',
    'job-name-collision':
        'line 43: services.web_a.targets.staging: services.web.targets.a_staging and this target would both make the job release_web_a_staging (and its rollback, backup, patch, sensors and schedules): rename a service or environment [service web_a, environment staging]',
    'port-collision':
        'line 39: services.web.targets.staging.port: port 8080 on this Docker host is already the listener of services.api.targets.staging: give each target its own port [service web, environment staging]',
    'port-collision-other-service-prod':
        'line 39: services.web.targets.production.port: port 8081 on this Docker host is already the listener of services.api.targets.production: give each target its own port [service web, environment production]',
    'secret-in-env':
        'line 26: services.api.targets.staging.env.DB_PASSWORD: DB_PASSWORD looks like a secret: write it as {env: NAME}, never inline [service api, environment staging]',
    'token-in-env':
        'line 26: services.api.targets.staging.env.GITHUB_TOKEN: GITHUB_TOKEN looks like a secret: write it as {env: NAME}, never inline [service api, environment staging]',
    'url-password-in-env':
        'line 26: services.api.targets.staging.env.CACHE: this URL holds a password: write it as {env: NAME}, never inline [service api, environment staging]',
    'secret-build-arg':
        'line 19: services.api.image.build_args.NPM_TOKEN: NPM_TOKEN looks like a secret: write it as {env: NAME}, never inline [service api]',
    'repo-with-token':
        'line 18: services.api.repo: this URL holds a password: write it as {env: NAME}, never inline [service api]',
    'database-url-inline':
        'line 23: services.api.database.url: a database URL holds a password: write it as {env: NAME}, never inline [service api]',
    'webhook-inline':
        'line 36: notify.slack.webhook: a webhook URL is a secret: write it as {env: NAME}, never inline',
    'forgot-env-host':
        "line 5: environments.staging.docker.host: 'DEPLOY_DOCKER_HOST' looks like an environment variable name: write {env: DEPLOY_DOCKER_HOST} [environment staging]",
    'forgot-env-repo':
        "line 18: services.api.repo: 'API_REPO_URL' looks like an environment variable name: write {env: API_REPO_URL} [service api]",
    'env-ref-bad-name':
        "line 23: services.api.database.url.env: String should match pattern '^[A-Za-z_][A-Za-z0-9_]*$' (got 'API-DATABASE-URL') [service api]",
    'env-ref-extra':
        'line 23: services.api.database.url.default: unknown field (check the spelling against the catalog reference in README.md) [service api]',
    'ui-url-not-url':
        "line 37: notify.ui_url: 'dagster-ui' is not an http(s) URL (e.g. http://127.0.0.1:9090)",
    'ui-url-ftp':
        "line 37: notify.ui_url: 'ftp://127.0.0.1' is not an http(s) URL (e.g. http://127.0.0.1:9090)",
    'prometheus-not-url':
        "line 7: environments.staging.prometheus: '127.0.0.1:9090' is not an http(s) URL (e.g. http://127.0.0.1:9090) [environment staging]",
    'docker-host-not-address':
        "line 5: environments.staging.docker.host: '/run/podman.sock' is not a Docker Engine address (unix:///path, ssh://user@host or tcp://host:port) [environment staging]",
    'backup-root-not-location':
        "line 8: environments.staging.backup_root: 'backups' is not a backup location (file:///path, /path or s3://bucket/prefix) [environment staging]",
    'tag-pattern-never-matches':
        "line 19: services.api.tag_pattern: '^release-(?P<version>.*)$' does not match the release tag v1.2.3: no release could ever be found [service api]",
    'tag-pattern-not-regex':
        'line 19: services.api.tag_pattern: not a regular expression: unterminated character set at position 3 [service api]',
}
