"""Models stage: the SE-ResNet / ResNet family (one network class + a depth table), its registry and model folders."""

from ecgtool.core.artifacts import is_model_folder
from ecgtool.models.network import (ARCHS, DEPTHS, ECGResNet, ModelConfig, build_model, channel_plan, get_model,
                                    list_models, load_model, model_stats, register_model, save_model)

__all__ = ["ARCHS", "DEPTHS", "ECGResNet", "ModelConfig", "build_model", "channel_plan", "get_model", "is_model_folder",
           "list_models", "load_model", "model_stats", "register_model", "save_model"]
