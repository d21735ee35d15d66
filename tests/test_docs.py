"""The delivery contract is written where operators read it (standards REL-13), and the
README's and the guides' tables render as tables."""

from __future__ import annotations

import re
from pathlib import Path

import click
import pytest

from drip.cli import main

ROOT = Path(__file__).parent.parent


def test_the_readme_states_the_delivery_contract() -> None:
    readme = " ".join((ROOT / "README.md").read_text().split())
    assert "Each email is sent at least once and, in all but one case, exactly once." in readme
    assert "logs the case as `ambiguous_resend`" in readme
    assert "`drip_ambiguous_resends_total`" in readme


def test_production_redis_runs_with_appendonly() -> None:
    """Standards REL-10: no email depends on Redis keeping its data (REL-03), but the
    rate-limit counters and the slow-downs do, so wherever drip says how Redis runs it
    says `appendonly yes`. Production's Redis is the operator's own server, not a
    `Procfile` process; one added there must say it too."""
    for doc in ("README.md", "docs/deploy.md"):
        text = " ".join((ROOT / doc).read_text().split())
        assert re.search(r"Run (the )?Redis( server)? with `appendonly yes`", text), doc
        assert "`appendonly yes` if you like" not in text, f"{doc}: a requirement, not a hint"
    for process in (ROOT / "Procfile").read_text().splitlines():
        assert "redis-server" not in process or "--appendonly yes" in process, process


def test_every_gunicorn_command_turns_off_the_control_socket() -> None:
    """gunicorn 25.1 and later open a control socket at one path per user
    (~/.gunicorn/gunicorn.ctl): a second instance on the host, or a restart beside the
    old one, takes it over from the first. drip does not use it."""
    commands = [
        line
        for doc in ("Procfile", "README.md", "docs/deploy.md")
        for line in (ROOT / doc).read_text().splitlines()
        if re.search(r"gunicorn --", line)
    ]
    assert len(commands) >= 4
    for command in commands:
        assert "--no-control-socket" in command, command


def test_the_deploy_guide_says_who_may_reach_the_web_port() -> None:
    """With DRIP_PROXY_HOPS set, drip believes X-Forwarded-For, so a client that reaches
    gunicorn directly chooses the IP its rate limits count and its consent evidence
    records; honcho runs the Procfile's web line on every interface."""
    text = " ".join((ROOT / "docs/deploy.md").read_text().split())
    assert "reachable only from the proxy" in text
    assert "`honcho start` sets `PORT=5000`" in text


def test_the_deploy_guide_gives_drip_a_folder_of_its_own_to_write() -> None:
    """The workers note in DRIP_INSTANCE when a signing key stopped signing, which `drip
    keys retire` reads; left to its default, ./instance under the units' working
    directory beside the code, the folder may not be drip's to create, and then no drip
    process starts. The environment file names one, and the guide creates it."""
    text = (ROOT / "docs/deploy.md").read_text()
    environment = text.split("```sh", 1)[1].split("```", 1)[0]
    folder = re.search(r"^DRIP_INSTANCE=(\S+)$", environment, re.MULTILINE)
    assert folder is not None, "the environment file sets DRIP_INSTANCE"
    assert re.search(rf"install -d -o drip -m 700 .*{folder[1]}`", text)


def test_the_deploy_guide_lists_every_metric_by_its_exposed_name() -> None:
    """Counters are exposed with `_total` (standards REL-13 names
    `drip_ambiguous_resends_total`)."""
    families = re.findall(
        r'(Gauge|Counter)MetricFamily\(\s*"(drip_\w+)"', (ROOT / "drip/metrics.py").read_text()
    )
    assert len(families) >= 10
    table = "\n".join(
        line
        for line in (ROOT / "docs/deploy.md").read_text().splitlines()
        if line.startswith("| `drip_")
    )
    documented = set(re.findall(r"`(drip_\w+)`", table))
    for kind, name in families:
        assert (name + "_total" if kind == "Counter" else name) in documented, name


def test_the_readme_lists_every_command() -> None:
    """The README's command table is where an operator looks first; `drip --help` and it
    must not drift apart."""
    lines = (ROOT / "README.md").read_text().splitlines()
    table = "\n".join(line for line in lines if line.startswith("| `drip "))
    listed = set(re.findall(r"`(drip [a-z -]+?)(?: [A-Z\[][^`]*)?`", table))
    assert listed == set(commands(main, "drip"))


def test_the_readme_has_the_laptop_user_run_drip_from_the_checkouts_virtualenv() -> None:
    """`make run` puts `drip` in .venv/bin, not on the PATH, and its instance folder is
    relative to where drip runs: a bare `drip admin create` fails, and run from
    elsewhere it makes a second, empty instance. Every `drip` command the README has
    the reader type (a code block, "create an account with") names .venv/bin/drip."""
    readme = " ".join((ROOT / "README.md").read_text().split())
    told = re.findall(r"(\S*drip admin create you@example\.com)", readme)
    assert told and all(
        command.endswith(".venv/bin/drip admin create you@example.com") for command in told
    ), told
    typed = [
        line
        for block in re.findall(r"```sh\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
        for line in block.splitlines()
    ]
    assert [line for line in typed if line.startswith("drip ")] == []


def commands(group: click.Group, prefix: str) -> list[str]:
    """Every runnable command under `group`, as typed: `drip keys rotate`."""
    found = []
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            found += commands(command, f"{prefix} {name}")
        else:
            found.append(f"{prefix} {name}")
    return found


DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
DELIMITER = re.compile(r"\|?\s*:?-+:?\s*(\|\s*:?-+:?\s*)*\|?\s*")


def table_blocks(doc: Path) -> list[list[str]]:
    """Runs of lines starting with "|" outside code blocks: a Markdown table each, if
    it has a header and a delimiter row. A blank line ends a table, and the rows after
    it render as a paragraph of pipes."""
    blocks: list[list[str]] = [[]]
    fenced = False
    for line in doc.read_text().splitlines():
        fenced ^= line.startswith("```")
        if line.startswith("|") and not fenced:
            blocks[-1].append(line)
        elif blocks[-1]:
            blocks.append([])
    return [block for block in blocks if block]


def cells(row: str) -> list[str]:
    return [cell.strip() for cell in re.split(r"(?<!\\)\|", row.strip().strip("|"))]


@pytest.mark.parametrize("doc", DOCS, ids=lambda doc: doc.name)
def test_every_table_has_a_header_and_rows_of_its_width(doc: Path) -> None:
    for block in table_blocks(doc):
        assert len(block) >= 2 and DELIMITER.fullmatch(block[1]), f"no header: {block[0]}"
        width = len(cells(block[0]))
        for row in block:
            assert len(cells(row)) == width, f"{doc.name}: {row}"


def test_the_readme_configuration_table_lists_every_variable() -> None:
    (table,) = [
        block
        for block in table_blocks(ROOT / "README.md")
        if cells(block[0]) == ["variable", "default", "meaning"]
    ]
    listed = " ".join(table)
    read = set(re.findall(r'"(DRIP_[A-Z0-9_]+)"', (ROOT / "drip/settings.py").read_text()))
    assert {name for name in read if f"`{name}`" not in listed} == set()


def test_no_environment_example_puts_a_comment_after_a_value() -> None:
    """systemd's EnvironmentFile= keeps `# ...` after a value as part of it (systemd
    #12527): deploy.md's example gave every footer "...Canada   # the name comes from
    DRIP_FROM" and refused every API call for an origin of 'https://www.example.com   '."""
    for doc in ("README.md", "docs/deploy.md"):
        for line in (ROOT / doc).read_text().splitlines():
            if re.match(r"(export )?DRIP_[A-Z_]+=", line):
                assert not re.search(r"\s#", line), f"{doc}: {line}"
