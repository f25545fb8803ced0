"""The checkpoint graph of a study: parents, edges (training stages), lineages (base-to-leaf paths).

A checkpoint is a node; its ``parent`` is the checkpoint it was trained from; the edge parent -> child is one
post-training stage (its label is the child's ``stage``: sft, dpo, rl, rl-zero...). A checkpoint that is another
one's weights sampled differently (``variant_of``, e.g. the same Think model with thinking suppressed) is not part
of the tree: it is paired with the checkpoint it varies, for the chain-of-thought ablation.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from divtrace.errors import DivtraceError


@dataclass(frozen=True)
class CheckpointNode:
    """One checkpoint in the graph.

    Attributes:
        name: unique label (used in every table).
        stage: ``base``, ``sft``, ``dpo``, ``rl``, ``rl-zero``, ... (free text; ``base`` for roots).
        parent: the checkpoint this one was trained from; None for a base model.
        variant_of: for a re-sampling of another checkpoint's weights (thinking suppressed): that checkpoint.
        thinking: ``native`` or ``suppressed``.
    """

    name: str
    stage: str
    parent: str | None = None
    variant_of: str | None = None
    thinking: str = "native"


class LineageGraph:
    """A forest of checkpoints with its edges and lineages; validated on construction.

    Raises DivtraceError for duplicate names, unknown parents or ``variant_of`` targets, cycles, and a variant
    that also has a parent.
    """

    def __init__(self, nodes: Iterable[CheckpointNode]) -> None:
        self.nodes: dict[str, CheckpointNode] = {}
        for node in nodes:
            if node.name in self.nodes:
                raise DivtraceError(f"checkpoint {node.name!r} is defined twice")
            self.nodes[node.name] = node
        for node in self.nodes.values():
            if node.variant_of is not None:
                if node.variant_of not in self.nodes:
                    raise DivtraceError(f"checkpoint {node.name!r}: variant_of {node.variant_of!r} is not defined")
                if node.parent is not None:
                    raise DivtraceError(f"checkpoint {node.name!r}: a variant has no parent of its own")
            elif node.parent is not None and node.parent not in self.nodes:
                raise DivtraceError(f"checkpoint {node.name!r}: parent {node.parent!r} is not defined")
        for name in self.nodes:
            self.path_to_root(name)  # raises on cycles

    def tree_nodes(self) -> list[CheckpointNode]:
        """Checkpoints that are part of the tree (not variants), in definition order."""
        return [node for node in self.nodes.values() if node.variant_of is None]

    def variants(self) -> list[CheckpointNode]:
        """Re-samplings of other checkpoints (``variant_of`` set), in definition order."""
        return [node for node in self.nodes.values() if node.variant_of is not None]

    def path_to_root(self, name: str) -> list[str]:
        """``[root, ..., name]`` following parents (a variant follows the checkpoint it varies)."""
        path = [name]
        seen = {name}
        node = self.nodes[name]
        while True:
            parent = node.variant_of or node.parent
            if parent is None:
                return path[::-1]
            if parent in seen:
                raise DivtraceError(f"checkpoint {name!r}: its parents form a cycle ({' -> '.join(path)})")
            seen.add(parent)
            path.append(parent)
            node = self.nodes[parent]

    def base_of(self, name: str) -> str:
        """The root (base model) of ``name``'s lineage."""
        return self.path_to_root(name)[0]

    def edges(self) -> list[tuple[str, str]]:
        """Every (parent, child) training stage in the tree, in definition order."""
        return [(node.parent, node.name) for node in self.tree_nodes() if node.parent is not None]

    def children(self, name: str) -> list[str]:
        """The checkpoints trained from ``name``."""
        return [node.name for node in self.tree_nodes() if node.parent == name]

    def lineages(self) -> dict[str, list[str]]:
        """Each base-to-leaf path, named by its leaf: ``{leaf: [base, ..., leaf]}``."""
        leaves = [node.name for node in self.tree_nodes() if not self.children(node.name)]
        return {leaf: self.path_to_root(leaf) for leaf in leaves}

    def thinking_pairs(self) -> list[tuple[str, str]]:
        """(checkpoint, its thinking-suppressed variant) pairs, for the chain-of-thought ablation."""
        return [
            (node.variant_of, node.name)
            for node in self.variants()
            if node.variant_of is not None and node.thinking == "suppressed"
        ]
