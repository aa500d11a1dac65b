"""How a PyTorch checkpoint's tensors nest in its pickle: what writing the file back must keep.

``nesting_of(root, weights, weights_root)`` describes the object tree ``torch_pickle`` read,
when that tree is exactly a (possibly nested) dict of tensors: each dict's kind (``dict`` or
``OrderedDict``), its keys (str or int) in the file's order, an ``OrderedDict``'s plain
attribute state (a ``state_dict()``'s ``_metadata``), each tensor's ``requires_grad`` and the
name the reader gave it. Anything else in the tree (a list, a number, an object the reader
recorded without running it, an ``nn.Parameter``, a tensor subclass or one with hooks, a tensor
the reader does not count as a weight) gives a ``Nesting`` whose ``refused`` says what and
where, because a file written from the tensors alone would lose it.

The PyTorch reader attaches the result to ``Checkpoint.nesting``; the PyTorch writer
(``model_diff.writers.torch``) reads it and nothing else of the original file. This module
reads no file and runs nothing.
"""

from __future__ import annotations

import collections
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from .torch_pickle import ArrayTensor, PickledObject, PickledTensor, UnreadableTensor

__all__ = ["Leaf", "Nesting", "Node", "nesting_of"]

Key = str | int
#: Dicts nested deeper than this are refused (the structure classifier stops there too).
MAX_DEPTH = 64


@dataclass
class Leaf:
    """A tensor's place in the tree: its name in ``Checkpoint.tensors``."""

    name: str
    requires_grad: bool = False


@dataclass
class Node:
    """A dict (``ordered``: an ``OrderedDict``) of the tree, its items in the file's order."""

    ordered: bool
    items: list[tuple[Key, Node | Leaf]] = field(default_factory=list)
    state: dict[str, Any] | None = None  # an OrderedDict's attributes (state_dict's _metadata)


@dataclass(frozen=True)
class Nesting:
    """The tree of dicts holding the tensors (``root``), the keys leading from it to the
    dict the reader's names start at (``prefix``), or why there is no such tree."""

    root: Node | None
    prefix: tuple[Key, ...] = ()
    refused: str | None = None

    def names(self) -> set[str]:
        """The reader's names of every tensor in the tree."""
        return {leaf.name for leaf in _leaves(self.root)} if self.root is not None else set()


def _leaves(node: Node) -> Iterator[Leaf]:
    for _, v in node.items:
        if isinstance(v, Leaf):
            yield v
        else:
            yield from _leaves(v)


class _Refused(Exception):
    pass


_PLAIN = (str, int, float, bool, type(None))


def _is_plain(x: Any, depth: int = 0) -> bool:
    if isinstance(x, _PLAIN):
        return True
    if depth > MAX_DEPTH:
        return False
    if isinstance(x, (list, tuple)):
        return all(_is_plain(v, depth + 1) for v in x)
    if isinstance(x, dict):  # dict or OrderedDict (a state_dict's _metadata is one)
        return all(isinstance(k, _PLAIN) and _is_plain(v, depth + 1) for k, v in x.items())
    return False


def _what(obj: Any) -> str:
    if isinstance(obj, PickledObject):
        return f"a {obj.class_name} object"
    if isinstance(obj, UnreadableTensor):
        return obj.reason
    if isinstance(obj, ArrayTensor):
        return "a tensor saved from a device without storage"
    return f"a {type(obj).__name__}"


def nesting_of(
    root: Any, weights: Mapping[str, tuple[tuple[str, ...], Any]], weights_root: tuple[str, ...]
) -> Nesting:
    """The nesting of ``root`` (what ``torch_pickle`` returned). ``weights`` is the structure
    classifier's name -> (path in the file, leaf); ``weights_root`` the path its names are
    relative to (paths are str keys, as the classifier sees them)."""
    by_path = {path: name for name, (path, _) in weights.items()}

    def walk(obj: Any, path: tuple[str, ...], on_path: frozenset[int]) -> Node | Leaf:
        where = ".".join(path) or "the top level"
        if isinstance(obj, PickledTensor):
            if obj.wrapped is not None:
                raise _Refused(f"{obj.wrapped} at {where}")
            name = by_path.get(path)
            if name is None:
                raise _Refused(f"a tensor at {where} that is not part of the weights")
            return Leaf(name, obj.requires_grad)
        if not isinstance(obj, dict):
            raise _Refused(f"{_what(obj)} at {where} (not a dict of tensors)")
        if id(obj) in on_path or len(path) >= MAX_DEPTH:
            raise _Refused(f"dicts nested too deep (or in a cycle) at {where}")
        ordered = isinstance(obj, collections.OrderedDict)
        attrs = vars(obj) if ordered else None
        state = dict(attrs) if attrs else None
        if state is not None and not _is_plain(state):
            raise _Refused(f"non-plain attributes on the dict at {where}")
        if not ordered and type(obj) is not dict:
            raise _Refused(f"{_what(obj)} at {where}")
        node = Node(ordered, state=state)
        inner = on_path | {id(obj)}
        for k, v in obj.items():
            if isinstance(k, bool) or not isinstance(k, (str, int)):
                raise _Refused(f"a {type(k).__name__} key at {where}")
            node.items.append((k, walk(v, (*path, str(k)), inner)))
        return node

    try:
        top = walk(root, (), frozenset())
    except _Refused as e:
        return Nesting(None, refused=str(e))
    if not isinstance(top, Node):
        return Nesting(None, refused="a single tensor (not a dict of tensors)")
    prefix: list[Key] = []
    node = top
    for part in weights_root:
        found = next(((k, v) for k, v in node.items if str(k) == part), None)
        if found is None or not isinstance(found[1], Node):
            return Nesting(None, refused=f"weights under {'.'.join(weights_root)} not in dicts")
        prefix.append(found[0])
        node = found[1]
    return Nesting(top, tuple(prefix))
