"""The one redaction helper: everything that prints a setting (log lines, Failure messages,
metadata, skip reasons) passes it through `redact` first.

- URL credentials: `postgresql://app:s3cret@db/x` -> `postgresql://app:***@db/x`; a lone token in
  an http(s) URL (`https://ghp_abc@github.com/...`) -> `https://***@github.com/...`.
- Known secret values (a database password, a build secret) are replaced wherever they appear,
  also alone, not only inside their URL.
"""

from __future__ import annotations

import re
from urllib.parse import unquote, urlsplit

MASK = "***"

# Names of settings that hold secrets: their values are never inline in the catalog and never
# reach argv (build args named like this go through the builder's secret mechanism).
SECRET_NAME = re.compile(r"PASSW(OR)?D|SECRET|TOKEN|API_?KEY|PRIVATE_?KEY|CREDENTIAL|ACCESS_?KEY|_PASS$|^PASS",
                         re.IGNORECASE)

_URL_CREDENTIALS = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.-]*://)(?P<user>[^/@\s:]*)(?P<password>:[^/@\s]*)?@")
_MIN_SECRET = 4          # shorter "secrets" would mask ordinary words in every message


def is_secret_name(name: str) -> bool:
    return bool(SECRET_NAME.search(name))


def _mask_credentials(m: re.Match) -> str:
    scheme, user, password = m["scheme"], m["user"], m["password"]
    if password is not None:
        return f"{scheme}{user}:{MASK}@"
    if scheme.lower().startswith("http"):          # https://TOKEN@host: the user part is the secret
        return f"{scheme}{MASK}@"
    return m.group(0)                              # ssh://git@host: a user name, not a secret


def url_password(url: str) -> str | None:
    """The password inside a URL (percent-decoded), to redact it where it appears alone."""
    try:
        password = urlsplit(url).password
    except ValueError:
        return None
    return unquote(password) if password else None


def redact(text: object, *secrets: str | None) -> str:
    """`text` as a string with URL credentials and every given secret value masked. A secret
    given as a URL also masks its password wherever that appears alone."""
    out = str(text)
    values: set[str] = set()
    for secret in secrets:
        if not secret:
            continue
        values.add(secret)
        password = url_password(secret)
        if password:
            values.update({password, urlsplit(secret).password or ""})
    for value in sorted((v for v in values if len(v) >= _MIN_SECRET), key=len, reverse=True):
        out = out.replace(value, MASK)
    return _URL_CREDENTIALS.sub(_mask_credentials, out)
