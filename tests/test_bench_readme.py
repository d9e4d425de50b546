"""The README's performance table is ``camctl bench --markdown`` output with a row for every bench
metric key."""

from __future__ import annotations

from pathlib import Path

from camctl.bench import METRICS
from camctl.bench.harness import MARKDOWN_HEADER

README = Path(__file__).resolve().parent.parent / "README.md"


def readme_table_keys(text: str) -> list[str]:
    """The metric keys of the README table that starts with the --markdown header (empty when there
    is none)."""
    lines = text.splitlines()
    if MARKDOWN_HEADER not in lines:
        return []
    keys = []
    for line in lines[lines.index(MARKDOWN_HEADER) + 2:]:
        if not line.startswith("|"):
            break
        keys.append(line.split("|")[1].strip().strip("`"))
    return keys


def test_readme_table_has_every_bench_key() -> None:
    keys = readme_table_keys(README.read_text())
    assert keys, ("README.md has no table with the `camctl bench --markdown` header "
                  f"{MARKDOWN_HEADER!r}")
    missing = [m.key for m in METRICS if m.key not in keys]
    assert not missing, (f"README.md performance table lacks {missing}: "
                         "paste a full `camctl bench --markdown` run")
    stale = [k for k in keys if k not in {m.key for m in METRICS}]
    assert not stale, f"README.md performance table has rows no benchmark reports: {stale}"


def test_a_missing_key_is_noticed() -> None:
    text = README.read_text()
    first = METRICS[0].key
    broken = "\n".join(ln for ln in text.splitlines() if not ln.startswith(f"| `{first}`"))
    assert first not in readme_table_keys(broken)
