"""The metrics output on its own: exact counts, bounded device labels, the
textfile and the HTTP listener, read back with prometheus_client's parser
and a real HTTP client. The live daemon is tested in test_daemon_metrics.py."""

from __future__ import annotations

import os
import re
import socket
import stat
import subprocess
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

import peripety
from peripety.config import config_from_text
from peripety.errors import ConfigError
from peripety.event import BlkInfo, Severity, StorageEvent
from peripety.outputs.metrics import MetricsError, MetricsOutput, write_textfile
from peripety.outputs.metrics_options import ListenAddressError, parse_listen_address


def event(event_type="BLK_IO_ERROR", kdev="loop0", wwid="", n=1, severity=Severity.Error, **extension):
    """An event standing for ``n`` failures (a storm aggregate when n > 1)."""
    return StorageEvent(event_type=event_type, sub_system="block" if not event_type.startswith("PERIPETY_")
                        else "Peripety", severity=severity, kdev=kdev,
                        cur_blk_info=BlkInfo(wwid=wwid, blk_path=f"/dev/{kdev}") if wwid else None,
                        count=n, extension={k: str(v) for k, v in extension.items()})


def samples(text: str) -> dict:
    """{(sample name, sorted label items): value} of an exposition text."""
    found = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            found[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return found


def labels(event_type, kdev, wwid="", severity="error", sub_system="block"):
    return tuple(sorted({"event_type": event_type, "sub_system": sub_system, "severity": severity,
                         "wwid": wwid, "kdev": kdev}.items()))


class FakeStore:
    """The SpoolingStore attributes the output reads (the real one is used
    in test_daemon_metrics.py)."""

    name = "sqlite:/x"
    error = None
    refusals = 0
    spool_depth = 0

    class spool:  # noqa: N801
        dropped = 0


def text_of(output: MetricsOutput) -> str:
    from prometheus_client import generate_latest

    return generate_latest(output.textfile_registry).decode()


def test_storm_counts_are_summed_and_inventory_is_not_counted():
    out = MetricsOutput(store=FakeStore())
    out.on_event(event(wwid="naa.1"))
    out.on_event(event(wwid="naa.1", n=250))
    out.on_event(event("FS_ERROR", kdev="loop0", wwid="naa.1", severity=Severity.Error))
    out.on_event(event("PERIPETY_BLK_INFO", kdev="loop1", wwid="naa.2", severity=Severity.Info))
    got = samples(text_of(out))
    assert got[("peripety_events_total", labels("BLK_IO_ERROR", "loop0", "naa.1"))] == 251
    assert got[("peripety_events_total", labels("FS_ERROR", "loop0", "naa.1"))] == 1
    assert not any(k[0] == "peripety_events_total" and ("event_type", "PERIPETY_BLK_INFO") in k[1] for k in got)
    assert got[("peripety_metrics_device_series", ())] == 1  # the inventory took no device slot
    assert got[("peripety_up", ())] == 1


def test_daemon_loss_events_feed_their_counters():
    out = MetricsOutput(store=FakeStore())
    out.on_event(event("PERIPETY_KMSG_OVERRUN", kdev="", severity=Severity.Warning, missed=12))
    out.on_event(event("PERIPETY_KMSG_OVERRUN", kdev="", severity=Severity.Warning, missed=3))
    out.on_event(event("PERIPETY_KMSG_SUPPRESSED", kdev="loop3", severity=Severity.Warning,
                       function="blk_print_req_error", count=27))
    out.on_event(event("PERIPETY_BPF_LOST", kdev="", severity=Severity.Warning, lost=40))
    out.on_event(event("PERIPETY_BPF_LOST", kdev="", severity=Severity.Warning, missed=2))
    got = samples(text_of(out))
    assert got[("peripety_kmsg_overruns_total", ())] == 15
    assert got[("peripety_kernel_lines_suppressed_total", ())] == 27
    assert got[("peripety_bpf_samples_lost_total", ())] == 40
    assert got[("peripety_bpf_probe_runs_missed_total", ())] == 2
    # They are stored events too, counted once each; no device: empty labels
    overrun = labels("PERIPETY_KMSG_OVERRUN", "", severity="warning", sub_system="Peripety")
    assert got[("peripety_events_total", overrun)] == 2


def test_device_labels_are_bounded_and_the_rest_share_one_series():
    out = MetricsOutput(max_devices=3, store=FakeStore())
    for i in range(10):
        out.on_event(event(kdev=f"sd{i}", wwid=f"naa.{i}", n=i + 1))
    out.on_event(event(kdev="sd0", wwid="naa.0"))  # a device that has its series keeps it
    out.on_event(event(kdev="", wwid=""))  # no device: not a device slot
    got = samples(text_of(out))
    series = {k: v for k, v in got.items() if k[0] == "peripety_events_total"}
    assert series[("peripety_events_total", labels("BLK_IO_ERROR", "sd0", "naa.0"))] == 2
    assert series[("peripety_events_total", labels("BLK_IO_ERROR", "sd2", "naa.2"))] == 3
    assert series[("peripety_events_total", labels("BLK_IO_ERROR", "_other", "_other"))] == sum(range(4, 11))
    assert series[("peripety_events_total", labels("BLK_IO_ERROR", ""))] == 1
    assert len(series) == 5
    assert sum(series.values()) == sum(range(1, 11)) + 2  # nothing lost by folding
    assert got[("peripety_metrics_device_series", ())] == 3
    assert got[("peripety_metrics_device_series_max", ())] == 3


def test_store_health_is_read_at_tick():
    store = FakeStore()
    out = MetricsOutput(store=store)
    store.error, store.refusals, store.spool_depth = "journald is down", 4, 17
    store.spool = type("S", (), {"dropped": 2})
    before = samples(text_of(out))
    assert before[("peripety_store_up", (("store", "sqlite:/x"),))] == 1
    out.tick()
    got = samples(text_of(out))
    assert got[("peripety_store_up", (("store", "sqlite:/x"),))] == 0
    assert got[("peripety_store_errors_total", ())] == 4
    assert got[("peripety_spool_depth", ())] == 17
    assert got[("peripety_spool_dropped_total", ())] == 2


@pytest.mark.parametrize("text, host, port", [
    (":9877", "", 9877),
    ("127.0.0.1:9877", "127.0.0.1", 9877),
    ("[::1]:9877", "::1", 9877),
    ("localhost:1", "localhost", 1),
    ("0.0.0.0:65535", "0.0.0.0", 65535),
])
def test_listen_addresses_as_exporters_write_them(text, host, port):
    address = parse_listen_address(text)
    assert (address.host, address.port) == (host, port)


@pytest.mark.parametrize("text, says", [
    ("9877", ":9877 for every address"),
    ("::1:9877", "[::1]:9877"),
    ("127.0.0.1", "has no port: write ADDR:PORT"),
    ("127.0.0.1:0", "1 to 65535"),
    ("127.0.0.1:70000", "1 to 65535"),
    ("[::1]9877", "brackets followed by :PORT"),
    ("[nothost]:9877", "not an IPv6 address"),
    ("999.1.1.1:9877", "neither an IP address nor a host name"),
    ("", "empty"),
])
def test_bad_listen_addresses_say_what_to_write(text, says):
    with pytest.raises(ListenAddressError, match=re.escape(says)):
        parse_listen_address(text)


def test_config_metrics_section_is_checked_with_its_line():
    config = config_from_text('[metrics]\nlisten = "[::1]:9877"\ntextfile = "/var/lib/p/peripety.prom"\n'
                              "max_devices = 50\n", "/etc/peripetyd.conf")
    assert str(config.metrics.listen) == "[::1]:9877"
    assert str(config.metrics.textfile) == "/var/lib/p/peripety.prom"
    assert config.metrics.max_devices == 50
    with pytest.raises(ConfigError, match=r"peripetyd.conf: metrics.listen \(line 3\): 'localhost' has no port"):
        config_from_text('[daemon]\n[metrics]\nlisten = "localhost"\n', "/etc/peripetyd.conf")
    with pytest.raises(ConfigError, match=r"metrics.textfile \(line 2\).*must end in .prom"):
        config_from_text('[metrics]\ntextfile = "/var/lib/p/peripety.txt"\n', "/etc/peripetyd.conf")
    with pytest.raises(ConfigError, match=r"metrics.max_devices \(line 2\).*at least 1"):
        config_from_text('[metrics]\nmax_devices = 0\n', "/etc/peripetyd.conf")
    with pytest.raises(ConfigError, match=r"unknown key 'port' in \[metrics\]"):
        config_from_text('[metrics]\nport = 9877\n', "/etc/peripetyd.conf")


def test_textfile_is_replaced_atomically_readable_and_never_through_a_link(tmp_path):
    out = MetricsOutput(textfile=tmp_path / "peripety.prom", store=FakeStore()).open()
    out.on_event(event(wwid="naa.1", n=5))
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    # A link planted where the file goes is replaced, not written through.
    (tmp_path / "peripety.prom").unlink()
    (tmp_path / "peripety.prom").symlink_to(victim)
    out.close()
    assert victim.read_text() == "precious\n"
    path = tmp_path / "peripety.prom"
    assert not path.is_symlink()
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    got = samples(path.read_text())
    assert got[("peripety_events_total", labels("BLK_IO_ERROR", "loop0", "naa.1"))] == 5
    assert got[("peripety_up", ())] == 0  # written at stop
    assert not any(k[0].startswith(("process_", "python_")) for k in got)  # node_exporter has its own
    assert sorted(p.name for p in tmp_path.iterdir()) == ["peripety.prom", "victim"]  # no temp file left


def test_textfile_in_a_directory_others_can_swap_is_refused(tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o777)  # anyone may rename what is inside, e.g. the textfile's directory
    (shared / "textfile").mkdir()
    out = MetricsOutput(textfile=shared / "textfile" / "peripety.prom", store=FakeStore())
    with pytest.raises(MetricsError, match=r"group/world-writable"):
        out.open()
    with pytest.raises(MetricsError, match="does not exist"):
        write_textfile(tmp_path / "missing" / "p.prom", out.textfile_registry)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_http_scrape_with_a_real_client_and_process_metrics():
    port = free_port()
    out = MetricsOutput(listen=parse_listen_address(f"127.0.0.1:{port}"), store=FakeStore()).open()
    try:
        out.on_event(event(wwid="naa.7", kdev="sdq", n=3))
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as reply:
            assert reply.status == 200
            assert reply.headers["Content-Type"].startswith("text/plain")
            got = samples(reply.read().decode())
        assert got[("peripety_events_total", labels("BLK_IO_ERROR", "sdq", "naa.7"))] == 3
        assert got[("process_resident_memory_bytes", ())] > 0  # this process's, served over HTTP only
        [build] = [dict(k[1]) for k in got if k[0] == "peripety_build_info"]
        assert build["version"] == peripety.__version__
    finally:
        out.close()
    with pytest.raises(OSError):  # closed: the port is free again
        urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5)


def test_port_in_use_is_a_clear_error():
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        out = MetricsOutput(listen=parse_listen_address(f"127.0.0.1:{port}"), store=FakeStore())
        with pytest.raises(MetricsError, match=rf"127.0.0.1:{port}: cannot listen: Address already in use; "
                                               r"another program listens there"):
            out.open()


def test_ipv6_loopback_is_served():
    if not os.path.exists("/proc/net/if_inet6"):
        pytest.skip("this kernel has no IPv6")  # conditional: the machine's kernel decides
    port = free_port()
    out = MetricsOutput(listen=parse_listen_address(f"[::1]:{port}"), store=FakeStore()).open()
    try:
        curl = subprocess.run(["curl", "-sf", "-g", f"http://[::1]:{port}/metrics"], capture_output=True,
                              text=True, timeout=20)
        assert curl.returncode == 0, curl.stderr
        assert samples(curl.stdout)[("peripety_up", ())] == 1
    finally:
        out.close()


@pytest.mark.parametrize("args, says", [
    (["--metrics", "9877"], "'9877' has no address: write :9877 for every address"),
    (["--metrics", "::1:9877"], "write an IPv6 address in brackets, e.g. [::1]:9877"),
    (["--metrics-textfile", "/var/lib/prometheus/node-exporter/peripety.txt"], "must end in .prom"),
    (["--metrics", ":9877", "--replay", "/etc/hostname"], "no meaning with --replay"),
])
def test_peripetyd_refuses_bad_metrics_options_before_starting(args, says):
    from tests.harness.daemon import PERIPETYD

    run = subprocess.run([PERIPETYD, *args], capture_output=True, text=True, timeout=60)
    assert run.returncode == 2, run.stderr
    assert says in run.stderr
    assert "Traceback" not in run.stderr


def test_contrib_prometheus_files_name_only_metrics_peripetyd_exports():
    """The example alert rules and scrape config parse, and every peripety_*
    name in them is one the daemon exports (a renamed metric breaks this)."""
    import pathlib

    import yaml

    contrib = pathlib.Path(__file__).resolve().parent.parent / "contrib" / "prometheus"
    out = MetricsOutput(store=FakeStore())
    out.on_event(event(wwid="naa.1"))
    exported = {s[0] for s in samples(text_of(out))}
    rules = yaml.safe_load((contrib / "peripety-alerts.yml").read_text())
    exprs = [r["expr"] for g in rules["groups"] for r in g["rules"]]
    assert len(exprs) >= 5
    named = {n for e in exprs for n in re.findall(r"\bperipety_\w+", e)}
    assert "peripety_events_total" in named
    assert named <= exported, named - exported
    scrape = yaml.safe_load((contrib / "peripety-scrape.yml").read_text())
    assert scrape["scrape_configs"][0]["job_name"] == "peripety"


def test_a_refused_textfile_leaves_no_listener_behind(tmp_path):
    port = free_port()
    out = MetricsOutput(listen=parse_listen_address(f"127.0.0.1:{port}"),
                        textfile=tmp_path / "missing" / "peripety.prom", store=FakeStore())
    with pytest.raises(MetricsError, match="does not exist"):
        out.open()
    with socket.socket() as again:  # the port is free: the listener was closed
        again.bind(("127.0.0.1", port))


def test_without_prometheus_client_only_metrics_are_refused(tmp_path):
    """A host without prometheus_client (the lab guest) runs peripetyd;
    asking for metrics there is one clear line, exit 1."""
    script = ("import sys; sys.modules['prometheus_client'] = None\n"
              "from peripety.cli.peripetyd import main\n"
              "main(sys.argv[1:])\n")
    from tests.harness.daemon import PERIPETYD

    python = os.path.join(os.path.dirname(PERIPETYD), "python")
    plain = subprocess.run([python, "-c", script, "--check"], capture_output=True, text=True, timeout=60)
    assert plain.returncode == 0, plain.stderr
    assert "metrics: off" in plain.stdout
    asked = subprocess.run([python, "-c", script, "--check", "--metrics", "127.0.0.1:9877"],
                           capture_output=True, text=True, timeout=60)
    assert asked.returncode == 1
    assert "metrics need the Python package prometheus_client" in asked.stderr
    assert "apt-get install python3-prometheus-client" in asked.stderr and "Traceback" not in asked.stderr
