"""The shape of `scripts/mlcd`, checked with the standard library only (`ast`).

- no import circle among mlcd's modules. Every import counts, the ones inside functions
  too (a function-level import only delays the circle to the first call); imports under
  `if TYPE_CHECKING:` do not (they never run);
- an environment is resolved in one place (`mlcd.environment.resolve`, called only by
  `Context.environment`, which keeps what it resolved), and once per command: a deploy
  resolves it once (a runtime count, a Kubernetes deploy against a patched kubectl);
- no `== "production"` / `!= "production"`: which environment holds the champion is
  `registry.champion-environment` (its default, "production", is in config.py);
- stage names (`deploy-staging`, `<verb>-<env>-refused`) are parsed in `mlcd.stagenames`
  only.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from mlcd import stagenames

pytestmark = pytest.mark.unit

PACKAGE = Path(__file__).resolve().parents[2] / "scripts" / "mlcd"


def _modules() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


MODULES = _modules()
TREES = {name: ast.parse(path.read_text("utf-8"), str(path)) for name, path in MODULES.items()}


def _type_checking_only(tree: ast.Module) -> set[int]:
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for stmt in node.body:
                skip |= {id(n) for n in ast.walk(stmt)}
    return skip


def imports_of(name: str) -> set[str]:
    """The mlcd modules `name` imports (any level, TYPE_CHECKING blocks excepted)."""
    tree = TREES[name]
    skip = _type_checking_only(tree)
    package = name if MODULES[name].name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name in MODULES}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1])
                base += f".{node.module}" if node.module else ""
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                if sub in MODULES:
                    found.add(sub)
                elif base in MODULES:
                    found.add(base)
    found.discard(name)
    return found


def import_circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    circles: list[list[str]] = []
    counter = 0
    for root in sorted(graph):
        if root in index:
            continue
        work: list[tuple[str, Iterator[str]]] = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component: list[str] = []
                while True:
                    top = stack.pop()
                    on_stack.discard(top)
                    component.append(top)
                    if top == node:
                        break
                if len(component) > 1:
                    circles.append(sorted(component))
    return circles


def test_the_circle_finder_finds_a_circle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert import_circles(graph) == [["a", "b", "c"]]
    assert import_circles({"a": {"b"}, "b": set()}) == []


def test_no_import_circle_in_mlcd() -> None:
    graph = {name: imports_of(name) for name in MODULES}
    assert "mlcd.stages.deploy" in graph["mlcd.pipeline"]  # the graph is read at all
    circles = import_circles(graph)
    assert not circles, "import circles (function-level imports count): " + "; ".join(
        " → ".join(c) for c in circles
    )


def test_rollout_never_imports_the_context() -> None:
    """The rollout package is below the commands: what it needs is passed in."""
    offenders = sorted(
        name
        for name in MODULES
        if name.startswith("mlcd.rollout") and "mlcd.context" in imports_of(name)
    )
    assert not offenders


# ------------------------------------------------------------------ the environment


def _calls(tree: ast.AST) -> Iterator[tuple[ast.Call, list[str]]]:
    """Every call with the names of the functions and classes that enclose it."""

    def visit(node: ast.AST, where: list[str]) -> Iterator[tuple[ast.Call, list[str]]]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                yield from visit(child, [*where, child.name])
                continue
            if isinstance(child, ast.Call):
                yield child, where
            yield from visit(child, where)

    yield from visit(tree, [])


def _resolver_names(name: str) -> set[str]:
    """How module `name` may call mlcd.environment.resolve (`resolve`, `environment.resolve`,
    an alias)."""
    names: set[str] = set()
    for node in ast.walk(TREES[name]):
        if isinstance(node, ast.ImportFrom) and node.module == "mlcd.environment":
            names |= {a.asname or a.name for a in node.names if a.name == "resolve"}
        elif isinstance(node, ast.ImportFrom) and node.module == "mlcd":
            names |= {
                f"{a.asname or a.name}.resolve" for a in node.names if a.name == "environment"
            }
        elif isinstance(node, ast.Import):
            names |= {
                f"{a.asname or a.name}.resolve" for a in node.names if a.name == "mlcd.environment"
            }
    return names


def test_the_environment_is_resolved_in_one_place() -> None:
    # no second way to look an environment's section up (main had `env_section(ctx, env)`,
    # called four times per deploy)
    defined = sorted(
        f"{name}.{node.name}"
        for name, tree in TREES.items()
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef)
        and node.name in ("env_section", "router_port", "state_dir")
    )
    assert not defined, f"environment facts re-derived outside mlcd.environment: {defined}"
    callers = sorted(
        f"{name}:{'.'.join(where)}"
        for name in MODULES
        if (names := _resolver_names(name))
        for call, where in _calls(TREES[name])
        if ast.unparse(call.func) in names
    )
    assert callers == ["mlcd.context:Context.environment"], callers


def _k8s_project(tmp_path: Path) -> Any:
    from mlcd.context import Context
    from mlcd.registry import IMAGE_DIGEST, LocalRegistry

    config = {
        "version": 1,
        "project": "p",
        "model": {"task": "classification", "entrypoint": "t.py:f", "data": "d.csv", "target": "y"},
        "registry": {"path": "reg", "champion-environment": "staging"},
        "environments": {
            "staging": {"target": "kubernetes", "kubernetes": {"namespace": "ml"}},
            "production": {"requires": ["staging"]},
        },
    }
    (tmp_path / "mlcd.yaml").write_text(yaml.safe_dump(config))
    registry = LocalRegistry(tmp_path / "reg")
    model = tmp_path / "m.bin"
    model.write_bytes(b"model")
    version = registry.register(
        model_file=model, metadata={}, metrics={}, verdict={"passed": True}
    ).version
    registry.attach(version, IMAGE_DIGEST, "127.0.0.1:5000/p@sha256:" + "a" * 64)
    registry.attach(version, "scan", {"status": "pass"})
    return Context(config_path=tmp_path / "mlcd.yaml", out=tmp_path / ".mlcd"), registry


def test_a_deploy_resolves_its_environment_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlcd import context as context_module
    from mlcd.registry import CHAMPION
    from mlcd.stages import deploy
    from mlcd.tools.kubectl import Cluster

    ctx, registry = _k8s_project(tmp_path)
    monkeypatch.setenv("GITHUB_SHA", "0" * 40)  # no git subprocess in unit tests
    resolved: list[str] = []
    real = context_module.resolve

    def counting(loaded: Any, name: str, environ: Any = None) -> Any:
        resolved.append(name)
        return real(loaded, name, environ)

    healthy = {
        "metadata": {"generation": 1, "labels": {}},
        "status": {"observedGeneration": "1", "phase": "Healthy", "currentPodHash": "h",
                   "stableRS": "h"},
    }  # fmt: skip
    monkeypatch.setattr(context_module, "resolve", counting)
    monkeypatch.setattr(Cluster, "apply", lambda *_a: "rollout.argoproj.io/p-staging created")
    monkeypatch.setattr(Cluster, "get", lambda *_a: healthy)
    result = deploy.stage(ctx, "staging")
    assert result.status == "pass", result.summary
    assert resolved == ["staging"]
    # registry.champion-environment: staging holds the champion here, production does not
    champion = registry.alias(CHAMPION)
    assert champion is not None
    assert champion.version == "v1"
    assert any("champion is now model v1" in r for r in result.reasons)
    assert ctx.environment("staging") is ctx.environment("staging")
    assert not ctx.environment("production").holds_champion
    assert resolved == ["staging", "production"]


def test_no_production_literal_comparisons() -> None:
    found = sorted(
        f"{name}:{node.lineno}"
        for name, tree in TREES.items()
        for node in ast.walk(tree)
        if isinstance(node, ast.Compare)
        and any(isinstance(op, ast.Eq | ast.NotEq | ast.In | ast.NotIn) for op in node.ops)
        and any(
            isinstance(side, ast.Constant) and side.value == "production"
            for side in [node.left, *node.comparators]
        )
    )
    assert not found, f"`== 'production'` (use Environment.holds_champion): {found}"


# ------------------------------------------------------------------ stage names

_STRING_PARSERS = {
    "startswith",
    "endswith",
    "removeprefix",
    "removesuffix",
    "partition",
    "rpartition",
    "split",
    "rsplit",
    "glob",
    "rglob",
}
_PREFIXES = tuple(f"{verb}-" for verb in stagenames.ENV_VERBS)


def _stage_parsing(call: ast.Call) -> bool:
    func = call.func
    if not isinstance(func, ast.Attribute) or func.attr not in _STRING_PARSERS:
        return False
    receiver = ast.unparse(func.value).lower()
    first = call.args[0] if call.args else None
    text = ""
    if isinstance(first, ast.Constant) and isinstance(first.value, str):
        text = first.value
    elif isinstance(first, ast.JoinedStr) and first.values:
        head = first.values[0]
        text = head.value if isinstance(head, ast.Constant) and isinstance(head.value, str) else ""
    if text.startswith(_PREFIXES) or text == stagenames.REFUSED_SUFFIX:
        return True
    # `stage.partition("-")` and the like: a stage's name taken apart by hand
    return "stage" in receiver and func.attr != "glob" and text == "-"


def test_stage_names_are_parsed_in_one_module() -> None:
    found = sorted(
        f"{name}:{call.lineno}: {ast.unparse(call)}"
        for name in MODULES
        if name != "mlcd.stagenames"
        for call, _where in _calls(TREES[name])
        if _stage_parsing(call)
    )
    assert not found, f"stage names parsed outside mlcd.stagenames: {found}"


def test_the_stage_parsing_check_sees_what_it_looks_for() -> None:
    tree = ast.parse(
        'name.startswith("deploy-")\nrow.removeprefix(f"rollback-{x}")\n'
        'stage.partition("-")\nroot.glob("deploy-*/result.json")\nx.split(",")\n'
    )
    hits = [_stage_parsing(call) for call, _ in _calls(tree)]
    assert hits == [True, True, True, True, False]


@pytest.mark.parametrize(
    ("stage", "parsed"),
    [
        ("deploy-staging", ("deploy", "staging", False)),
        ("deploy-staging-refused", ("deploy", "staging", True)),
        ("down-review-42", ("down", "review-42", False)),
        ("rollback-production-refused", ("rollback", "production", True)),
        ("train", None),
        ("deploy-", None),
        ("report-staging", None),
    ],
)
def test_stage_names_round_trip(stage: str, parsed: tuple[str, str, bool] | None) -> None:
    found = stagenames.parse(stage)
    if parsed is None:
        assert found is None
        return
    assert found is not None
    assert (found.verb, found.env, found.refused) == parsed
    assert found.name == stage
    assert stagenames.deploy_env(stage) == (
        parsed[1] if parsed[0] == "deploy" and not parsed[2] else None
    )


def test_a_reloaded_config_resolves_its_environments_again(tmp_path: Path) -> None:
    ctx, _registry = _k8s_project(tmp_path)
    before = ctx.environment("staging")
    assert before.kind == "kubernetes"
    assert ctx.environment("staging") is before
    ctx.local_targets = True  # `mlcd run --target local`
    ctx.reload()
    after = ctx.environment("staging")
    assert after.kind == "local"
    assert ctx.environment("staging") is after
