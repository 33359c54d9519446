"""The README's configuration table lists every setting, so docs cannot drift from code."""

from __future__ import annotations

from pathlib import Path

from runkernel.config import Settings

README = Path(__file__).resolve().parents[2] / "README.md"


def test_every_setting_is_documented() -> None:
    text = README.read_text()
    missing = [
        f"RUNKERNEL_{name.upper()}"
        for name in Settings.model_fields
        if f"`RUNKERNEL_{name.upper()}`" not in text
    ]
    assert not missing, f"README configuration table lacks {missing}"


def test_readme_starts_with_the_two_commands() -> None:
    text = README.read_text()
    assert text.index("make demo") < text.index("## A five-minute tour")
    assert text.index("make test") < text.index("## A five-minute tour")
