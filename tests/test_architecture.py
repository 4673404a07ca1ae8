"""The layering rules, read from the source: which package may import which, and no import cycles.

- api/ reaches the engine only through `engine.interface`;
- engine/ imports neither the HTTP layer, the encoders, the settings nor the entry point;
- wavstream/ imports neither the HTTP layer nor the engine;
- only engine/genie.py imports `genie_tts` (the benchmark, which measures Genie itself, is outside these rules);
- inside engine/, each stage imports only the stages before it (`ENGINE_STAGES`): the text front end and the
  models and runtimes know nothing of voices or synthesis, voices nothing of synthesis;
- serving imports no offline tool: nothing outside engine/tools/ imports it (the demo voices are built by
  `python -m engine.tools.demo` in a child process);
- no two modules import each other, directly or around a longer circle.

Every import statement counts, also those inside functions: a late import is still a dependency.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.server_process import ROOT

CHECKED = ("api", "engine", "wavstream", "server.py", "settings.py")
#: Each stage of engine/ -> the other parts of engine/ it may import (besides itself). engine/interface.py, the seam,
#: may import them all; engine/genie.py (the Genie gateway), engine/allocator.py and engine/envflags.py none.
ENGINE_STAGES = {
    "engine.text": {"engine.genie"},
    "engine.models": {"engine.genie"},
    "engine.voices": {"engine.genie", "engine.allocator", "engine.text", "engine.models"},
    "engine.synthesis": {"engine.genie", "engine.allocator", "engine.text", "engine.models", "engine.voices"},
}
#: No function in these is longer than this many lines: a longer one is several jobs in one.
LONGEST_FUNCTION = 80


def part_of(module: str, parts: set[str] | dict[str, set[str]]) -> str | None:
    return next((part for part in parts if module == part or module.startswith(part + ".")), None)


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def project_modules(root: Path) -> dict[str, Path]:
    modules: dict[str, Path] = {}
    for entry in CHECKED:
        path = root / entry
        for file in [path] if path.suffix == ".py" else sorted(path.rglob("*.py")):
            modules[module_name(file, root)] = file
    return modules


def imports_of(path: Path, name: str, modules: dict[str, Path]) -> set[str]:
    """Every module `path` imports: project modules by their full name, others by their top-level name."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:  # `from engine import genie` imports the module engine.genie
                candidate = f"{base}.{alias.name}"
                found.add(candidate if candidate in modules else base)
    return {module if module in modules else module.split(".")[0] for module in found}


def import_graph(root: Path) -> dict[str, set[str]]:
    modules = project_modules(root)
    return {name: imports_of(path, name, modules) for name, path in modules.items()}


def layering_violations(graph: dict[str, set[str]]) -> list[str]:
    problems = []
    for module, imported in sorted(graph.items()):
        for target in sorted(imported):
            if module.startswith("api") and target.startswith("engine") and target != "engine.interface":
                problems.append(f"{module} imports {target}: the HTTP layer uses engine.interface only")
            if module.startswith("engine") and target.split(".")[0] in {"api", "wavstream", "settings", "server"}:
                problems.append(f"{module} imports {target}: the engine knows nothing of the layers above it")
            if module.startswith("wavstream") and target.split(".")[0] in {"api", "engine", "settings", "server"}:
                problems.append(f"{module} imports {target}: the encoders know nothing of the request or the engine")
            if target == "genie_tts" and module != "engine.genie":
                problems.append(f"{module} imports genie_tts: engine/genie.py is its only gateway")
            if target.startswith("engine.tools") and not module.startswith("engine.tools"):
                problems.append(f"{module} imports {target}: serving imports no offline tool")
            stage = part_of(module, ENGINE_STAGES)
            if stage and target.startswith("engine.") and not target.startswith(stage):
                if part_of(target, ENGINE_STAGES[stage]) is None and not target.startswith("engine.tools"):
                    problems.append(f"{module} imports {target}: {stage} may import only {sorted(ENGINE_STAGES[stage])}")
    return problems


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Each import circle once, as the modules along it (a package importing its own submodules is no circle)."""
    found: list[list[str]] = []
    seen: set[frozenset[str]] = set()

    def visit(start: str, module: str, path: list[str]) -> None:
        for target in sorted(graph.get(module, ())):
            if target not in graph or target == module or module.startswith(target + "."):
                continue
            if target == start:
                if frozenset(path) not in seen:
                    seen.add(frozenset(path))
                    found.append([*path, start])
            elif target not in path and target > start:  # each circle is found from its smallest module
                visit(start, target, [*path, target])

    for module in sorted(graph):
        visit(module, module, [module])
    return found


def test_layers_import_only_what_they_may() -> None:
    assert layering_violations(import_graph(ROOT)) == []


def test_no_two_modules_import_each_other() -> None:
    assert cycles(import_graph(ROOT)) == []


def test_the_graph_sees_the_imports_that_matter() -> None:
    """The checks above pass on the real tree only if the graph is read right; pin a few known edges."""
    graph = import_graph(ROOT)
    assert "engine.interface" in graph["api.speech"]
    assert "wavstream.output" in graph["api.speech"]
    assert "genie_tts" in graph["engine.genie"]
    assert "engine.genie" in graph["engine.text.g2p"]  # `from engine import genie`
    assert "engine.voices.demo_voices" in graph["engine.voices.startup"]  # `from engine.voices import demo_voices`
    assert "engine.voices.voice" in graph["engine.synthesis.speech"]
    assert "engine.envflags" in graph["settings"] and "engine.envflags" in graph["engine.tools.prepare"]


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        ({"api/x.py": "from engine.voices.voice import Voice\n"}, "api.x imports engine.voices.voice"),
        ({"api/x.py": "def f():\n    from engine.synthesis import vocoding\n"}, "api.x imports engine.synthesis.vocoding"),
        ({"engine/x.py": "import wavstream.output\n"}, "engine.x imports wavstream.output"),
        ({"engine/tools/x.py": "from settings import Settings\n"}, "engine.tools.x imports settings"),
        ({"engine/x.py": "from ..api import app\n"}, "engine.x imports api.app"),
        ({"engine/x.py": "from genie_tts.G2P import SymbolsV2\n"}, "engine.x imports genie_tts"),
        ({"wavstream/x.py": "from engine.interface import SAMPLE_RATE\n"}, "wavstream.x imports engine.interface"),
        ({"engine/voices/x.py": "from engine.tools import demo\n"}, "engine.voices.x imports engine.tools.demo"),
        ({"server.py": "import engine.tools.demo\n"}, "server imports engine.tools.demo"),
        ({"engine/text/x.py": "from engine.models.sessions import y\n"}, "engine.text.x imports engine.models.sessions"),
        ({"engine/models/x.py": "from engine.voices.voice import Voice\n"}, "engine.models.x imports engine.voices.voice"),
        (
            {"engine/voices/x.py": "def f():\n    from engine.synthesis import speech\n"},
            "engine.voices.x imports engine.synthesis.speech",
        ),
    ],
)
def test_a_forbidden_import_is_reported(tmp_path: Path, files: dict[str, str], expected: str) -> None:
    tree = {**SKELETON, **files}
    write_tree(tmp_path, tree)
    assert any(problem.startswith(expected) for problem in layering_violations(import_graph(tmp_path))), expected


def test_a_circle_is_reported(tmp_path: Path) -> None:
    write_tree(
        tmp_path,
        {
            **SKELETON,
            "engine/a.py": "from engine.b import x\n",
            "engine/b.py": "def f():\n    from engine import c\n",
            "engine/c.py": "import engine.a\n",
        },
    )
    assert cycles(import_graph(tmp_path)) == [["engine.a", "engine.b", "engine.c", "engine.a"]]
    write_tree(tmp_path, {"engine/c.py": "x = 1\n"})
    assert cycles(import_graph(tmp_path)) == []


SKELETON = {
    "api/__init__.py": "",
    "api/app.py": "",
    "engine/__init__.py": "",
    "engine/interface.py": "",
    "engine/voices/voice.py": "",
    "engine/synthesis/vocoding.py": "",
    "engine/tools/__init__.py": "",
    "engine/tools/demo.py": "",
    "engine/text/__init__.py": "",
    "engine/models/__init__.py": "",
    "engine/models/sessions.py": "",
    "engine/voices/__init__.py": "",
    "engine/synthesis/__init__.py": "",
    "engine/synthesis/speech.py": "",
    "wavstream/__init__.py": "",
    "wavstream/output.py": "",
    "server.py": "",
    "settings.py": "",
}


def write_tree(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text, encoding="utf-8")


def long_functions(root: Path) -> list[str]:
    found = []
    for path in sorted(file for part in ("api", "engine", "wavstream") for file in (root / part).rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = (node.end_lineno or node.lineno) - node.lineno + 1
                if lines > LONGEST_FUNCTION:
                    found.append(f"{path.relative_to(root)}:{node.lineno} {node.name}: {lines} lines")
    return found


def test_no_function_is_longer_than_the_limit() -> None:
    assert long_functions(ROOT) == []


def test_a_long_function_is_reported(tmp_path: Path) -> None:
    body = "".join(f"    x{n} = {n}\n" for n in range(LONGEST_FUNCTION))
    write_tree(
        tmp_path, {"api/a.py": f"def short():\n    pass\n\n\ndef long():\n{body}", "engine/b.py": "", "wavstream/c.py": ""}
    )
    assert long_functions(tmp_path) == [f"api/a.py:5 long: {LONGEST_FUNCTION + 1} lines"]
