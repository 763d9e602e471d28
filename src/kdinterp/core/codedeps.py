"""Which of the package's source files a module runs: its static import closure within ``kdinterp``.

Two things must agree with it: a DVC stage's ``src`` deps in ``dvc.yaml`` (so that DVC reruns the
stage when code it runs changes; checked by ``tests/test_study.py``) and the training fingerprint
(so that a rerun never resumes a checkpoint written by other code). Both are derived from, or
checked against, this closure instead of being listed by hand twice.

Imports are read with :mod:`ast`, including those inside functions (the CLI, the stages and the
measures import heavy modules lazily), but not those under ``if TYPE_CHECKING:``, which never run.
Strings are not imports and are not followed (see :data:`EXTRA`).
"""

from __future__ import annotations

import ast
import hashlib
from functools import cache
from pathlib import Path

import kdinterp

__all__ = ["closure", "code_hash", "module_file"]

PACKAGE = Path(kdinterp.__file__).resolve().parent

#: Imports made by name (``importlib``) rather than by an import statement: none. The method table
#: (:data:`kdinterp.training.methods.METHODS`) imports each distiller in a function, which is followed.
EXTRA: dict[str, tuple[str, ...]] = {}


def module_file(module: str) -> Path:
    """The source file of ``kdinterp.x.y`` (a module or a package's ``__init__.py``).

    Raises:
        ModuleNotFoundError: no such module in the package.
    """
    parts = module.split(".")[1:]
    base = PACKAGE.joinpath(*parts)
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    raise ModuleNotFoundError(f"{module}: not a module of the kdinterp package ({PACKAGE})")


def _imports(module: str) -> set[str]:
    """``kdinterp`` modules that ``module`` imports anywhere in its source."""
    path = module_file(module)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set(EXTRA.get(module, ()))
    for node in _runtime_nodes(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base]) if base else ".".join(anchor)
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return {name for name in found if name.split(".")[0] == "kdinterp" and _exists(name)}


def _type_checking(node: ast.AST) -> bool:
    """``if TYPE_CHECKING:`` (or ``typing.TYPE_CHECKING``): a block that never runs."""
    test = getattr(node, "test", None)
    return isinstance(node, ast.If) and (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING"
                                         or isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _runtime_nodes(tree: ast.AST) -> list[ast.AST]:
    """Every node of ``tree`` except those in the body of an ``if TYPE_CHECKING:`` block (its ``else`` runs)."""
    out, todo = [], [tree]
    while todo:
        node = todo.pop()
        out.append(node)
        children = node.orelse if _type_checking(node) else list(ast.iter_child_nodes(node))
        todo.extend(children)
    return out


def _exists(module: str) -> bool:
    try:
        module_file(module)
    except ModuleNotFoundError:
        return False
    return True


@cache
def closure(module: str) -> tuple[Path, ...]:
    """Every package file that importing ``module`` (and its lazy imports) can run, sorted.

    A submodule also brings its packages' ``__init__.py`` files (Python runs them first).

    Args:
        module: a dotted module name such as ``kdinterp.stages.training``.

    Returns:
        Absolute paths of the ``.py`` files, ``module``'s own included.

    Raises:
        ModuleNotFoundError: ``module`` is not in the package.
    """
    seen: set[str] = set()
    todo = [module]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        parts = name.split(".")
        todo.extend(".".join(parts[:i]) for i in range(1, len(parts)))
        todo.extend(_imports(name))
    return tuple(sorted({module_file(name) for name in seen}))


def code_hash(module: str) -> str:
    """SHA-256 over the relative paths and bytes of :func:`closure` of ``module``."""
    digest = hashlib.sha256()
    for path in closure(module):
        digest.update(str(path.relative_to(PACKAGE)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def dvc_deps(module: str, root: Path | None = None) -> list[str]:
    """``module``'s closure as ``dvc.yaml`` deps: paths relative to the repository root, sorted.

    A package directory whose every ``.py`` file is in the closure is listed once, as the directory.

    Args:
        module: a dotted module name.
        root: the repository root (default: two levels above the package, ``src/kdinterp``'s parent's parent).
    """
    root = root or PACKAGE.parent.parent
    files = set(closure(module))
    deps, whole = [], set()
    for path in sorted(files):
        parent = path.parent
        if parent != PACKAGE and all(p in files for p in parent.rglob("*.py")):
            whole.add(parent)
        else:
            deps.append(path)
    return sorted(str(p.relative_to(root)) for p in [*deps, *whole])
