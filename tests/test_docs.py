"""Docs and install: the man pages match every option of every command, the
generated files are current, pages and completions install where man,
bash-completion and zsh find them, and the sample config's references exist."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import click
import pytest

from peripety.cli import _COMMANDS
from peripety.cli import completions, manpages

ROOT = Path(__file__).resolve().parents[1]
REGEN = "python -m peripety.cli.manpages"


def man_sections(text: str) -> dict[str, str]:
    """Roff source split by command: "prpt top" -> its .SS part, "prpt" ->
    GLOBAL OPTIONS, "peripetyd" -> OPTIONS."""
    parts: dict[str, str] = {}
    for match in re.finditer(r"^\.SS (?P<name>.+?)\n(?P<body>.*?)(?=^\.S[SH] )", text, re.M | re.S):
        parts[match["name"].replace("\\-", "-")] = match["body"]
    for title in ("GLOBAL OPTIONS", "OPTIONS"):
        match = re.search(rf"^\.SH {title}\n(?P<body>.*?)(?=^\.SH )", text, re.M | re.S)
        if match:
            parts["@options"] = match["body"]
    return parts


def documented_options(roff: str) -> set[str]:
    """Option strings in the .TP tags of a man page part."""
    names: set[str] = set()
    for tag in re.findall(r"^\.TP\n\\fB(.*?)\\fR$", roff, re.M):
        plain = tag.replace("\\-", "-")
        for form in re.split(r",\s*|\s+/\s+", plain):
            token = form.split()[0] if form.split() else ""
            if token.startswith("-"):
                names.add(token.split("=")[0])
    return names


def commands():
    """(program, command path, click command, context) for every command."""
    for program, command in manpages.programs().items():
        ctx = manpages.context(command, program)
        yield program, program, command, ctx
        if isinstance(command, click.Group):
            for name in command.list_commands(ctx):
                sub = command.get_command(ctx, name)
                yield program, f"{program} {name}", sub, manpages.context(sub, name, ctx)


@pytest.mark.parametrize("program,path,command,ctx", list(commands()), ids=lambda v: v if isinstance(v, str) else "")
def test_every_option_of_every_command_is_in_the_man_page_and_nothing_else(program, path, command, ctx):
    page = (ROOT / "doc" / manpages.page_paths()[program].name).read_text()
    sections = man_sections(page)
    key = "@options" if path == program else path
    assert key in sections, f"{path} has no section in doc/{program}.*: run {REGEN}"
    wanted = manpages.option_names(command, ctx)
    shown = documented_options(sections[key])
    assert wanted - shown == set(), f"{path}: options missing from the man page: {sorted(wanted - shown)}; run {REGEN}"
    assert shown - wanted == set(), f"{path}: man page offers options the command rejects: {sorted(shown - wanted)}"


def test_a_changed_option_is_caught(monkeypatch):
    """The comparison is not vacuous: an option added to a command and not
    to the page is reported."""
    from peripety.cli.top import command as top

    extra = click.Option(["--brand-new-option"], help="x")
    monkeypatch.setattr(top, "params", [*top.params, extra])
    ctx = manpages.context(top, "top")
    shown = documented_options(man_sections((ROOT / "doc/prpt.1").read_text())["prpt top"])
    assert "--brand-new-option" in manpages.option_names(top, ctx) - shown


@pytest.mark.parametrize("program", ["prpt", "peripetyd"])
def test_generated_man_pages_are_current(program):
    path = manpages.page_paths()[program]
    assert path.read_text() == manpages.render(program), f"{path} is out of date: run {REGEN}"


def test_man_page_renders_without_warnings(tmp_path):
    for path in manpages.page_paths().values():
        done = subprocess.run(["man", "--warnings", "-l", str(path)], capture_output=True, text=True,
                              env={**os.environ, "MANWIDTH": "100", "MAN_KEEP_FORMATTING": "0", "PAGER": "cat"})
        assert done.returncode == 0 and not done.stderr.strip(), done.stderr
        assert "COMMANDS" in done.stdout or "OPTIONS" in done.stdout


def test_completion_files_are_current():
    for (program, shell), path in completions.paths().items():
        assert path.read_text() == completions.render(program, shell), (
            f"{path} is out of date: run python -m peripety.cli.completions")


def test_bash_completion_file_completes_commands_and_options():
    script = ROOT / "completions/bash/prpt"
    prpt_dir = Path(sys.executable).parent
    out = subprocess.run(
        ["bash", "-c", f"source {script}; COMP_WORDS=(prpt to); COMP_CWORD=1; _prpt_completion prpt; "
                       "echo ${COMPREPLY[@]}; COMP_WORDS=(prpt top --as); COMP_CWORD=2; COMPREPLY=(); "
                       "_prpt_completion prpt; echo ${COMPREPLY[@]}"],
        capture_output=True, text=True, env={**os.environ, "PATH": f"{prpt_dir}:{os.environ['PATH']}"},
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ["top", "--ascii"]


def test_versions():
    for program in ("prpt", "peripetyd"):
        done = subprocess.run([str(Path(sys.executable).with_name(program)), "--version"], capture_output=True,
                              text=True)
        assert done.returncode == 0 and re.fullmatch(rf"{program}, version \d+\.\d+\.\d+\S*\n", done.stdout)


def test_install_puts_pages_and_completions_where_man_and_shells_look(tmp_path):
    """pip's data files land under the prefix; man finds <prefix>/share/man
    for <prefix>/bin on PATH (what a venv gives)."""
    # --ignore-installed: without it pip first removes the test venv's own (editable) peripety.
    done = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                           "--ignore-installed", "--disable-pip-version-check", "--prefix", str(tmp_path / "prefix"),
                           str(ROOT)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    prefix = tmp_path / "prefix"
    for relative in ("bin/prpt", "bin/peripetyd", "share/man/man1/prpt.1", "share/man/man8/peripetyd.8",
                     "share/bash-completion/completions/prpt", "share/bash-completion/completions/peripetyd",
                     "share/zsh/site-functions/_prpt", "share/zsh/site-functions/_peripetyd"):
        assert (prefix / relative).exists(), relative
    env = {"PATH": f"{prefix / 'bin'}:/usr/bin:/bin", "HOME": str(tmp_path)}
    found = subprocess.run(["man", "-w", "prpt", "peripetyd"], capture_output=True, text=True, env=env)
    assert found.stdout.split() == [str(prefix / "share/man/man1/prpt.1"), str(prefix / "share/man/man8/peripetyd.8")]


def test_sample_config_keys_and_references_exist(tmp_path):
    from peripety.config import load_config

    text = (ROOT / "etc/peripetyd.conf").read_text()
    # Every commented default, uncommented, is a valid setting with that default;
    # the commented [[notify]] examples, uncommented, are valid actions.
    uncommented = re.sub(r"^#(\w+ = |\[\[notify\]\]$)", r"\1", text, flags=re.M)
    (tmp_path / "all.conf").write_text(uncommented)
    every, sample = load_config(tmp_path / "all.conf"), load_config(ROOT / "etc/peripetyd.conf")
    for name in ("store", "blk_info_dump", "storm_window", "notify_stdout", "user_space_identifiers"):
        assert getattr(every, name) == getattr(sample, name), name
    assert every.metrics.max_devices == sample.metrics.max_devices
    assert str(every.metrics.listen) == "127.0.0.1:9877"  # the example is valid
    assert tomllib.loads(uncommented)["daemon"]["store"] == "auto"
    assert [a.name for a in every.notify] == ["mail-root", "webhook"] and sample.notify == ()
    for action in every.notify:  # the programs scripts/install.sh puts there
        installed = "/usr/local/share/peripety/contrib/notify/"
        assert action.argv[0].startswith(installed)
        assert os.access(ROOT / "contrib/notify" / action.argv[0][len(installed):], os.X_OK), action.argv[0]
    for command in re.findall(r"`prpt ([a-z-]+)", text):
        assert command in _COMMANDS, f"etc/peripetyd.conf names prpt {command}, which does not exist"
    assert "--event-types" not in text
    for path in re.findall(r"(peripety/[\w/]+\.toml)", text):
        assert (ROOT / path).exists(), path


def test_readme_names_only_real_commands_and_options():
    text = (ROOT / "README.md").read_text()
    for command, rest in re.findall(r"^\$? ?prpt ([a-z-]+)([^\n|]*)", text, re.M):
        assert command in _COMMANDS, f"README: prpt {command}"
        if command in manpages.programs()["prpt"].list_commands(None):
            sub = manpages.programs()["prpt"].get_command(None, command)
            known = manpages.option_names(sub, manpages.context(sub, command))
            for option in re.findall(r"(?<!\S)(--?[a-zA-Z][\w-]*)", rest):
                assert option in known, f"README: prpt {command} {option}"


def test_install_script_in_a_scratch_directory(tmp_path):
    """The README's Debian 12 steps (scripts/install.sh) into a scratch venv
    and link prefix: programs, man pages and the unit all work from there."""
    src = tmp_path / "src"
    src.mkdir()
    archive = subprocess.run(["git", "-C", str(ROOT), "ls-files", "-z"], capture_output=True, check=True).stdout
    for name in archive.decode().split("\0"):
        if name and (ROOT / name).is_file():
            (src / name).parent.mkdir(parents=True, exist_ok=True)
            (src / name).write_bytes((ROOT / name).read_bytes())
            (src / name).chmod((ROOT / name).stat().st_mode)
    venv, links = tmp_path / "venv", tmp_path / "usr-local"
    done = subprocess.run(["bash", str(src / "scripts/install.sh"), str(venv)], capture_output=True, text=True,
                          env={**os.environ, "LINK_PREFIX": str(links), "SYSTEMD_DIR": ""}, timeout=600)
    assert done.returncode == 0, done.stderr
    env = {"PATH": f"{links / 'bin'}:/usr/bin:/bin", "HOME": str(tmp_path)}
    for program in ("prpt", "peripetyd"):
        version = subprocess.run([program, "--version"], capture_output=True, text=True, env=env)
        assert version.returncode == 0 and version.stdout.startswith(f"{program}, version ")
        assert (links / "share/bash-completion/completions" / program).resolve().is_file()
        assert (links / "share/zsh/site-functions" / f"_{program}").resolve().is_file()
    pages = subprocess.run(["man", "-w", "prpt", "peripetyd"], capture_output=True, text=True, env=env)
    assert pages.returncode == 0 and len(pages.stdout.split()) == 2, pages.stderr
    for example in ("mail", "webhook"):  # the [[notify]] examples the README names
        assert os.access(links / "share/peripety/contrib/notify" / example, os.X_OK), example
    unit = tmp_path / "peripetyd.service"
    unit.write_text(re.sub(r"^ExecStart=.*$", f"ExecStart={venv}/bin/peripetyd",
                           (src / "systemd/peripetyd.service").read_text(), flags=re.M))
    verify = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True,
                            env={**os.environ, "MANPATH": f"{links / 'share/man'}:"})
    assert verify.returncode == 0, verify.stderr  # ExecStart exists, man:peripetyd(8) and man:prpt(1) resolve
