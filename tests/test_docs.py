"""The commands and files the user docs name still exist: every `pricetune ...` command in README.md,
docs/*.md, docs/results/*/README.md and the package's module docstrings parses with today's command
line, every shipped config it names exists, and every script or result file named by its path from the
repository root is there.

    pytest tests/test_docs.py

docs/results/history.md is a log of what ran then, with options that have since left: not checked.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import io
import re
import shlex
from pathlib import Path

import pytest

from pricetune.cli import build_parser
from pricetune.config import CONFIG_DIR

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), *sorted(ROOT.glob("docs/results/*/README.md"))]
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.DOTALL | re.MULTILINE)
SHELL = {"", "bash", "sh", "console"}
# a path from the repository root, as the docs name scripts and result files
PATH = re.compile(r"(?<![\w./-])(?:docs|bench|tests|pricetune|configs)/[\w./{},*-]+(?:\.\w+|\})")
SCRIPT = re.compile(r"\.(sh|py)$")
SEPARATORS = {";", "&&", "||", "|", "&", "(", ")", "do", "then"}


def shell_commands(text: str) -> list[list[str]]:
    """The simple commands of shell text: continuation lines joined, comments dropped, split at ; && | and
    at a loop's `do`, each as its words."""
    commands = []
    for line in text.replace("\\\n", " ").splitlines():
        lexer = shlex.shlex(line, posix=True, punctuation_chars=";&|()")
        lexer.whitespace_split = True
        lexer.commenters = "#"
        current: list[str] = []
        try:
            for word in lexer:
                if word in SEPARATORS:
                    commands.append(current)
                    current = []
                else:
                    current.append(word)
        except ValueError:  # an unclosed quote: prose, or a command that would not run as written
            current = ["pricetune", "<unclosed quote>", line] if "pricetune" in line else []
        commands.append(current)
    return [c for c in commands if c]


def pricetune_argv(words: list[str]) -> list[str] | None:
    """The arguments after `pricetune` (also `python -m pricetune`, `torchrun ... -m pricetune --`), with
    each shell variable ($N, $D) standing for a plain value."""
    for i, word in enumerate(words):
        if word == "pricetune" and (i == 0 or words[i - 1] == "-m"):
            rest = words[i + 1:]
            if rest[:1] == ["--"]:
                rest = rest[1:]
            return [re.sub(r"\$\{?\w+\}?", "1", w) for w in rest]
    return None


def fenced_and_inline(text: str) -> tuple[list[str], list[str]]:
    """The code blocks of a markdown page, and its inline code spans (paired in order, outside the blocks)."""
    blocks = [body for language, body in FENCE.findall(text) if language in SHELL]
    spans = re.findall(r"`([^`\n]+)`", FENCE.sub("", text))
    return blocks, spans


def docstring_commands() -> list[tuple[str, str]]:
    """The commands module docstrings give to copy: their lines that start with a command."""
    found = []
    for module in sorted((ROOT / "pricetune").rglob("*.py")):
        doc = ast.get_docstring(ast.parse(module.read_text())) or ""
        for line in doc.splitlines():
            if line.strip().startswith(("pricetune ", "python -m pricetune ", "torchrun ")):
                found.append((str(module.relative_to(ROOT)), line.strip()))
    return found


def documented_commands(fenced: bool) -> list[tuple[str, list[str]]]:
    """Each `pricetune ...` command of the docs' code blocks and module docstrings (fenced), or of the docs'
    inline code spans (not fenced)."""
    found = []
    if fenced:
        for where, line in docstring_commands():
            for words in shell_commands(line):
                argv = pricetune_argv(words)
                if argv:
                    found.append((f"{where}: pricetune {shlex.join(argv)}", argv))
    for doc in DOCS:
        blocks, spans = fenced_and_inline(doc.read_text())
        for block in blocks if fenced else [s for s in spans if s.startswith("pricetune ")]:
            for words in shell_commands(block):
                argv = pricetune_argv(words)
                if argv:
                    found.append((f"{doc.relative_to(ROOT)}: pricetune {shlex.join(argv)}", argv))
    return found


def subparser(name: str):
    parser, _ = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return commands.choices.get(name)


def test_the_docs_name_commands_of_every_kind():
    commands = {argv[0] for _, argv in documented_commands(fenced=True) if argv}
    assert {"train", "evaluate", "select", "predict", "serve", "export", "prepare", "push"} <= commands


@pytest.mark.parametrize("where,argv", documented_commands(fenced=True), ids=lambda x: x if isinstance(x, str) else "")
def test_every_command_in_a_code_block_parses(where, argv):
    """A code block is meant to be pasted: the whole command parses, required arguments included."""
    parser, _ = build_parser()
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            ns, extra = parser.parse_known_args(argv)
    except SystemExit:
        pytest.fail(f"{where}\n{err.getvalue()}")
    assert not extra, f"{where}: not options of {argv[0]}: {extra}"
    config = getattr(ns, "config", None)
    if config and re.fullmatch(r"[a-z0-9-]+", config):
        assert (CONFIG_DIR / f"{config}.yaml").exists(), f"{where}: no shipped config {config}"


def test_no_code_block_holds_an_angle_bracket_placeholder():
    """`runs/<run>` pasted into bash is a redirection from a file named run: a code block names a real
    path (runs/mine) or a word in capitals (RUN_DIR)."""
    found = []
    for doc in DOCS:
        blocks, _ = fenced_and_inline(doc.read_text())
        for line in "\n".join(blocks).splitlines():
            bare = re.sub(r"'[^']*'|\"[^\"]*\"", "", line).split(" #")[0]
            if re.search(r"<\w[^>\s]*>", bare):
                found.append(f"{doc.relative_to(ROOT)}: {line.strip()}")
    assert not found, "\n".join(found)


@pytest.mark.parametrize("where,argv", documented_commands(fenced=False), ids=lambda x: x if isinstance(x, str) else "")
def test_every_option_named_inline_is_an_option_of_its_command(where, argv):
    """Prose names a command and some of its options (`pricetune train --preset lite`): each exists."""
    command = subparser(argv[0])
    assert command is not None, f"{where}: no command {argv[0]}"
    for word in argv[1:]:
        if word.startswith("--"):
            assert word.split("=")[0] in command._option_string_actions, f"{where}: {argv[0]} has no {word}"


def named_paths() -> list[tuple[str, str]]:
    """Paths from the repository root: every one named in prose, and the scripts a code block runs (a
    code block's other paths may be what its command writes)."""
    found = []
    for doc in DOCS:
        text = doc.read_text()
        blocks = "\n".join(body for _, body in FENCE.findall(text))
        for path in PATH.findall(FENCE.sub("", text)) + [p for p in PATH.findall(blocks) if SCRIPT.search(p)]:
            found.append((str(doc.relative_to(ROOT)), path.rstrip(".,")))
    return found


def expand(path: str) -> list[str]:
    """`a-{x,y}.json` names a-x.json and a-y.json."""
    m = re.search(r"\{([^{}]*)\}", path)
    if not m:
        return [path]
    return [p for part in m.group(1).split(",") for p in expand(path[:m.start()] + part + path[m.end():])]


def test_every_file_the_docs_name_from_the_repository_root_exists():
    missing = []
    for doc, path in named_paths():
        for one in expand(path):
            if not list(ROOT.glob(one)):
                missing.append(f"{doc}: {one}")
    assert not missing, "\n".join(missing)


def test_every_python_block_names_what_the_package_has():
    """The docs' Python: each name it imports exists, and each method it calls on a Pricer (`Pricer.x`,
    `pricer.x`, `.from_x(` in a comment) is one."""
    import importlib

    from pricetune.inference import Pricer

    missing = []
    for doc in DOCS:
        for language, body in FENCE.findall(doc.read_text()):
            if language != "python":
                continue
            tree = ast.parse(body)
            # the constructors a comment offers too (`# or .from_ensemble(...)`)
            comments = "\n".join(line.split("#", 1)[1] for line in body.splitlines() if "#" in line)
            missing += [f"{doc.name}: Pricer.{name}" for name in re.findall(r"\.(from_\w+)\(", comments)
                        if not hasattr(Pricer, name)]
            for node in ast.walk(tree):
                if isinstance(node, ast.ImportFrom) and node.module:
                    module = importlib.import_module(node.module)
                    missing += [f"{doc.name}: {node.module}.{a.name}" for a in node.names if not hasattr(module, a.name)]
                if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) \
                        and node.value.id.lower() == "pricer" and not hasattr(Pricer, node.attr):
                    missing.append(f"{doc.name}: Pricer.{node.attr}")
    assert not missing, "\n".join(missing)
