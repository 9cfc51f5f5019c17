"""Datasets: real loaders (fetched and verified), the procedural smear generator, WBC-centred crops."""
from benchmark.data.datasets import DATASETS, dataset_domains, list_datasets, load_dataset, register_dataset
from benchmark.data.sample import CLASSES, Sample

__all__ = ["CLASSES", "DATASETS", "Sample", "dataset_domains", "list_datasets", "load_dataset", "register_dataset"]
