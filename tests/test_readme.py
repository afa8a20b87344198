"""The README's Quickstart is what CI runs: its two commands, in order, word for word."""

import os
import re

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _quickstart_commands() -> list[str]:
    with open(os.path.join(ROOT, "README.md")) as f:
        readme = f.read()
    section = readme.split("## Quickstart", 1)[1].split("\n## ", 1)[0]
    (block,) = re.findall(r"```bash\n(.*?)```", section, re.S)
    return [line for line in block.splitlines() if line and not line.startswith("#")]


def _ci_lines() -> list[str]:
    with open(os.path.join(ROOT, ".ci", "run")) as f:
        return [line.strip() for line in f]


def test_the_quickstart_has_two_commands_install_and_bench_then_the_tests():
    first, second = _quickstart_commands()
    assert first.endswith("pip install . && fastretro bench")
    assert "pytest" in second and 'pip install -e ".[test]"' in second


def test_ci_runs_the_quickstart_commands_in_order_in_one_clone():
    lines = _ci_lines()
    at = [lines.index(command) for command in _quickstart_commands()]
    assert at == sorted(at), "CI runs the README's commands in the README's order"
    # Both in the clone CI was started in: no cd, no second clone between them.
    between = lines[at[0] : at[1]]
    assert not any(line.startswith(("cd ", "git clone")) for line in between)
