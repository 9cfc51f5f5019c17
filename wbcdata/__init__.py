"""Datasets: real loaders (fetched and verified), the procedural smear generator, WBC-centred crops."""
from wbcdata.datasets import dataset_domains, list_datasets, load_dataset
from wbcdata.registry import DATASETS, register_dataset
from core.sample import CLASSES, Sample

__all__ = ["CLASSES", "DATASETS", "Sample", "dataset_domains", "list_datasets", "load_dataset", "register_dataset"]
