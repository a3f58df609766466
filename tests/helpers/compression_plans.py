"""`MIXED`, a multi-technique plan for conftest's SmallCNN: for test_compress and test_export."""

from __future__ import annotations

from adacomp.search_spaces import CompressionPlan, Step

MIXED = CompressionPlan.from_mapping(
    {
        "features.conv1": [Step.of("channel_prune", ratio=0.5)],
        "features.conv2": [
            Step.of("channel_prune", ratio=0.25),
            Step.of("depthwise_separable", multiplier=2),
            Step.of("quantize", precision="int8"),
        ],
        "features.conv3": [
            Step.of("fire", squeeze_ratio=0.5, expand_1x1_fraction=0.5),
            Step.of("magnitude_prune", sparsity=0.5),
        ],
        "fc1": [Step.of("gap_head"), Step.of("magnitude_prune", sparsity=0.3)],
        "fc2": [Step.of("low_rank", rank_fraction=0.5), Step.of("quantize", precision="int8")],
    }
)
