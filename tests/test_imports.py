"""The project's module graph: no import cycles, and no product module imports `lab/`.

Every import counts, at module level or inside a function (a function-level import only hides a loop
until the function runs), including the `if __name__ == "__main__":` shims of the documented scripts.
"""

from __future__ import annotations

import ast
import functools
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("pidog_env", "training", "deploy", "bench", "lab")     # lab/: research, never imported by the product
PRODUCT = ("pidog_env", "training", "deploy")
SCRIPTS = ("train_pretrain_finetune.py",)


def modules(root: Path) -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            name = ".".join(path.relative_to(root).with_suffix("").parts)
            found[name.removesuffix(".__init__")] = path
    for script in SCRIPTS:
        if (root / script).is_file():
            found[Path(script).stem] = root / script
    return found


@functools.lru_cache(maxsize=None)
def _parse(text: str, filename: str) -> ast.Module:
    """A source's syntax tree; each text is parsed once (three checks walk the project). Read-only use."""
    return ast.parse(text, filename)


def parse(path: Path) -> ast.Module:
    return _parse(path.read_text(), str(path))


def import_graph(root: Path) -> dict[str, set[str]]:
    """module -> the project modules it imports (`from a.b import c` counts as a.b.c when c is a module)."""
    mods = modules(root)
    graph: dict[str, set[str]] = {m: set() for m in mods}
    for name, path in mods.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(parse(path)):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(parts + ([base] if base else []))
                targets = [f"{base}.{a.name}" for a in node.names] or [base]
            else:
                continue
            for target in targets:
                while target and target not in mods:          # the deepest project module named
                    target = target.rpartition(".")[0]
                if target and target != name:
                    graph[name].add(target)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def lab_imports(graph: dict[str, set[str]]) -> list[str]:
    return sorted(f"{m} -> {t}" for m, targets in graph.items() if m.split(".")[0] in PRODUCT
                  for t in targets if t.split(".")[0] == "lab")


def _describe(graph: dict[str, set[str]], component: list[str]) -> str:
    return "; ".join(f"{m} -> {sorted(graph[m] & set(component))}" for m in component)


def test_the_project_has_no_import_cycle():
    graph = import_graph(ROOT)
    assert len(graph) > 60 and "training.pipeline" in graph          # the walk found the project
    assert "training.ppo_stage" in graph["training.pipeline"]         # and reads imports
    found = cycles(graph)
    assert not found, "import cycles: " + " | ".join(_describe(graph, c) for c in found)


def test_no_product_module_imports_lab():
    assert not lab_imports(import_graph(ROOT))


def _write(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)


def test_the_checks_see_a_function_level_loop_a_main_shim_and_a_lab_import(tmp_path):
    _write(tmp_path, {
        "training/__init__.py": "",
        "training/a.py": "from training import b\n",
        "training/b.py": "def f():\n    from .a import g\n",                 # a loop through a function
        "training/c.py": "if __name__ == '__main__':\n    from training.d import main\n",
        "training/d.py": "import training.c\n",                               # a loop through a script shim
        "training/e.py": "from lab.sac_variants import X\n",
        "lab/__init__.py": "", "lab/sac_variants.py": "from training import a\n",  # lab may import the product
    })
    graph = import_graph(tmp_path)
    assert cycles(graph) == [["training.a", "training.b"], ["training.c", "training.d"]]
    assert lab_imports(graph) == ["training.e -> lab.sac_variants"]


def artifact_literals(root: Path) -> list[str]:
    """Experiment's file names spelled as literals outside training/experiment.py, and its folder names used
    in a path join (`x / "checkpoints"`)."""
    from training.experiment import Experiment
    names = {v for k, v in vars(Experiment).items() if k.isupper() and isinstance(v, str)}
    files = {n for n in names if "." in n}
    folders = names - files
    found = []
    for name, path in modules(root).items():
        if name == "training.experiment":
            continue
        for node in ast.walk(parse(path)):
            if isinstance(node, ast.Constant) and node.value in files:
                found.append(f"{name}:{node.lineno} {node.value!r}")
            elif (isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div)
                  and isinstance(node.right, ast.Constant) and node.right.value in folders):
                found.append(f"{name}:{node.lineno} / {node.right.value!r}")
    return found


def test_artifact_names_are_spelled_only_in_experiment():
    assert not artifact_literals(ROOT)


def test_the_artifact_check_sees_a_file_name_and_a_folder_join(tmp_path):
    _write(tmp_path, {"training/__init__.py": "",
                      "training/x.py": "A = 'best_model.zip'\nB = root / 'checkpoints'\nC = 'checkpoints'\n"})
    assert artifact_literals(tmp_path) == ["training.x:1 'best_model.zip'", "training.x:2 / 'checkpoints'"]
