"""Replace (or append) one generated section of a markdown file, leaving the rest untouched.

Several scripts write into the same docs file; each owns the text between its markers.
"""
from __future__ import annotations

from pathlib import Path


def write_section(path: Path, name: str, body: str, title: str = "") -> None:
    """Put `body` between <!-- BEGIN name --> and <!-- END name --> in `path` (made if absent)."""
    begin, end = f"<!-- BEGIN {name} -->", f"<!-- END {name} -->"
    block = f"{begin}\n{body.rstrip()}\n{end}\n"
    text = path.read_text() if path.is_file() else (f"# {title}\n\n" if title else "")
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        text = head + block + rest.split(end, 1)[1].lstrip("\n")
    else:
        text = text.rstrip("\n") + "\n\n" + block
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
