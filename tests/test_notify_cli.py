"""``prpt notify-test`` and the example actions in contrib/notify/: the
webhook example posts through the real curl to a real HTTP server started
here; the mail example through the real sendmail of msmtp-mta to an SMTP
server (aiosmtpd) started here."""

from __future__ import annotations

import email
import os
import email.policy
import json
import shutil
import socket
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.harness.daemon import PRPT

CONTRIB = Path(__file__).resolve().parent.parent / "contrib" / "notify"


def test_curl_is_installed():
    assert shutil.which("curl"), "the webhook example needs curl: scripts/setup.sh installs it"


class Hook(BaseHTTPRequestHandler):
    received: list = []

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.received.append({"path": self.path, "headers": dict(self.headers), "body": body})
        status = 200 if self.path == "/hook" else 500
        self.send_response(status)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args):
        pass


@pytest.fixture
def webhook_server():
    Hook.received = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", Hook.received
    server.shutdown()
    server.server_close()
    thread.join()


def notify_test(config: Path, *args: str, env=None) -> subprocess.CompletedProcess:
    return subprocess.run([PRPT, "notify-test", "--config", str(config), *args], capture_output=True, text=True,
                          timeout=120, env=env)


def test_notify_test_posts_the_sample_event_to_a_webhook_with_curl(tmp_path, webhook_server):
    url, received = webhook_server
    config = tmp_path / "peripetyd.conf"
    config.write_text(f"""
[[notify]]
name = "webhook"
exec = ["{CONTRIB / 'webhook'}", "{url}/hook", "-H", "Authorization: Bearer s3cret"]
event_types = ["BLK_IO_ERROR"]
""")
    run = notify_test(config)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "webhook: ok: exit status 0" in run.stdout
    [request] = received
    assert request["path"] == "/hook"
    assert request["headers"]["Content-Type"] == "application/json"
    assert request["headers"]["Authorization"] == "Bearer s3cret"
    assert request["headers"]["X-Peripety-Event-Type"] == "BLK_IO_ERROR"
    assert request["headers"]["X-Peripety-Severity"] == "Error"
    event = json.loads(request["body"])
    assert event["event_type"] == "BLK_IO_ERROR" and event["sub_system"] == "block"
    assert event["kdev"] == "sdz" and event["extension"]["notify_test"] == "true"
    assert event["raw_msg"].startswith("I/O error, dev sdz, sector 2048 op 0x0:(READ)")


def test_a_failing_action_makes_notify_test_fail_and_filters_are_reported(tmp_path, webhook_server):
    url, received = webhook_server
    config = tmp_path / "peripetyd.conf"
    config.write_text(f"""
[[notify]]
name = "broken-hook"
exec = ["{CONTRIB / 'webhook'}", "{url}/broken"]

[[notify]]
name = "only-fs"
exec = "/bin/true"
event_types = ["FS_*"]
""")
    run = notify_test(config)
    assert run.returncode == 1
    assert "broken-hook: FAILED: exit status 22" in run.stdout  # curl --fail on HTTP 500
    assert "The requested URL returned error: 500" in run.stdout
    assert "only-fs: skipped: event type BLK_IO_ERROR is not in event_types" in run.stdout
    assert len(received) == 1
    # the other action alone, for a type it takes
    run = notify_test(config, "--action", "only-fs", "--event-type", "FS_REMOUNT_READ_ONLY")
    assert run.returncode == 0 and "only-fs: ok: exit status 0" in run.stdout
    # nothing at all runs: an error saying why
    run = notify_test(config, "--action", "only-fs")
    assert run.returncode == 1 and "no action ran" in run.stderr
    run = notify_test(config, "--action", "nope")
    assert run.returncode == 2 and "Invalid value for '--action': no [[notify]] action named nope" in run.stderr


def test_notify_test_gives_the_environment_and_times_out(tmp_path):
    out = tmp_path / "env"
    config = tmp_path / "peripetyd.conf"
    config.write_text(f"""
[[notify]]
name = "env"
exec = ["/bin/sh", "-c", "env > {out}"]
min_severity = "Info"

[[notify]]
name = "hang"
exec = "sleep 600"
timeout = 1
""")
    # a real block device of this machine (any: only its identity is used)
    disk = next(n for n in sorted(os.listdir("/sys/block")) if not n.startswith(("loop", "ram", "zram")))
    dev_num = Path(f"/sys/block/{disk}/dev").read_text().strip()
    run = notify_test(config, "--event-type", "FS_REMOUNT_READ_ONLY", "--device", f"/dev/{disk}", "--all")
    assert run.returncode == 1
    assert "hang: FAILED: timed out after 1 s" in run.stdout
    env = dict(line.split("=", 1) for line in out.read_text().splitlines() if "=" in line)
    assert env["PERIPETY_TEST"] == "1"
    assert env["PERIPETY_EVENT_TYPE"] == "FS_REMOUNT_READ_ONLY"
    assert env["PERIPETY_SEVERITY"] == "Critical"
    assert env["PERIPETY_SUB_SYSTEM"] == "ext4"
    assert env["PERIPETY_KDEV"] == disk
    assert env["PERIPETY_DEV_NUM"] == dev_num
    assert env["PERIPETY_BLK_PATH"] == f"/dev/{disk}"
    assert env["PERIPETY_ACTION"] == "env"


def test_notify_test_config_errors(tmp_path):
    config = tmp_path / "peripetyd.conf"
    config.write_text("[daemon]\nstorm_window = 5\n")
    run = notify_test(config)
    assert run.returncode == 1 and f"{config}: no [[notify]] sections" in run.stderr
    config.write_text('[[notify]]\nexec = "/bin/true"\ndevices = "sdb"\nrepeat = 1\n')
    run = notify_test(config)
    assert run.returncode == 1 and f"{config}: notify[0].repeat (line 4): repeat must be one of" in run.stderr
    config.write_text('[[notify]]\nexec = "/bin/true"\n')
    run = notify_test(config, "--event-type", "NOT_A_TYPE")
    assert run.returncode == 2 and "Invalid value for '--event-type': unknown event type 'NOT_A_TYPE'" in run.stderr
    run = notify_test(config, "--severity", "loud")
    assert run.returncode == 2 and "Invalid value for '--severity': unknown severity 'loud'" in run.stderr


class Mailbox:
    """aiosmtpd handler: keeps each message it is handed."""

    def __init__(self):
        self.messages = []

    async def handle_DATA(self, server, session, envelope):
        self.messages.append(envelope)
        return "250 OK"


@pytest.fixture
def smtp_server():
    from aiosmtpd.controller import Controller

    with socket.socket() as probe:  # a free port (aiosmtpd checks its own start on it)
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    mailbox = Mailbox()
    controller = Controller(mailbox, hostname="127.0.0.1", port=port)
    controller.start()
    yield port, mailbox
    controller.stop()


def test_the_mail_example_sends_through_the_real_sendmail(tmp_path, smtp_server):
    """/usr/sbin/sendmail here is msmtp's (msmtp-mta, set up by scripts/setup.sh),
    relaying to an SMTP server started here: the mail goes the way it would
    on a host whose sendmail submits to the site's smarthost."""
    port, mailbox = smtp_server
    assert os.path.realpath("/usr/sbin/sendmail").endswith("msmtp"), "scripts/setup.sh installs msmtp-mta"
    home = tmp_path / "home"
    home.mkdir()
    rc = home / ".msmtprc"
    rc.write_text(f"account default\nhost 127.0.0.1\nport {port}\nauth off\ntls off\nfrom peripety@localhost\n")
    rc.chmod(0o600)
    config = tmp_path / "peripetyd.conf"
    config.write_text(f'[[notify]]\nname = "mail"\nexec = ["{CONTRIB / "mail"}", "storage-team@example.com", "root@localhost"]\n')
    env = {k: v for k, v in os.environ.items() if k != "SENDMAIL"}
    run = notify_test(config, env=dict(env, HOME=str(home)))
    assert run.returncode == 0, run.stdout + run.stderr
    assert "mail: ok: exit status 0" in run.stdout
    [envelope] = mailbox.messages
    assert envelope.rcpt_tos == ["storage-team@example.com", "root@localhost"]
    raw = envelope.original_content
    assert max(len(line) for line in raw.splitlines()) < 998
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert message["To"] == "storage-team@example.com, root@localhost"
    assert message["Subject"].startswith("[TEST] peripety on ")
    assert message["Subject"].endswith("Error BLK_IO_ERROR on /dev/sdz")
    assert message["Auto-Submitted"] == "auto-generated"
    body = message.get_content().replace("\r\n", "\n")  # SMTP carries CRLF lines
    assert "Device:       /dev/sdz (sdz, WWID peripety-notify-test)" in body
    event = json.loads(body.split("The event (JSON):\n", 1)[1])
    assert event["event_type"] == "BLK_IO_ERROR" and event["kdev"] == "sdz"


def test_the_mail_example_says_when_no_sendmail_is_installed(tmp_path):
    config = tmp_path / "peripetyd.conf"
    config.write_text(f'[[notify]]\nname = "mail"\nexec = ["{CONTRIB / "mail"}"]\n')
    run = notify_test(config, env=dict(os.environ, SENDMAIL=str(tmp_path / "no-sendmail")))
    assert run.returncode == 1
    assert "mail: FAILED: exit status 69" in run.stdout
    assert "not found or not executable: install a mail transfer agent" in run.stdout
