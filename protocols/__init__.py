"""Protocol registry: a protocol turns a seed into splits (data), written once as hashed manifests."""
from protocols.registry import PROTOCOLS, get_protocol, list_protocols, register_protocol
from protocols.split import Split, TestTarget

__all__ = ["PROTOCOLS", "Split", "TestTarget", "get_protocol", "list_protocols", "register_protocol"]
