"""tools/readme_commands.py and the READMEs it reads: extraction, skip markers, length, links.

Runs no README command (the trainings take minutes); only `echo`/`false` in a scratch copy.
"""

import importlib.util
import io
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _load_tool():
    """tools/readme_commands.py as a module (registered first: its dataclasses look it up)."""
    spec = importlib.util.spec_from_file_location("readme_commands", ROOT / "tools" / "readme_commands.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("readme_commands", module)
    spec.loader.exec_module(module)
    return module


rc = _load_tool()

SAMPLE = """# Title

```bash
echo one   # a comment after it
# a comment line
lstm-suite x train --data a \\
    --out b
python - <<'PY'
print("in a heredoc")
PY
for v in a b; do
  echo $v
done
```

```text
lstm-suite <task> train [--flags ...]
```

## Skipped
<!-- readme-commands: skip (needs ../shared data) -->

```sh
lstm-suite x train --data ../shared/data/x
```

```console
$ echo shown
shown
```
"""


def _markdown_files():
    """Every README of the repository and every page under docs/ (what users follow links in)."""
    readmes = [p for p in ROOT.rglob("README.md") if ".git" not in p.parts and "saved_models" not in p.parts]
    return sorted(readmes) + sorted((ROOT / "docs").rglob("*.md"))


def test_extraction_of_a_sample_readme():
    blocks = rc.fenced_blocks(SAMPLE)
    assert [b.language for b in blocks] == ["bash", "text", "sh", "console"]
    commands = [c for b in blocks for c in rc.block_commands(b)]
    assert [c.text for c in commands] == [
        "echo one   # a comment after it",
        "lstm-suite x train --data a \\\n    --out b",
        "python - <<'PY'\nprint(\"in a heredoc\")\nPY",
        "for v in a b; do\n  echo $v\ndone",
        "lstm-suite x train --data ../shared/data/x",
        "echo shown",
    ]
    assert [c.line for c in commands] == [4, 6, 8, 11, 24, 28]
    assert [c.skip for c in commands] == [None, None, None, None, "needs ../shared data", None]
    assert commands[4].heading == "Skipped"


def test_an_unfinished_command_is_an_error():
    block = rc.fenced_blocks("```bash\necho 'open quote\n```\n")[0]
    with pytest.raises(ValueError, match="incomplete shell command"):
        rc.block_commands(block)


@pytest.mark.parametrize("readme", rc.readme_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_shell_block_of_the_readmes_is_found(readme):
    text = readme.read_text(encoding="utf-8")
    fences = re.findall(r"^```(bash|sh|shell|console)\s*$", text, flags=re.M)
    blocks = [b for b in rc.fenced_blocks(text) if b.language in rc.SHELL_LANGUAGES]
    assert len(blocks) == len(fences)
    assert all(rc.block_commands(b) for b in blocks), "a shell block without a command"


def test_commands_that_need_shared_data_or_a_server_are_marked_skip():
    runnable = [c for c in rc.readme_commands() if c.skip is None]
    assert runnable, "the READMEs show no runnable command"
    offending = [f"{c.file}:{c.line}" for c in runnable
                 if "../shared" in c.text or c.text.startswith(("tensorboard", "pip install -e '.[test]'"))]
    assert not offending, f"needs a skip marker: {offending}"


def test_the_quickstart_keeps_the_ci_test_line():
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    line = "pip install -e '.[test]' && python -m pytest -q"
    assert line in ci
    assert line in [c.text for c in rc.readme_commands(files=[Path("README.md")])]


def test_top_readme_is_at_most_200_lines():
    assert len((ROOT / "README.md").read_text(encoding="utf-8").splitlines()) <= 200


@pytest.mark.parametrize("page", _markdown_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(page):
    text = re.sub(r"```.*?```", "", page.read_text(encoding="utf-8"), flags=re.S)
    text = re.sub(r"`[^`\n]*`", "", text)
    broken = []
    for target in re.findall(r"\[[^\]]*\]\(([^)\s]+)\)", text):
        if re.match(r"[a-z][a-z0-9+.-]*:", target) or target.startswith("#"):
            continue
        if not (page.parent / target.split("#")[0]).exists():
            broken.append(target)
    assert not broken


def test_list_mode_prints_every_command(capsys):
    assert rc.main(["--list", "--file", "README.md"]) == 0
    printed = capsys.readouterr().out
    for command in rc.readme_commands(files=[Path("README.md")]):
        assert command.text in printed


def test_run_mode_reports_pass_fail_skip_and_carries_variables(tmp_path):
    (tmp_path / "README.md").write_text(
        "```bash\nNAME=world\necho hello $NAME | grep -q world\nfalse | cat\npip install nothing\n```\n"
        "<!-- readme-commands: skip (slow) -->\n```bash\nsleep 100\n```\n"
        "```bash\nsleep 5\n```\n")
    commands = rc.readme_commands(tmp_path, [Path("README.md")])
    out = io.StringIO()
    failures = rc.run_all(commands, tmp_path, timeout=1, out=out)
    report = out.getvalue()
    assert re.search(r"PASS\s+README.md:3", report)            # $NAME carried from line 2
    assert re.search(r"FAIL \(exit 1\)\s+README.md:4", report)  # pipefail: false | cat fails
    assert re.search(r"SKIP\s+README.md:5 .*pip install", report)
    assert re.search(r"SKIP\s+README.md:9 .*marked: slow", report)
    assert re.search(r"TIMEOUT\s+README.md:12", report)
    assert failures == 2


def test_each_readme_runs_in_a_fresh_copy(tmp_path):
    (tmp_path / "README.md").write_text("```bash\nmkdir made && touch made/x\n```\n")
    (tmp_path / "tasks" / "a").mkdir(parents=True)
    (tmp_path / "tasks" / "a" / "README.md").write_text("```bash\nmkdir made\n```\n")
    commands = rc.readme_commands(tmp_path)
    assert [c.file for c in commands] == ["README.md", "tasks/a/README.md"]
    assert rc.run_all(commands, tmp_path, timeout=10, out=io.StringIO()) == 0
