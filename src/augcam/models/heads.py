"""The fast CAM path's premise, proved from the model's graph: global average pooling → linear.

`find_linear_head(model, layer)` traces the model with torch.fx, keeping the target layer as one
node, and follows that node's output to the logits. It returns a `LinearHead` only when the path
is exactly: the layer (used by nothing else) → a global average pooling → flatten / dropout /
identity → one `nn.Linear` → the output. Anything else on the way (an activation, a norm, a
second use of the layer, a model fx cannot trace) gives None, and CAMs take the general path.
"""

from __future__ import annotations

import torch
import torch.fx
from torch import nn

from augcam.models.base import LinearHead

_PASS_THROUGH_MODULES = (nn.Flatten, nn.Dropout, nn.Identity)
_FLATTENS = (torch.flatten,)


class _KeepLayer(torch.fx.Tracer):
    def __init__(self, layer: str):
        super().__init__()
        self.layer = layer

    def is_leaf_module(self, module: nn.Module, qualified_name: str) -> bool:
        return qualified_name == self.layer or super().is_leaf_module(module, qualified_name)


def _only_user(node: torch.fx.Node) -> torch.fx.Node | None:
    users = list(node.users)
    return users[0] if len(users) == 1 and users[0].args and users[0].args[0] is node else None


def _is_global_average_pool(module: nn.Module | None) -> bool:
    return isinstance(module, nn.AdaptiveAvgPool2d) and module.output_size in (1, (1, 1))


def find_linear_head(model: nn.Module, layer: str) -> LinearHead | None:
    """The model's `LinearHead` after `layer`, when its graph proves one; else None."""
    try:
        graph = _KeepLayer(layer).trace(model)
    except Exception:  # data-dependent control flow: nothing is proved, the general path is exact
        return None
    modules = dict(model.named_modules())
    node = next((n for n in graph.nodes if n.op == "call_module" and n.target == layer), None)
    pool = None
    while node is not None:
        node = _only_user(node)
        if node is None:
            return None
        module = modules.get(node.target) if node.op == "call_module" else None
        if pool is None:
            if not _is_global_average_pool(module):
                return None
            pool = node.target
        elif isinstance(module, nn.Linear):
            following = list(node.users)
            is_output = len(following) == 1 and following[0].op == "output"
            return LinearHead(layer, pool, node.target) if is_output else None
        elif not (
            isinstance(module, _PASS_THROUGH_MODULES)
            or (node.op == "call_function" and node.target in _FLATTENS)
            or (node.op == "call_method" and node.target == "flatten")
        ):
            return None
    return None
