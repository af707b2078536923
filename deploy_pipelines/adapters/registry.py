"""An OCI distribution registry's HTTP API (httpx): manifest digests and tags."""

from __future__ import annotations

import httpx

ACCEPT = ", ".join([
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
])


class OciRegistry:
    """A registry at host:port; plain HTTP for loopback addresses, HTTPS otherwise."""

    def __init__(self, address: str, timeout: float = 10.0):
        self.address = address
        scheme = "http" if address.startswith(("127.0.0.1", "localhost")) else "https"
        self.base = f"{scheme}://{address}"
        self.timeout = timeout

    def manifest_digest(self, repository: str, reference: str) -> str | None:
        r = httpx.head(f"{self.base}/v2/{repository}/manifests/{reference}", headers={"Accept": ACCEPT},
                       timeout=self.timeout)
        if r.status_code == 404:
            return None
        r.raise_for_status()
        return r.headers.get("Docker-Content-Digest")

    def manifest(self, repository: str, reference: str) -> dict | None:
        r = httpx.get(f"{self.base}/v2/{repository}/manifests/{reference}", headers={"Accept": ACCEPT},
                      timeout=self.timeout)
        if r.status_code == 404:
            return None
        r.raise_for_status()
        return r.json()

    def config(self, repository: str, reference: str) -> dict | None:
        """The image config (labels live in config.Labels)."""
        m = self.manifest(repository, reference)
        if m is None or "config" not in m:
            return None
        r = httpx.get(f"{self.base}/v2/{repository}/blobs/{m['config']['digest']}", timeout=self.timeout,
                      follow_redirects=True)
        r.raise_for_status()
        return r.json()

    def tags(self, repository: str) -> list[str]:
        r = httpx.get(f"{self.base}/v2/{repository}/tags/list", timeout=self.timeout)
        if r.status_code == 404:
            return []
        r.raise_for_status()
        return r.json().get("tags") or []
