"""Model zoo: ``create_model(name, **kw)`` builds any registered model; ``list_models()`` names them."""
from models.registry import MODELS, create_model, list_models, register_model

__all__ = ["MODELS", "create_model", "list_models", "register_model"]
