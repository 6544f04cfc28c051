"""What ``--metrics ADDR:PORT``, ``--metrics-textfile PATH`` and the
config's ``[metrics]`` accept, checked where they are read (the command
line, the config file). Kept apart from the metrics output so the config
is checked without loading prometheus_client.

``ADDR:PORT`` is written as Prometheus exporters write it: ``:9877`` (every
address), ``127.0.0.1:9877``, ``[::1]:9877``, ``localhost:9877``."""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from ..errors import PeripetyError


class ListenAddressError(PeripetyError, ValueError):
    """An ``ADDR:PORT`` that cannot be listened on as written; says why and
    what to write instead."""


@dataclass(frozen=True)
class ListenAddress:
    host: str
    """An IP address or host name; "" is every address (IPv6 and IPv4)."""
    port: int

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


EXAMPLES = ":9877, 127.0.0.1:9877 or [::1]:9877"
DEFAULT_MAX_DEVICES = 1000
"""Device label sets (wwid, kdev) in peripety_events_total before the rest
fold into one ``_other`` series: a scrape stays bounded on any host."""


def parse_listen_address(text: str) -> ListenAddress:
    """``text`` as ``ADDR:PORT``; ListenAddressError names the mistake."""
    text = text.strip()
    if not text:
        raise ListenAddressError(f"empty address: write ADDR:PORT, e.g. {EXAMPLES}")
    if text.isdigit():
        raise ListenAddressError(f"{text!r} has no address: write :{text} for every address "
                                 f"or 127.0.0.1:{text} for this host only")
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or not rest.startswith(":"):
            raise ListenAddressError(f"{text!r}: write an IPv6 address in brackets followed by :PORT, "
                                     "e.g. [::1]:9877")
        port = rest[1:]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ListenAddressError(f"{text!r}: {host!r} is not an IPv6 address") from None
    else:
        host, sep, port = text.rpartition(":")
        if not sep:
            raise ListenAddressError(f"{text!r} has no port: write ADDR:PORT, e.g. {EXAMPLES}")
        if ":" in host:
            raise ListenAddressError(f"{text!r}: write an IPv6 address in brackets, e.g. [{host}]:{port}")
        if host and not _is_host(host):
            raise ListenAddressError(f"{text!r}: {host!r} is neither an IP address nor a host name")
    if not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ListenAddressError(f"{text!r}: the port must be a number from 1 to 65535")
    return ListenAddress(host, int(port))


def _is_host(host: str) -> bool:
    try:
        ipaddress.IPv4Address(host)
        return True
    except ValueError:
        pass
    labels = host.rstrip(".").split(".")
    if all(label.isdigit() for label in labels):
        return False  # 999.0.0.1: a mistyped address, not a name
    return all(label and len(label) <= 63 and label[0] != "-" and label[-1] != "-"
               and all(c.isascii() and (c.isalnum() or c == "-") for c in label) for label in labels)


def check_textfile_path(text: str | os.PathLike) -> Path:
    """A node_exporter textfile path: absolute (the daemon's working
    directory is /) and ending in ``.prom`` (the only files the collector
    reads). ValueError says what to write instead."""
    path = Path(text)
    if not path.is_absolute():
        raise ValueError(f"{str(text)!r}: give an absolute path, e.g. /var/lib/prometheus/node-exporter/peripety.prom")
    if path.suffix != ".prom" or path.name == ".prom":
        raise ValueError(f"{str(text)!r}: the name must end in .prom (node_exporter's textfile collector "
                         "reads only *.prom files), e.g. peripety.prom")
    return Path(os.path.normpath(path))


def load_metrics_output(listen: ListenAddress | None, textfile: Path | None, config):
    """``outputs.metrics.open_metrics`` when the options or the config ask
    for metrics, else None: prometheus_client is imported only then, so a
    host without it runs everything else (the lab guest has none)."""
    if not (listen or textfile or config.metrics.listen or config.metrics.textfile):
        return None
    try:
        from .metrics import open_metrics
    except ImportError as exc:
        raise MetricsUnavailable(f"metrics need the Python package prometheus_client ({exc}): "
                                 "apt-get install python3-prometheus-client") from None
    return open_metrics


class MetricsUnavailable(PeripetyError):
    """Metrics were asked for but prometheus_client is not installed."""
