"""The code blocks of the README and of every page of the site (docs/**/*.md), and what the tests do
with each: one rule per kind of block, so a block with no rule fails tests/test_docs.py.

Used by tests/test_readme.py (runs the library page's Python blocks from the installed wheel),
tests/test_types.py (mypy over them) and tests/test_docs.py (every block has a rule; the command
lines of the shell blocks parse with the real CLI parsers).
"""

from __future__ import annotations

import dataclasses
import pathlib
import re
import shlex
import textwrap
from collections.abc import Callable

ROOT = pathlib.Path(__file__).resolve().parents[1]
LIBRARY_PAGE = "docs/guide/library.md"  # the "Use as a library" guide
SWEEPS_PAGE = "docs/guide/sweeps.md"
FENCE = re.compile(r"^```(\w*)\n(.*?)^```[ \t]*$", re.S | re.M)
HEADING = re.compile(r"^#{1,6} (.+)$", re.M)


@dataclasses.dataclass(frozen=True)
class Block:
    """One fenced code block: its page (relative to the repository), the heading it sits under, its
    language tag and its text."""

    page: str
    heading: str
    language: str
    source: str


def pages() -> list[str]:
    """The README and every Markdown page of the site, relative to the repository root."""
    site = sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "docs").rglob("*.md"))
    return ["README.md", *site]


def page_blocks(page: str) -> list[Block]:
    """The fenced blocks of one page, in order; a heading inside a block (a Python comment) is no heading."""
    text = (ROOT / page).read_text(encoding="utf-8")
    found, heading, position = [], "", 0
    for match in FENCE.finditer(text):
        headings = HEADING.findall(text, position, match.start())
        heading = headings[-1] if headings else heading
        found.append(Block(page, heading, match.group(1), match.group(2)))
        position = match.end()
    return found


def all_blocks() -> list[Block]:
    """Every fenced block of the README and the site's pages."""
    return [block for page in pages() for block in page_blocks(page)]


def library_blocks() -> list[str]:
    """The library page's Python blocks, in order: one program, each block using the names before it."""
    return [b.source for b in page_blocks(LIBRARY_PAGE) if b.language == "python"]


def typed_source() -> str:
    """What mypy checks: the library page's Python blocks, then the sweeps page's, each the body of a
    function of its own (they use the library page's names, and reuse some for other types)."""
    sweeps = [b.source for b in page_blocks(SWEEPS_PAGE) if b.language == "python"]
    functions = [f"def sweeps_page_block_{i}() -> None:\n{textwrap.indent(s, '    ')}" for i, s in enumerate(sweeps)]
    return "\n\n".join([*library_blocks(), *functions])


def command_lines(source: str, prompt: bool = False) -> list[list[str]]:
    """The commands of a shell block, as argument lists: continuations joined, comments dropped,
    ``a && b`` split. With ``prompt``, a transcript: only the lines after a ``$ `` prompt."""
    lines = source.replace("\\\n", " ").splitlines()
    if prompt:
        lines = [line[2:] for line in lines if line.startswith("$ ")]
    commands = []
    for line in lines:
        words = shlex.split(line, comments=True)
        while words:
            cut = words.index("&&") if "&&" in words else len(words)
            commands.append(words[:cut])
            words = words[cut + 1:]
    return [c for c in commands if c]


def shell_commands(block: Block) -> list[list[str]]:
    """The commands of a shell block, or of a transcript's prompts; none for other blocks."""
    if block.language not in ("bash", "text"):
        return []
    return command_lines(block.source, prompt=block.language == "text")


RUN = ("run in order by the installed wheel outside the checkout (tests/test_readme.py) and type-checked by mypy "
       "(tests/test_types.py)")
SETUP = "not run: each installs a fresh virtual environment; .ci/run is the second on CI"
COMMANDS = ("not run: minutes to hours of compute on 2 cores; their nst-jax and nst-jax-sweep commands parse with "
            "the CLI's own parser and their scripts exist (tests/test_docs.py); the CLI tests run the options small")

# (rule, treatment), the first rule that holds decides. A new block that no rule covers fails
# tests/test_docs.py::test_every_code_block_has_a_treatment until it gets one here.
TREATMENTS: tuple[tuple[Callable[[Block], bool], str], ...] = (
    (lambda b: b.page == LIBRARY_PAGE and b.language == "python", RUN),
    (lambda b: b.page == SWEEPS_PAGE and b.language == "python",
     "type-checked by mypy after the library page's blocks (tests/test_types.py); not run: 4 members of 300 steps "
     "(tests/test_sweep.py runs nst_jax.sweep at 32-64 px)"),
    (lambda b: b.page == "README.md" and b.heading == "Set up and run" and b.language == "bash", SETUP),
    (lambda b: b.language == "bash", COMMANDS),
    (lambda b: b.language == "text", "not run: a transcript of nst-jax's output; its $ commands parse as above"),
)


def treatment(block: Block) -> str:
    """What the tests do with a block.

    Args:
        block: a fenced block of a page.

    Returns:
        The treatment's description.

    Raises:
        LookupError: no rule covers the block.
    """
    for rule, what in TREATMENTS:
        if rule(block):
            return what
    raise LookupError(f"{block.page} ({block.heading}): a {block.language or 'plain'} block no rule covers")
