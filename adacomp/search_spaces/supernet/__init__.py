"""The weight-sharing supernet (AdaSpring): elastic layers, layout, configurations, training.

Built automatically from a user's trained model where its layers allow (see layout.py); every
configuration extracts to a plain static model with no elastic code.
"""

from adacomp.search_spaces.supernet.arch import PRECISIONS, SubnetConfig, SupernetSpace
from adacomp.search_spaces.supernet.layout import RankLayer, SupernetLayout, WidthGroup, analyse_model
from adacomp.search_spaces.supernet.plans import SUPERNET_TECHNIQUES, config_of, plan_of
from adacomp.search_spaces.supernet.supernet import Supernet, SupernetOptions, recalibrate_batchnorm
from adacomp.search_spaces.supernet.training import (
    EnsembleBudget,
    EnsembleReport,
    StepLog,
    average_gradients,
    load_checkpoint,
    train_supernet,
)

__all__ = [
    "PRECISIONS",
    "SUPERNET_TECHNIQUES",
    "EnsembleBudget",
    "EnsembleReport",
    "RankLayer",
    "StepLog",
    "SubnetConfig",
    "Supernet",
    "SupernetLayout",
    "SupernetOptions",
    "SupernetSpace",
    "WidthGroup",
    "analyse_model",
    "average_gradients",
    "config_of",
    "load_checkpoint",
    "plan_of",
    "recalibrate_batchnorm",
    "train_supernet",
]
