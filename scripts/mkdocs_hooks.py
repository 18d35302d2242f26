"""MkDocs hooks (mkdocs.yml ``hooks:``): the site's front page is README.md, and CHANGELOG.md joins the
nav when the repository has one.

The README is written for GitHub, where its links start at the repository root (``docs/guide/cli.md``,
``docs/gallery.jpg``); the site's pages start at ``docs/``. The front page is the README with that
prefix taken off its links, generated at build time, so there is one text to maintain.
"""

from __future__ import annotations

import pathlib
import re

from mkdocs.config.defaults import MkDocsConfig
from mkdocs.structure.files import File, Files

ROOT = pathlib.Path(__file__).resolve().parents[1]
# A Markdown link or image target that starts with docs/: "](docs/..." -> "](...".
DOCS_LINK = re.compile(r"\]\(docs/")
# The repository-root files that are pages of the site, and their names there.
ROOT_PAGES = {"README.md": "index.md", "CHANGELOG.md": "changelog.md"}
ROOT_PAGE_LINK = re.compile(r"\]\((README\.md|CHANGELOG\.md)(?=[)#])")


def front_page(readme: str) -> str:
    """A repository-root page's text (README.md, CHANGELOG.md) with its links made relative to the site's
    root: ``docs/`` taken off, README.md and CHANGELOG.md named as their site pages.

    Args:
        readme: the file's text.

    Returns:
        The text of its page on the site.
    """
    text = DOCS_LINK.sub("](", readme)
    return ROOT_PAGE_LINK.sub(lambda m: f"]({ROOT_PAGES[m.group(1)]}", text)


def on_config(config: MkDocsConfig) -> MkDocsConfig:
    """Adds CHANGELOG.md to the nav when the repository has one.

    Args:
        config: the site's configuration.

    Returns:
        The configuration, with a "Changelog" entry last in the nav if CHANGELOG.md exists.
    """
    if (ROOT / "CHANGELOG.md").is_file() and config.nav is not None:
        config.nav.append({"Changelog": "changelog.md"})
    return config


def on_files(files: Files, config: MkDocsConfig) -> Files:
    """Adds the generated pages: ``index.md`` from README.md, ``changelog.md`` from CHANGELOG.md.

    Args:
        files: the files MkDocs found under ``docs/``.
        config: the site's configuration.

    Returns:
        The files with the generated pages added.
    """
    files.append(File.generated(config, "index.md", content=front_page((ROOT / "README.md").read_text("utf-8"))))
    changelog = ROOT / "CHANGELOG.md"
    if changelog.is_file():
        files.append(File.generated(config, "changelog.md", content=front_page(changelog.read_text("utf-8"))))
    return files
