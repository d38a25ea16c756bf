"""Settings fit to print: URLs with their passwords hidden.

Error messages and ``amworker check`` name the URLs they tried, and both end
up in logs an operator may paste into a ticket.
"""

from __future__ import annotations

from kombu.utils.url import maybe_sanitize_url


def redact(url: str) -> str:
    """``url`` with any password replaced by ``**`` (kombu's sanitiser), fit to print.

    Each URL of a ``;``-separated failover list is sanitised alone: kombu
    reads the list as one URL and would show the passwords after the first.
    """
    return ";".join(maybe_sanitize_url(part) for part in url.split(";"))
