"""What can be done to a model: techniques, plans, compression, facts, export, search spaces.

Knows nothing of Ray, MLflow or devices.
"""

from adacomp.search_spaces.compress import compress, compressible_layers, validate_plan
from adacomp.search_spaces.export import export_onnx
from adacomp.search_spaces.facts import ModelFacts, encoded_weight_bytes, model_facts
from adacomp.search_spaces.params import ChoiceParam, FloatParam, IntParam, ParamSpec
from adacomp.search_spaces.plan import CompressionPlan, Step
from adacomp.search_spaces.sites import LayerSite, trace_sites
from adacomp.search_spaces.space import LayerSpace, SearchSpace, build_space
from adacomp.search_spaces.techniques import (
    Encoding,
    Stage,
    Technique,
    get_technique,
    register_technique,
    registered_techniques,
)

__all__ = [
    "ChoiceParam",
    "CompressionPlan",
    "Encoding",
    "FloatParam",
    "IntParam",
    "LayerSite",
    "LayerSpace",
    "ModelFacts",
    "ParamSpec",
    "SearchSpace",
    "Stage",
    "Step",
    "Technique",
    "build_space",
    "compress",
    "compressible_layers",
    "encoded_weight_bytes",
    "export_onnx",
    "get_technique",
    "model_facts",
    "register_technique",
    "registered_techniques",
    "trace_sites",
    "validate_plan",
]
