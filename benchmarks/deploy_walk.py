"""One command: the walk of `mlcd deploy ENV` through mlcd's own code, as a static call graph.

    .venv/bin/python benchmarks/deploy_walk.py            # figures, one line each
    .venv/bin/python benchmarks/deploy_walk.py --list     # also every function and climb
    git archive COMMIT scripts | tar -x -C /tmp/at      # another commit's code:
    .venv/bin/python benchmarks/deploy_walk.py --package /tmp/at/scripts/mlcd

A live trace of a deploy needs a trained, built, scanned and released model and a Docker
engine (minutes on this shared machine, and its path depends on the state it finds); this
walk is static and deterministic instead: it parses every module of `scripts/mlcd` (stdlib
`ast`) and follows the calls that can be resolved from `mlcd deploy`'s entry
(`stages/deploy.py: _deploy_run`), every branch included (all targets, all strategies):

- a name imported or defined in the module, `module.name`, `Class(...)` (its `__init__`);
- `x.method(...)` and `x.property` when `x`'s class is known: `self`, a parameter or
  variable annotated with an mlcd class, `x = Class(...)`, `with Class(...) as x`, a
  class's annotated attributes and a function's annotated return (chains follow);
- a call of an abstract method (`Target.start_arm`) reaches every class that overrides it,
  and a call of a `Protocol`'s method every class that has all of the protocol's methods.

Reported: distinct mlcd functions reached, distinct files, and "climbs back up": calls from
a function in a lower layer to one in a higher layer (LAYERS below, lowest first), e.g.
`rollout/*` → `stages/*` or `context`; plus the imports among the reached files that climb.
"""

from __future__ import annotations

import argparse
import ast
import sys
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "scripts" / "mlcd"
ENTRY = "mlcd.stages.deploy._deploy_run"

# lowest first; a module takes the layer of its longest matching prefix (else "domain")
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("basics", ("mlcd.errors", "mlcd.ports", "mlcd.progress", "mlcd.stagenames")),
    ("tools", ("mlcd.tools",)),
    ("config", ("mlcd.config", "mlcd.environment", "mlcd.contracts", "mlcd.evidence")),
    ("domain", ("mlcd",)),  # registry, rollout, signing, releases, security, …
    ("context", ("mlcd.context",)),
    ("stages", ("mlcd.stages", "mlcd.pipeline")),
    ("cli", ("mlcd.cli", "mlcd.__main__")),
]


def layer_of(module: str) -> tuple[int, str]:
    best = (-1, 3, "domain")
    for rank, (name, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best[0]:
                best = (len(prefix), rank, name)
    return best[1], best[2]


@dataclass
class Module:
    name: str
    path: Path
    tree: ast.Module
    aliases: dict[str, str] = field(default_factory=dict)  # local name → dotted target
    imports: set[str] = field(default_factory=set)  # modules imported (any level)


@dataclass
class Func:
    qual: str  # module.func or module.Class.method
    module: str
    node: ast.FunctionDef | ast.AsyncFunctionDef
    cls: str | None  # module.Class
    abstract: bool = False
    returns: str | None = None  # dotted name of the return annotation, resolved later


@dataclass
class Klass:
    qual: str
    module: str
    bases: list[str]
    methods: dict[str, str] = field(default_factory=dict)  # name → Func.qual
    attrs: dict[str, ast.expr] = field(default_factory=dict)  # annotated attributes


def module_name(path: Path, package: Path) -> str:
    rel = path.relative_to(package.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


class Graph:
    def __init__(self, package: Path = PACKAGE) -> None:
        self.modules: dict[str, Module] = {}
        self.funcs: dict[str, Func] = {}
        self.classes: dict[str, Klass] = {}
        for path in sorted(package.rglob("*.py")):
            name = module_name(path, package)
            tree = ast.parse(path.read_text("utf-8"), str(path))
            self.modules[name] = Module(name, path, tree)
        for mod in self.modules.values():
            self._index(mod)

    # ------------------------------------------------------------------ indexing

    def _index(self, mod: Module) -> None:
        package = mod.name if mod.path.name == "__init__.py" else mod.name.rpartition(".")[0]
        for node in ast.walk(mod.tree):
            if isinstance(node, ast.Import):
                for a in node.names:
                    if a.name.startswith("mlcd"):
                        mod.imports.add(a.name)
                        mod.aliases.setdefault(a.asname or a.name.split(".")[0], a.name)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1])
                    base = f"{base}.{node.module}" if node.module else base
                if not base.startswith("mlcd"):
                    continue
                for a in node.names:
                    target = f"{base}.{a.name}"
                    mod.imports.add(target if target in self.modules else base)
                    mod.aliases.setdefault(a.asname or a.name, target)
        for node in mod.tree.body:
            self._define(mod, node, None)

    def _define(self, mod: Module, node: ast.stmt, cls: Klass | None) -> None:
        prefix = cls.qual if cls else mod.name
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            qual = f"{prefix}.{node.name}"
            abstract = any(
                (isinstance(d, ast.Name) and d.id == "abstractmethod")
                or (isinstance(d, ast.Attribute) and d.attr == "abstractmethod")
                for d in node.decorator_list
            ) or (cls is not None and any(b.endswith("Protocol") for b in cls.bases))
            returns = ast.unparse(node.returns).strip("'\"") if node.returns else None
            self.funcs[qual] = Func(qual, mod.name, node, cls.qual if cls else None, abstract)
            self.funcs[qual].returns = returns
            if cls:
                cls.methods[node.name] = qual
        elif isinstance(node, ast.ClassDef):
            klass = Klass(f"{prefix}.{node.name}", mod.name, [ast.unparse(b) for b in node.bases])
            self.classes[klass.qual] = klass
            for sub in node.body:
                if isinstance(sub, ast.AnnAssign) and isinstance(sub.target, ast.Name):
                    klass.attrs[sub.target.id] = sub.annotation
                self._define(mod, sub, klass)
        elif isinstance(node, ast.If | ast.Try):
            for sub in [*node.body, *getattr(node, "orelse", [])]:
                self._define(mod, sub, cls)

    # ------------------------------------------------------------------ resolving names

    def resolve(self, module: str, dotted: str, depth: int = 0) -> str | None:
        """A dotted name as written in `module` → the qualified name of an mlcd def/module."""
        if depth > 8:
            return None
        head, _, rest = dotted.partition(".")
        mod = self.modules.get(module)
        if mod is None:
            return None
        local = f"{module}.{head}"
        if local in self.funcs or local in self.classes:
            base = local
        elif head in mod.aliases:
            base = mod.aliases[head]
        else:
            return None
        full = f"{base}.{rest}" if rest else base
        return self.canonical(full, depth)

    def canonical(self, full: str, depth: int = 0) -> str | None:
        if full in self.funcs or full in self.classes or full in self.modules:
            return full
        # a name re-exported by a module: follow that module's import
        for i in range(full.count("."), 0, -1):
            owner = full.rsplit(".", i)[0]
            if owner in self.modules:
                remainder = full[len(owner) + 1 :]
                found = self.resolve(owner, remainder, depth + 1)
                return found if found != full else None
            if owner in self.classes:
                return self.method(owner, full[len(owner) + 1 :])
        return None

    def mro(self, cls: str) -> list[str]:
        seen: list[str] = []
        todo = [cls]
        while todo:
            c = todo.pop(0)
            if c in seen or c not in self.classes:
                continue
            seen.append(c)
            k = self.classes[c]
            for b in k.bases:
                r = self.resolve(k.module, b)
                if r:
                    todo.append(r)
        return seen

    def method(self, cls: str, name: str) -> str | None:
        for c in self.mro(cls):
            found = self.classes[c].methods.get(name)
            if found:
                return found
        return None

    def attr_type(self, cls: str, name: str) -> str | None:
        for c in self.mro(cls):
            k = self.classes[c]
            if name in k.attrs:
                return self.annotation_class(k.module, k.attrs[name])
            init = k.methods.get("__init__")
            if init:
                found = self._init_attr(self.funcs[init], name)
                if found:
                    return found
        meth = self.method(cls, name)  # a property
        if meth:
            f = self.funcs[meth]
            return self.class_named(f.module, f.returns)
        return None

    def _init_attr(self, init: Func, name: str) -> str | None:
        params = self.param_types(init)
        for node in ast.walk(init.node):
            if isinstance(node, ast.Assign | ast.AnnAssign):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                for t in targets:
                    if (
                        isinstance(t, ast.Attribute)
                        and t.attr == name
                        and isinstance(t.value, ast.Name)
                        and t.value.id == "self"
                    ):
                        if isinstance(node, ast.AnnAssign):
                            return self.annotation_class(init.module, node.annotation)
                        if isinstance(node.value, ast.Name):
                            return params.get(node.value.id)
        return None

    def class_named(self, module: str, text: str | None) -> str | None:
        if not text:
            return None
        text = text.split("|")[0].strip().strip("'\"")
        found = self.resolve(module, text)
        return found if found in self.classes else None

    def annotation_class(self, module: str, node: ast.expr | None) -> str | None:
        return self.class_named(module, ast.unparse(node)) if node is not None else None

    def param_types(self, f: Func) -> dict[str, str]:
        types: dict[str, str] = {}
        a = f.node.args
        params = [*a.posonlyargs, *a.args, *a.kwonlyargs]
        for i, p in enumerate(params):
            if i == 0 and f.cls and p.arg in ("self", "cls"):
                types[p.arg] = f.cls
                continue
            found = self.annotation_class(f.module, p.annotation)
            if found:
                types[p.arg] = found
        return types

    # ------------------------------------------------------------------ calls

    def calls(self, f: Func) -> set[str]:
        """The mlcd functions `f` calls (its nested functions and lambdas included)."""
        types = self.param_types(f)
        out: set[str] = set()

        def expr_type(e: ast.expr) -> str | None:
            if isinstance(e, ast.Name):
                if e.id in types:
                    return types[e.id]
                return None
            if isinstance(e, ast.Attribute):
                owner = expr_type(e.value)
                return self.attr_type(owner, e.attr) if owner else None
            if isinstance(e, ast.Call):
                target = target_of(e.func)
                if target in self.classes:
                    return target
                if target in self.funcs:
                    g = self.funcs[target]
                    return self.class_named(g.module, g.returns)
            return None

        def target_of(e: ast.expr) -> str | None:
            if isinstance(e, ast.Name):
                if e.id in types:
                    return None
                return self.resolve(f.module, e.id)
            if isinstance(e, ast.Attribute):
                owner_type = expr_type(e.value)
                if owner_type:
                    return self.method(owner_type, e.attr)
                dotted = _dotted(e)
                return self.resolve(f.module, dotted) if dotted else None
            return None

        def add(target: str | None) -> None:
            if target is None:
                return
            if target in self.classes:
                for name in ("__init__", "__post_init__"):
                    m = self.method(target, name)
                    if m:
                        out.add(m)
                return
            if target in self.funcs:
                out.add(target)

        # variable types from assignments and `with … as x`, in order of appearance
        for node in ast.walk(f.node):
            if isinstance(node, ast.Assign) and len(node.targets) == 1:
                t = node.targets[0]
                if isinstance(t, ast.Name):
                    found = expr_type(node.value)
                    if found:
                        types[t.id] = found
            elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
                found = self.annotation_class(f.module, node.annotation)
                if found:
                    types[node.target.id] = found
            elif isinstance(node, ast.With):
                for item in node.items:
                    if isinstance(item.optional_vars, ast.Name):
                        found = expr_type(item.context_expr)
                        if found:
                            types[item.optional_vars.id] = found
        for node in ast.walk(f.node):
            if isinstance(node, ast.Call):
                add(target_of(node.func))
                for arg in node.args:  # a function passed on (callbacks, partial)
                    if isinstance(arg, ast.Name | ast.Attribute):
                        t = target_of(arg)
                        if t in self.funcs:
                            out.add(t)
            elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Load):
                owner = expr_type(node.value)
                if owner:
                    m = self.method(owner, node.attr)
                    if m and _is_property(self.funcs[m]):
                        out.add(m)
        out.discard(f.qual)
        if f.abstract and f.cls:
            out |= self.overrides(f)
        return out

    def overrides(self, f: Func) -> set[str]:
        name = f.node.name
        found: set[str] = set()
        if f.cls is None:
            return found
        protocol = self.classes[f.cls]
        wanted = set(protocol.methods)
        structural = any(b.endswith("Protocol") for b in protocol.bases)
        for k in self.classes.values():
            if k.qual == f.cls or name not in k.methods:
                continue
            if f.cls in self.mro(k.qual) or (structural and wanted <= set(k.methods)):
                found.add(k.methods[name])
        return found


def _dotted(e: ast.expr) -> str | None:
    parts: list[str] = []
    while isinstance(e, ast.Attribute):
        parts.append(e.attr)
        e = e.value
    if isinstance(e, ast.Name):
        parts.append(e.id)
        return ".".join(reversed(parts))
    return None


def _is_property(f: Func) -> bool:
    return any(
        ast.unparse(d).endswith(("property", "cached_property")) for d in f.node.decorator_list
    )


def walk(graph: Graph, entry: str) -> tuple[set[str], list[tuple[str, str]]]:
    reached = {entry}
    edges: list[tuple[str, str]] = []
    todo = deque([entry])
    while todo:
        f = todo.popleft()
        for callee in sorted(graph.calls(graph.funcs[f])):
            edges.append((f, callee))
            if callee not in reached:
                reached.add(callee)
                todo.append(callee)
    return reached, edges


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--list", action="store_true", help="print every function and climb")
    parser.add_argument("--entry", default=ENTRY, help=f"where the walk starts ({ENTRY})")
    parser.add_argument(
        "--package", type=Path, default=PACKAGE, help="the mlcd package to walk (scripts/mlcd)"
    )
    args = parser.parse_args()
    graph = Graph(args.package.resolve())
    reached, edges = walk(graph, args.entry)
    modules = {graph.funcs[f].module for f in reached}
    climbs = [
        (a, b)
        for a, b in edges
        if layer_of(graph.funcs[a].module)[0] < layer_of(graph.funcs[b].module)[0]
    ]
    import_climbs = sorted(
        (m, i)
        for m in modules
        for i in graph.modules[m].imports
        if i in graph.modules and layer_of(m)[0] < layer_of(i)[0]
    )
    print(f"entry: {args.entry} (static call graph of {args.package})")
    print(f"functions reached: {len(reached)}")
    print(f"files: {len(modules)}")
    print(f"calls (edges): {len(edges)}")
    print(f"climbs back up (calls to a higher layer): {len(climbs)}")
    for a, b in climbs:
        la, lb = layer_of(graph.funcs[a].module)[1], layer_of(graph.funcs[b].module)[1]
        print(f"  {a} [{la}] -> {b} [{lb}]")
    print(f"imports climbing up among those files: {len(import_climbs)}")
    for m, i in import_climbs:
        print(f"  {m} [{layer_of(m)[1]}] imports {i} [{layer_of(i)[1]}]")
    if args.list:
        print("files:")
        for m in sorted(modules):
            print(f"  {m}")
        print("functions:")
        for f in sorted(reached):
            print(f"  {f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
