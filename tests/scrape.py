"""The server's Prometheus metrics, read as a scraper reads them."""

from __future__ import annotations

import re
import urllib.request


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        return str(response.read().decode())


def sample(text: str, name: str, **labels: str) -> float:
    """One sample's value from the Prometheus text format."""
    wanted = ",".join(f'{key}="{value}"' for key, value in labels.items())
    pattern = rf"^{re.escape(name)}{re.escape('{' + wanted + '}') if wanted else ''} (\S+)$"
    match = re.search(pattern, text, re.MULTILINE)
    assert match, f"no sample {name}{{{wanted}}}"
    return float(match.group(1))


def total(text: str, name: str) -> float:
    """The sum of a metric's samples over all their labels (0 when it has none yet)."""
    return sum(float(value) for value in re.findall(rf"^{re.escape(name)}(?:{{[^}}]*}})? (\S+)$", text, re.M))
