"""Example plugin: importing it registers ``example_tiny_unet`` (see ``model.py``)."""
from wbc_example_plugin.model import TinyUNet, example_tiny_unet

__all__ = ["TinyUNet", "example_tiny_unet"]
