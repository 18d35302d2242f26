"""The package's layout in figures: one line per module, the largest modules now and at an earlier
revision, and the longest functions.

    python scripts/layout_report.py                 # the working tree
    python scripts/layout_report.py --before 227f049  # also the five largest modules at that revision

A function's own lines run from its first statement after the docstring to its end, blank and
comment lines included, less its nested functions and classes (the measure of the rule "no function
over 60 lines of its own").
"""

from __future__ import annotations

import argparse
import ast
import pathlib
import subprocess

ROOT = pathlib.Path(__file__).resolve().parent.parent


def own_lines(node: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    """Lines of a function's body, without its docstring and without nested functions and classes."""
    body = node.body
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
            and isinstance(body[0].value.value, str):
        body = body[1:]
    if not body:
        return 0
    lines, nested = set(range(body[0].lineno, (node.end_lineno or node.lineno) + 1)), set()  # blanks included
    for stmt in body:
        for sub in ast.walk(stmt):
            if isinstance(sub, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                start = min([sub.lineno] + [d.lineno for d in sub.decorator_list])
                nested.update(range(start, (sub.end_lineno or sub.lineno) + 1))
    return len(lines - nested)


def functions(tree: ast.Module):
    """``(qualified name, own lines)`` of every function and method in a module."""
    out = []

    def visit(node, prefix):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                out.append((prefix + child.name, own_lines(child)))
                visit(child, prefix + child.name + ".")
            elif isinstance(child, ast.ClassDef):
                visit(child, prefix + child.name + ".")

    visit(tree, "")
    return out


def modules_at(rev: str | None) -> dict[str, str]:
    """``{path: source}`` of every module of the package, in the working tree or at a git revision."""
    if rev is None:
        return {str(p.relative_to(ROOT)): p.read_text(encoding="utf-8")
                for p in sorted((ROOT / "nst_jax").rglob("*.py"))}
    names = subprocess.run(["git", "ls-tree", "-r", "--name-only", rev, "nst_jax"], cwd=ROOT, check=True,
                           capture_output=True, text=True).stdout.split()
    return {n: subprocess.run(["git", "show", f"{rev}:{n}"], cwd=ROOT, check=True, capture_output=True,
                              text=True).stdout for n in names if n.endswith(".py")}


def summary(source: str) -> str:
    doc = ast.get_docstring(ast.parse(source)) or ""
    return (doc.strip().splitlines() or [""])[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--before", metavar="REV", help="also list the five largest modules at this revision")
    parser.add_argument("--limit", type=int, default=60, help="flag functions with more own lines than this")
    args = parser.parse_args()
    now = modules_at(None)
    print(f"## Modules ({len(now)} files, {sum(s.count(chr(10)) for s in now.values())} lines)\n")
    print("| module | lines | what it is |\n|---|---:|---|")
    for path, source in now.items():
        print(f"| `{path}` | {source.count(chr(10))} | {summary(source)} |")
    tables = [("now", now)] + ([(args.before, modules_at(args.before))] if args.before else [])
    for label, mods in tables:
        print(f"\n## The five largest modules ({label})\n")
        for path, source in sorted(mods.items(), key=lambda kv: -kv[1].count("\n"))[:5]:
            print(f"- `{path}`: {source.count(chr(10))} lines")
    for label, mods in tables:
        found = sorted(((n, f"{p}:{name}") for p, s in mods.items() for name, n in functions(ast.parse(s))),
                       reverse=True)
        over = [f for f in found if f[0] > args.limit]
        print(f"\n## Longest functions ({label}); {len(over)} over {args.limit} own lines\n")
        for n, name in found[:5]:
            print(f"- `{name}`: {n}")


if __name__ == "__main__":
    main()
