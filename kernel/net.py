"""Address helpers shared by every listener (HTTP endpoints, the paper venue, config checks)."""

from __future__ import annotations

import ipaddress
import re
from urllib.parse import urlsplit, urlunsplit

SECRET_PARAM = re.compile(r"token|key|secret|sig|pass|auth|credential|session", re.IGNORECASE)
"""Query parameters whose values ``redact_url`` hides (``token``, ``apiKey``, ``signature``, ...)."""
REDACTED = "***"


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (127.0.0.0/8, ``::1``, also as ``[::1]``)."""
    if host == "localhost":
        return True
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def redact_url(url: str) -> str:
    """``url`` fit to show (logs, journal, status, errors): the values of secret-looking query
    parameters and a password in the user info replaced by ``***``; anything else unchanged."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return url.split("?", 1)[0] + ("?" + REDACTED if "?" in url else "")
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, host = netloc.rsplit("@", 1)
        if ":" in userinfo:
            netloc = f"{userinfo.split(':', 1)[0]}:{REDACTED}@{host}"
    query = (
        "&".join(
            f"{name}={REDACTED}" if sep and SECRET_PARAM.search(name) else f"{name}{sep}{value}"
            for name, sep, value in (field.partition("=") for field in parts.query.split("&"))
        )
        if parts.query
        else ""
    )
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def redact_in(text: str, url: str) -> str:
    """``text`` (e.g. a library's error message) with ``url`` in it shown as ``redact_url(url)``."""
    return text.replace(url, redact_url(url)) if url else text
