"""The code blocks of the README and of every page of the site (docs/**/*.md), and what the tests do
with each: one rule per kind of block, so a block with no rule fails tests/test_docs.py.

Used by tests/test_readme.py (runs the library page's Python blocks from the installed wheel),
tests/test_types.py (mypy over them) and tests/test_docs.py (every block has a rule; every command of
every shell block and transcript runs: :func:`commands`, :func:`command_kind`).
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


@dataclasses.dataclass(frozen=True)
class Command:
    """One command of a shell block, or of a transcript's ``$`` prompt with what the transcript shows it
    printing (``output``: the lines up to the next prompt; empty for a shell block)."""

    page: str
    heading: str
    argv: tuple[str, ...]
    output: str = ""
    block: int = 0  # the block's index in all_blocks(): a block's commands run in order, in one directory

    def __str__(self) -> str:
        return f"{self.page} ({self.heading}): {shlex.join(self.argv)}"


def block_commands(block: Block, index: int = 0) -> list[Command]:
    """The commands of a shell block, or of a transcript with what each printed; none for other blocks."""
    if block.language != "text":
        return [Command(block.page, block.heading, tuple(argv), block=index) for argv in shell_commands(block)]
    found = []
    for part in re.split(r"^\$ ", block.source, flags=re.M)[1:]:  # a prompt, then what it printed
        command, _, output = part.replace("\\\n", " ").partition("\n")
        found += [Command(block.page, block.heading, tuple(argv), output, index)
                  for argv in command_lines("$ " + command, prompt=True)]
    return found


def commands() -> list[Command]:
    """Every command of every shell block and transcript of the README and the site's pages, in page order."""
    return [command for i, block in enumerate(all_blocks()) for command in block_commands(block, i)]


# The only commands of the pages the tests do not run: they set up a virtual environment, install into it,
# or run the whole test suite (which runs these tests). Exact: a new command that cannot run fails
# tests/test_docs.py until it is listed here, and one that left the pages must leave the list.
NOT_RUN = {
    "python3 -m venv .venv": "creates a virtual environment",
    ". .venv/bin/activate": "activates it",
    "pip install -e '.[studio]'": "installs the package into it",
    "pip install -e '.[test]'": "installs the package and the test tools into it",
    "python -m pytest tests -n auto --dist worksteal": "the whole test suite, these tests included (.ci/run)",
}
TOOLS = ("nst-jax", "nst-jax-sweep")
HELP = ("--help", "-h", "--version")
SHELL = ("mkdir",)  # run as they are, in the block's directory


def command_kind(argv: tuple[str, ...]) -> str:
    """How tests/test_docs.py runs a documented command.

    Returns:
        ``"not run"`` (:data:`NOT_RUN`); ``"as is"`` (an ``nst-jax`` or ``nst-jax-sweep`` command asking
        for its help or version); ``"dry run"`` (any other of theirs, with ``--dry-run``: resolved and
        checked, nothing computed or written); ``"shell"`` (``mkdir``, in the block's directory);
        ``"script"`` (``python scripts/X.py``: its arguments parsed by its own parser, then its
        ``--help``); ``"studio request"`` (``curl`` to the studio: the request made to the studio's
        application, whose worker is not started).

    Raises:
        LookupError: For a command no rule covers.
    """
    if shlex.join(argv) in NOT_RUN:
        return "not run"
    if argv[0] in TOOLS:
        return "as is" if any(a in HELP for a in argv) else "dry run"
    if argv[0] in SHELL:
        return "shell"
    if argv[0] in ("python", "python3") and len(argv) > 1 and argv[1].startswith("scripts/"):
        return "script"
    if argv[0] == "curl":
        return "studio request"
    raise LookupError(f"{shlex.join(argv)}: no rule runs this command (tests/doc_blocks.py: command_kind)")


RUN = ("run in order by the installed wheel outside the checkout (tests/test_readme.py) and type-checked by mypy "
       "(tests/test_types.py)")
COMMANDS = ("every command run by tests/test_docs.py as command_kind says: nst-jax and nst-jax-sweep with --dry-run "
            "(or as is for --help and --version), scripts' arguments parsed by their own parsers, studio requests "
            "against its application; only NOT_RUN's environment commands are not run")

# (rule, treatment), the first rule that holds decides. A new block that no rule covers fails
# tests/test_docs.py::test_every_code_block_has_a_treatment until it gets one here.
TREATMENTS: tuple[tuple[Callable[[Block], bool], str], ...] = (
    (lambda b: b.page == LIBRARY_PAGE and b.language == "python", RUN),
    (lambda b: b.page == SWEEPS_PAGE and b.language == "python",
     "type-checked by mypy after the library page's blocks (tests/test_types.py); not run: 4 members of 300 steps "
     "(tests/test_sweep.py runs nst_jax.sweep at 32-64 px)"),
    (lambda b: b.language == "bash", COMMANDS),
    (lambda b: b.language == "text", "a transcript: its $ commands run as the shell blocks' do, and every file it "
                                     "says it wrote, at its size, is what their dry runs say they would write"),
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
