"""Compression techniques, one module each, registered by name.

Add your own: subclass `Technique` (see `_base.py` for the contract) and call
`register_technique(MyTechnique())`.
"""

from adacomp.search_spaces.techniques._base import (
    DENSE_FP32,
    Encoding,
    ExportTechnique,
    Stage,
    StructuralTechnique,
    Technique,
    Unit,
)
from adacomp.search_spaces.techniques._registry import (
    get_technique,
    register_technique,
    registered_techniques,
    unregister_technique,
)
from adacomp.search_spaces.techniques.channel_prune import ChannelPrune
from adacomp.search_spaces.techniques.depthwise_separable import (
    DepthwiseSeparable,
    DepthwiseSeparableConv,
)
from adacomp.search_spaces.techniques.fire import Fire, FireModule
from adacomp.search_spaces.techniques.gap_head import GapLinear, GlobalAveragePoolingHead
from adacomp.search_spaces.techniques.low_rank import LowRank, LowRankFactorization
from adacomp.search_spaces.techniques.magnitude_prune import MagnitudePrune
from adacomp.search_spaces.techniques.quantize import Quantize
from adacomp.search_spaces.techniques.skip_block import SkipBlock

for _technique in (
    MagnitudePrune(),
    ChannelPrune(),
    LowRankFactorization(),
    DepthwiseSeparableConv(),
    FireModule(),
    GlobalAveragePoolingHead(),
    Quantize(),
    SkipBlock(),
):
    register_technique(_technique, replace=True)

__all__ = [
    "DENSE_FP32",
    "ChannelPrune",
    "DepthwiseSeparable",
    "DepthwiseSeparableConv",
    "Encoding",
    "ExportTechnique",
    "Fire",
    "FireModule",
    "GapLinear",
    "GlobalAveragePoolingHead",
    "LowRank",
    "LowRankFactorization",
    "MagnitudePrune",
    "Quantize",
    "SkipBlock",
    "Stage",
    "StructuralTechnique",
    "Technique",
    "Unit",
    "get_technique",
    "register_technique",
    "registered_techniques",
    "unregister_technique",
]
