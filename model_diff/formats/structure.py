"""Which tensors of a pickled checkpoint are the weights: decided by structure, not key names.

A training checkpoint is a tree (dicts, lists, recorded objects) with tensors at the leaves.
``classify(root, tree)`` gives every subtree a kind, bottom-up:

- **optimizer**: a mapping with ``state`` (a mapping) and ``param_groups`` (a list), under
  any key (``optimizer``, ``optimizer_state``, Lightning's ``optimizer_states[i]`` ...);
- **scheduler**: a mapping with ``last_epoch`` and ``base_lrs`` / ``_last_lr``;
- **model**: a flat state dict (tensors, perhaps beside a few scalar tensors and plain
  values), a recorded ``nn.Module``, or a container whose tensor-holding children are all
  models (nested state dicts, generator + discriminator, model + EMA);
- **scalars**: only 0-d tensors (a callback's best score, a step counter);
- **mixed**: anything else (the training checkpoint itself): its children are classified one
  by one; tensors sitting directly in it (``rng_state``, ``best_loss``) are loose.

The kept weights are every model subtree; several keep their paths, relative to their deepest
common container (one model: its own names, as ``state_dict()`` gave them). Two models with
the same names and shapes are told apart as original and EMA/shadow copy (the key path names
the copy). Optimizer state is set aside, its tensors named by parameter order
(``<path>.state.<position in param_groups>.<field>``: saved ids differ between runs), and so
are schedulers, scalar subtrees and loose tensors. Every tensor stays reachable by its path in
the file (``Layout.pool``) for ``select`` and ``--include-optimizer``.

Walks are bounded (depth, total visits) and cycle-safe: a pickle can reference one object
from many places. This module knows nothing of torch or of how tensors are read.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..checkpoint import Subtree
from ..errors import CheckpointError

__all__ = ["MAX_DEPTH", "Layout", "Tree", "classify", "dotted"]

#: Containers nested deeper than this are not searched for tensors (and are listed as such).
MAX_DEPTH = 64
#: Total node visits per checkpoint: shared references can make a small pickle a huge tree.
MAX_VISITS = 2_000_000

_COPY_HINT = re.compile(r"ema|shadow|averag|swa", re.IGNORECASE)
_OPTIMIZER_DETAILS = (
    (("exp_avg", "exp_avg_sq"), "Adam state"),
    (("momentum_buffer",), "SGD momentum"),
    (("square_avg",), "RMSprop state"),
    (("sum",), "Adagrad state"),
)


class Tree(Protocol):
    """How the classifier sees the nodes of one file's object tree."""

    def is_leaf(self, node: Any) -> bool:
        """A tensor (readable or not)."""
        ...

    def ndim(self, leaf: Any) -> int: ...

    def shape(self, leaf: Any) -> tuple[int, ...] | None: ...

    def nbytes(self, leaf: Any) -> int: ...

    def is_module(self, node: Any) -> bool:
        """A recorded ``nn.Module`` (its children are its state dict)."""
        ...

    def children(self, node: Any) -> list[tuple[str, Any]] | None:
        """Named children of a container; None for a leaf or a plain value."""
        ...


Path = tuple[str, ...]


@dataclass
class Layout:
    """What ``classify`` found in one file."""

    #: The kept weights: name (relative to ``root``) -> (path in the file, leaf).
    weights: dict[str, tuple[Path, Any]] = field(default_factory=dict)
    #: Every tensor by its dotted path in the file (optimizer tensors by parameter order).
    pool: dict[str, Any] = field(default_factory=dict)
    #: The optimizer tensors, by their (parameter-order) path: a subset of ``pool``.
    optimizer: dict[str, Any] = field(default_factory=dict)
    root: Path = ()
    subtrees: list[Subtree] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    metadata: dict[str, str] = field(default_factory=dict)


def dotted(path: Path) -> str:
    return ".".join(path)


def _is_optimizer(node: Any) -> bool:
    return (
        isinstance(node, Mapping)
        and isinstance(node.get("state"), Mapping)
        and isinstance(node.get("param_groups"), (list, tuple))
    )


def _is_scheduler(node: Any) -> bool:
    return (
        isinstance(node, Mapping)
        and "last_epoch" in node
        and ("base_lrs" in node or "_last_lr" in node)
    )


class _Walker:
    def __init__(self, tree: Tree, label: str) -> None:
        self.tree = tree
        self.label = label
        self.visits = 0
        self._kinds: dict[int, str] = {}
        self._keep: list[Any] = []  # keeps memoised nodes alive (ids stay unique)

    def _count(self) -> None:
        self.visits += 1
        if self.visits > MAX_VISITS:
            raise CheckpointError(
                f"holds an object tree of more than {MAX_VISITS:,} nodes (shared references "
                "repeated many times); refusing to walk it",
                path=self.label,
                hint="save a plain state dict or safetensors",
            )

    def children(self, node: Any) -> list[tuple[str, Any]] | None:
        if self.tree.is_leaf(node):
            return None
        return self.tree.children(node)

    def kind(self, node: Any, depth: int = 0, on_path: frozenset[int] = frozenset()) -> str:
        """tensor | scalar | optimizer | scheduler | model | scalars | mixed | none."""
        self._count()
        t = self.tree
        if t.is_leaf(node):
            return "tensor" if t.ndim(node) >= 1 else "scalar"
        if _is_optimizer(node):
            return "optimizer"
        if _is_scheduler(node):
            return "scheduler"
        key = id(node)
        if key in self._kinds:
            return self._kinds[key]
        ch = t.children(node)
        if ch is None or depth >= MAX_DEPTH or key in on_path:
            return "none"
        inner = on_path | {key}
        leaves = [c for _, c in ch if t.is_leaf(c)]
        sub = [
            k for _, c in ch if not t.is_leaf(c) and (k := self.kind(c, depth + 1, inner)) != "none"
        ]
        big = any(t.ndim(c) >= 1 for c in leaves)
        if t.is_module(node):
            out = "model" if leaves or "model" in sub else "none"
        elif not leaves and not sub:
            out = "none"
        elif leaves and all(s == "scalars" for s in sub):
            out = "model" if big else "scalars"
        elif not leaves and all(s == "model" for s in sub):
            out = "model"
        elif not leaves and len(set(sub)) == 1 and sub[0] in ("optimizer", "scheduler", "scalars"):
            out = sub[0]
        else:
            out = "mixed"
        self._kinds[key] = out
        self._keep.append(node)
        return out

    def flatten(
        self,
        node: Any,
        path: Path,
        out: list[tuple[Path, Any]],
        skipped: list[Path],
        depth: int = 0,
    ) -> None:
        """Every tensor under ``node`` by path; entries holding none go to ``skipped``."""
        self._count()
        if self.tree.is_leaf(node):
            out.append((path, node))
            return
        ch = self.children(node)
        if ch is None or depth >= MAX_DEPTH or (path and self.kind(node) == "none"):
            if path:
                skipped.append(path)
            return
        for k, c in ch:
            self.flatten(c, (*path, k), out, skipped, depth + 1)


def _optimizer_detail(opt: Mapping[Any, Any]) -> str:
    fields: set[str] = set()
    for entry in opt["state"].values():
        if isinstance(entry, Mapping):
            fields.update(str(k) for k in entry)
    for keys, name in _OPTIMIZER_DETAILS:
        if all(k in fields for k in keys):
            return name
    return "optimizer state"


def _param_order(opt: Mapping[Any, Any]) -> dict[Any, int]:
    order: dict[Any, int] = {}
    for group in opt["param_groups"]:
        params = group.get("params") if isinstance(group, Mapping) else None
        if isinstance(params, (list, tuple)):
            for p in params:
                try:
                    order.setdefault(p, len(order))
                except TypeError:  # an unhashable id: not an id
                    continue
    return order


class _Classifier:
    def __init__(self, root: Any, tree: Tree, label: str) -> None:
        self.root_node = root
        self.w = _Walker(tree, label)
        self.tree = tree
        self.label = label
        self.layout = Layout()
        self.models: list[Path] = []
        self.aside: list[tuple[Path, str, str, list[tuple[Path, Any]]]] = []
        self.skipped: list[Path] = []

    def run(self, root: Any) -> Layout:
        kind = self.w.kind(root)
        if kind in ("model", "tensor"):
            self.models.append(())
        elif kind in ("mixed", "none"):
            self._visit(root, (), 0)
        elif kind != "none":
            self._set_aside(root, (), kind, 0)
        self._collect_models()
        lay = self.layout
        lay.skipped = sorted({dotted(p) for p in self.skipped if p})
        return lay

    def _visit(self, node: Any, path: Path, depth: int) -> None:
        """A mixed container: classify its children one by one."""
        ch = self.w.children(node) or []
        for key, child in ch:
            p = (*path, key)
            kind = self.w.kind(child)
            if kind == "model":
                self.models.append(p)
            elif kind in ("tensor", "scalar"):
                self.aside.append((p, "tensor", "loose tensor", [(p, child)]))
                self.skipped.append(p)
            elif kind == "mixed" and depth < MAX_DEPTH:
                self._visit(child, p, depth + 1)
            elif kind in ("optimizer", "scheduler", "scalars"):
                self._set_aside(child, p, kind, depth + 1)
                self.skipped.append(p)
            else:
                self._note(child, p)

    def _set_aside(self, node: Any, path: Path, kind: str, depth: int) -> None:
        if kind == "optimizer" and _is_optimizer(node):
            self.aside.append(
                (path, "optimizer", _optimizer_detail(node), self._optimizer(node, path))
            )
            return
        if kind == "scheduler" and _is_scheduler(node):
            found: list[tuple[Path, Any]] = []
            self.w.flatten(node, path, found, [])
            self.aside.append((path, "scheduler", "learning-rate scheduler", found))
            return
        if kind == "scalars" and any(self.tree.is_leaf(c) for _, c in self.w.children(node) or []):
            found = []
            self.w.flatten(node, path, found, [])
            self.aside.append((path, "scalars", "scalar tensors", found))
            return
        if depth >= MAX_DEPTH:
            return
        for key, child in self.w.children(node) or []:  # a group: list each member
            if self.w.kind(child) == kind:
                self._set_aside(child, (*path, key), kind, depth + 1)
            elif self.tree.is_leaf(child):
                self.aside.append(((*path, key), "tensor", "loose tensor", [((*path, key), child)]))

    def _optimizer(self, opt: Mapping[Any, Any], path: Path) -> list[tuple[Path, Any]]:
        order = _param_order(opt)
        found: list[tuple[Path, Any]] = []
        for key, entry in opt["state"].items():
            try:
                pos = order.get(key, key)
            except TypeError:
                pos = key
            self.w.flatten(entry, (*path, "state", str(pos)), found, [])
        for k, v in opt.items():
            if k != "state":
                self.w.flatten(v, (*path, str(k)), found, [])
        return found

    def _descend(self, path: Path) -> Path:
        """Below a wrapper (a container whose one tensor-holding entry is a mapping or a module:
        ``{"state_dict": {...}}``) to the state dict itself. Modules are never descended into
        (their submodule names are part of their state dict's names), nor lists (an index
        alone names nothing)."""
        node = self._node_at(path)
        for _ in range(MAX_DEPTH):
            if self.tree.is_module(node):
                break
            ch = self.w.children(node) or []
            held = [(k, c) for k, c in ch if self.w.kind(c) != "none"]
            if len(held) != 1 or not (
                isinstance(held[0][1], Mapping) or self.tree.is_module(held[0][1])
            ):
                break
            for k, c in ch:  # what the wrapper holds beside the weights
                if k != held[0][0]:
                    self._note(c, (*path, k))
            path, node = (*path, held[0][0]), held[0][1]
        return path

    def _note(self, node: Any, path: Path) -> None:
        """An entry that is not compared: listed as skipped; a plain value is metadata."""
        self.skipped.append(path)
        if isinstance(node, (str, int, float, bool)):
            self.layout.metadata[dotted(path)] = str(node)

    def _collect_models(self) -> None:
        lay = self.layout
        flat: dict[Path, list[tuple[Path, Any]]] = {}
        self.models = [self._descend(p) for p in self.models]
        for p in self.models:
            found: list[tuple[Path, Any]] = []
            node = self._node_at(p)
            self.w.flatten(node, p, found, self.skipped)
            flat[p] = found
        root = _common_prefix(self.models) if self.models else ()
        lay.root = root
        for p in self.models:
            for full, leaf in flat[p]:
                name = dotted(full[len(root) :])
                if name in lay.weights:
                    raise CheckpointError(
                        f"holds two tensors named {name!r} once nested containers are flattened",
                        path=self.label,
                        hint="save a flat state dict",
                    )
                lay.weights[name] = (full, leaf)
                lay.pool[dotted(full)] = leaf
        labels = _copy_labels(self.models, flat, self.tree)
        for p in self.models:
            kind, detail = labels.get(p, ("model", "model"))
            lay.subtrees.append(self._subtree(p, kind, detail, flat[p], compared=True))
        for p, kind, detail, found in self.aside:
            for full, leaf in found:
                lay.pool.setdefault(dotted(full), leaf)
                if kind == "optimizer":
                    lay.optimizer[dotted(full)] = leaf
            lay.subtrees.append(self._subtree(p, kind, detail, found, compared=False))
        lay.subtrees.sort(key=lambda s: (not s.compared, s.path))

    def _node_at(self, path: Path) -> Any:
        node = self.root_node
        for key in path:
            node = dict(self.w.children(node) or [])[key]
        return node

    def _subtree(
        self, path: Path, kind: str, detail: str, found: list[tuple[Path, Any]], *, compared: bool
    ) -> Subtree:
        return Subtree(
            path=dotted(path),
            kind=kind,
            tensors=len(found),
            nbytes=sum(self.tree.nbytes(leaf) for _, leaf in found),
            compared=compared,
            detail=detail,
        )


def _common_prefix(paths: list[Path]) -> Path:
    if len(paths) == 1:
        return paths[0]
    first = paths[0]
    n = 0
    while n < len(first) and all(len(p) > n and p[n] == first[n] for p in paths):
        n += 1
    return first[:n]


def _copy_labels(
    models: list[Path], flat: dict[Path, list[tuple[Path, Any]]], tree: Tree
) -> dict[Path, tuple[str, str]]:
    """A model with the same tensor names and shapes as another is its EMA/shadow copy when
    its path says so (``ema``, ``shadow``, ``averaged``, ``swa``) and the other's does not."""
    sigs: dict[Path, frozenset[tuple[str, Any]]] = {}
    for p in models:
        sigs[p] = frozenset((dotted(full[len(p) :]), tree.shape(leaf)) for full, leaf in flat[p])
    labels: dict[Path, tuple[str, str]] = {}
    for i, p in enumerate(models):
        for q in models[:i] + models[i + 1 :]:
            if sigs[p] and sigs[p] == sigs[q]:
                hint_p = bool(_COPY_HINT.search(dotted(p)))
                hint_q = bool(_COPY_HINT.search(dotted(q)))
                if hint_p and not hint_q:
                    labels[p] = ("ema", f"EMA/shadow copy of {dotted(q) or '(root)'}")
                    break
    return labels


def classify(root: Any, tree: Tree, *, label: str) -> Layout:
    """Classify the object tree of one checkpoint (see the module docstring)."""
    return _Classifier(root, tree, label).run(root)
