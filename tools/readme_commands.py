"""List or run every shell command shown in the READMEs, in a clean copy of the repository.

Why: a README whose commands no longer run is worse than none. This script takes the commands
exactly as a reader would copy them and runs them, so a renamed flag or a moved file shows up.

Which commands (how blocks are marked):

* Fenced blocks opened with ```bash, ```sh, ```shell or ```console in ``README.md`` and
  ``tasks/*/README.md``. Any other fence (```text, ```python, a bare ```) is documentation and
  is never run: use ```text for synopses with placeholders such as ``[--runtime ...]``.
* In a block, one command is the shortest run of lines that bash parses as complete (``bash -n``):
  backslash continuations, multi-line quoted strings, heredocs and loops are one command.
  Comment lines between commands are dropped. In ```console blocks only lines that start with
  ``$ `` are commands (the prompt is stripped); the other lines are output.
* ``<!-- readme-commands: skip (why) -->`` on the line before the fence (blank lines may sit
  between) marks every command of that block as skipped: listed, never run. Use it for commands
  that need ``../shared`` data, a network, a long training, or a server that runs until stopped
  (TensorBoard).

How they run: for each README, the repository's files (``git ls-files``: tracked and
untracked-but-not-ignored) are copied to a fresh temporary directory, as a reader starting from a
clean clone would have them; each command of that README runs there with ``bash -o pipefail``, in
order (top README first, then the task READMEs), with a timeout. ``lstm-suite`` on ``PATH`` is a
shim for ``python -m tasks.common.cli`` with the copy on ``PYTHONPATH``, so the commands test this
checkout rather than whatever is installed. ``pip install ...`` commands are skipped unless
``--run-install`` (they would change the environment this script runs in). A shell variable set
by a command of its own (``DATA=...``) is carried to the later commands of the same README.

Example:
    python tools/readme_commands.py --list
    nice -n 10 python tools/readme_commands.py --file README.md --section Quickstart --timeout 1200
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SHELL_LANGUAGES = {"bash", "sh", "shell", "console"}
SKIP_MARKER = re.compile(r"<!--\s*readme-commands:\s*skip\b\s*(.*?)\s*-->")
FENCE = re.compile(r"^\s*(`{3,}|~{3,})\s*([\w+-]*)")
HEREDOC = re.compile(r"<<-?\s*(['\"]?)([A-Za-z_][A-Za-z0-9_]*)\1")
ASSIGNMENT = re.compile(r"^(export\s+)?[A-Za-z_][A-Za-z0-9_]*=\S*$")


@dataclass(frozen=True)
class Block:
    """One fenced block of a README: its language, first content line (1-based) and lines."""

    file: str
    line: int
    language: str
    lines: tuple[str, ...]
    skip: str | None  # the marker's reason ("" without one); None: not marked
    heading: str


@dataclass(frozen=True)
class Command:
    """One shell command as a reader would copy it, with where it came from."""

    file: str
    line: int
    text: str
    skip: str | None
    heading: str


def readme_files(root: Path = ROOT) -> list[Path]:
    """The READMEs whose commands count: the top one, then each task's, sorted."""
    return [root / "README.md", *sorted(root.glob("tasks/*/README.md"))]


def fenced_blocks(text: str, file: str = "README.md") -> list[Block]:
    """Every fenced block (any language) of a Markdown text, with its skip marker and heading."""
    blocks, lines = [], text.split("\n")
    heading, marker, i = "", None, 0
    while i < len(lines):
        line = lines[i]
        fence = FENCE.match(line)
        if not fence:
            if line.startswith("#"):
                heading = line.lstrip("#").strip()
            found = SKIP_MARKER.search(line)
            if found:
                marker = found.group(1).strip("() ")
            elif line.strip():
                marker = None
            i += 1
            continue
        opener, body, i = fence.group(1), [], i + 1
        start = i + 1
        while i < len(lines) and not lines[i].strip().startswith(opener):
            body.append(lines[i])
            i += 1
        blocks.append(Block(file, start, fence.group(2).lower(), tuple(body), marker, heading))
        marker, i = None, i + 1
    return blocks


def _complete(snippet: str) -> bool:
    """Whether bash would run ``snippet`` as it stands (no open quote, loop, heredoc or ``\\``)."""
    if snippet.rstrip().endswith("\\"):
        return False
    lines = snippet.split("\n")
    for number, line in enumerate(lines):
        for match in HEREDOC.finditer(line):
            if match.group(2) not in (rest.strip() for rest in lines[number + 1:]):
                return False
    checked = subprocess.run(["bash", "-n"], input=snippet, text=True, capture_output=True)
    return checked.returncode == 0


def block_commands(block: Block) -> list[Command]:
    """The commands of one shell block (see the module docstring for what one command is)."""
    if block.language not in SHELL_LANGUAGES:
        return []
    commands, pending, first = [], [], 0
    for offset, raw in enumerate(block.lines):
        line = raw
        if block.language == "console":
            if not pending and not line.startswith("$ "):
                continue
            line = line[2:] if line.startswith("$ ") else line
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if not pending:
            first = block.line + offset
        pending.append(line)
        snippet = "\n".join(pending)
        if _complete(snippet):
            commands.append(Command(block.file, first, snippet, block.skip, block.heading))
            pending = []
    if pending:
        raise ValueError(f"{block.file}:{first}: incomplete shell command at the end of its block")
    return commands


def readme_commands(root: Path = ROOT, files: list[Path] | None = None) -> list[Command]:
    """Every shell command of the READMEs, in reading order."""
    commands = []
    for path in files or readme_files(root):
        name = str(path.resolve().relative_to(root.resolve())) if path.is_absolute() else str(path)
        for block in fenced_blocks((root / name).read_text(encoding="utf-8"), name):
            commands.extend(block_commands(block))
    return commands


def copy_repository(root: Path, target: Path) -> None:
    """Copy the files a fresh clone would have (git's view; everything but caches otherwise)."""
    listed = subprocess.run(["git", "ls-files", "-z", "-co", "--exclude-standard"], cwd=root,
                            capture_output=True)
    if listed.returncode != 0:
        shutil.copytree(root, target, dirs_exist_ok=True, symlinks=True,
                        ignore=shutil.ignore_patterns(".git", "__pycache__", "saved_models"))
        return
    for name in filter(None, listed.stdout.decode().split("\0")):
        source = root / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name, follow_symlinks=False)


def _environment(copy: Path, scratch: Path) -> dict:
    """PATH with an ``lstm-suite`` shim for the copy's code first, PYTHONPATH = the copy."""
    bin_dir = scratch / "bin"
    bin_dir.mkdir(exist_ok=True)
    shim = bin_dir / "lstm-suite"
    shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m tasks.common.cli "$@"\n')
    shim.chmod(0o755)
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(bin_dir), str(Path(sys.executable).parent), env.get("PATH", "")])
    env["PYTHONPATH"] = str(copy)
    return env


def run_command(text: str, cwd: Path, env: dict, timeout: float) -> tuple[str, float, str]:
    """Run one command with bash; returns (PASS|FAIL|TIMEOUT, seconds, the output's tail)."""
    started = time.monotonic()
    process = subprocess.Popen(["bash", "-o", "pipefail", "-c", text], cwd=cwd, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               start_new_session=True)
    try:
        output, _ = process.communicate(timeout=timeout)
        status = "PASS" if process.returncode == 0 else f"FAIL (exit {process.returncode})"
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        output, _ = process.communicate()
        status = "TIMEOUT"
    tail = "\n".join((output or "").strip().split("\n")[-15:])
    return status, time.monotonic() - started, tail


def _skip_reason(command: Command, run_install: bool) -> str | None:
    """Why a command is not run (None: run it)."""
    if command.skip is not None:
        return f"marked: {command.skip}" if command.skip else "marked"
    if not run_install and re.match(r"\s*pip3?\s+install\b", command.text):
        return "pip install (use --run-install)"
    return None


def run_all(commands: list[Command], root: Path, timeout: float, run_install: bool = False,
            keep: bool = False, out=sys.stdout) -> int:
    """Run the commands, each README's in a fresh copy of ``root``; one line per command; failures."""
    scratch = Path(tempfile.mkdtemp(prefix="readme-commands-"))
    failures, copies, carried = 0, {}, {}
    for command in commands:
        where = f"{command.file}:{command.line}"
        first_line = command.text.split("\n")[0]
        reason = _skip_reason(command, run_install)
        if reason:
            print(f"SKIP     {where}  {first_line}  [{reason}]", file=out, flush=True)
            continue
        if command.file not in copies:
            copy = scratch / f"repo{len(copies)}"
            copy.mkdir()
            copy_repository(root, copy)
            copies[command.file] = (copy, _environment(copy, scratch))
            print(f"{command.file}: running in {copy}", file=out, flush=True)
        copy, env = copies[command.file]
        prelude = "".join(f"{line}\n" for line in carried.get(command.file, []))
        status, seconds, tail = run_command(prelude + command.text, copy, env, timeout)
        print(f"{status:<8} {where}  {first_line}  ({seconds:.0f} s)", file=out, flush=True)
        if status != "PASS":
            failures += 1
            print("    " + tail.replace("\n", "\n    "), file=out, flush=True)
        elif ASSIGNMENT.match(command.text.strip()):
            carried.setdefault(command.file, []).append(command.text.strip())
    if not keep:
        shutil.rmtree(scratch, ignore_errors=True)
    return failures


def select(commands: list[Command], section: str | None, match: str | None) -> list[Command]:
    """The commands under a heading matching ``section`` and/or whose text matches ``match``."""
    return [c for c in commands
            if (section is None or re.search(section, c.heading, re.IGNORECASE))
            and (match is None or re.search(match, c.text))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--list", action="store_true", help="print the commands, run nothing")
    parser.add_argument("--file", action="append", type=Path,
                        help="a README relative to the repository (repeatable; default: all)")
    parser.add_argument("--section", help="only blocks under a heading matching this regex")
    parser.add_argument("--match", help="only commands matching this regex")
    parser.add_argument("--timeout", type=float, default=900, help="seconds per command (default: 900)")
    parser.add_argument("--run-install", action="store_true", help="run `pip install` commands too")
    parser.add_argument("--keep", action="store_true", help="keep the temporary copy")
    parser.add_argument("--root", type=Path, default=ROOT, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    commands = select(readme_commands(args.root, args.file), args.section, args.match)
    if args.list:
        for command in commands:
            mark = "skip" if _skip_reason(command, args.run_install) else "run "
            print(f"{mark} {command.file}:{command.line}  {command.text}")
        return 0
    failures = run_all(commands, args.root, args.timeout, args.run_install, args.keep)
    print(f"{failures} failed" if failures else "all passed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
