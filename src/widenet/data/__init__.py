"""Data sets for wide-network studies, each named and seeded so that a config rebuilds it.

:func:`load_dataset` is the single entry point; the generators, readers and transforms it
composes are public too. See docs/data.md for every set's distribution and options.
"""

from widenet.data.arrays import from_arrays
from widenet.data.corruption import corrupt_labels, corruption_generator
from widenet.data.dataset import Dataset, Task
from widenet.data.files import read_csv, read_npz
from widenet.data.image_files import (
    read_cifar10,
    read_cifar10_batch,
    read_idx,
    read_image_folder,
    read_mnist,
)
from widenet.data.registry import SYNTHETIC_SETS, dataset_names, load_dataset
from widenet.data.sklearn_sets import SKLEARN_IMAGE_SHAPES, SKLEARN_SETS, sklearn_arrays
from widenet.data.synthetic import (
    noisy_clusters,
    random_direction,
    separable,
    sphere_points,
    sphere_regression,
    teacher_network,
    teacher_student,
    two_spirals,
)
from widenet.data.transforms import NORMALIZATIONS, normalize, sphere_normalize, standardize

__all__ = [
    "NORMALIZATIONS",
    "SKLEARN_IMAGE_SHAPES",
    "SKLEARN_SETS",
    "SYNTHETIC_SETS",
    "Dataset",
    "Task",
    "corrupt_labels",
    "corruption_generator",
    "dataset_names",
    "from_arrays",
    "load_dataset",
    "noisy_clusters",
    "normalize",
    "random_direction",
    "read_cifar10",
    "read_cifar10_batch",
    "read_csv",
    "read_idx",
    "read_image_folder",
    "read_mnist",
    "read_npz",
    "separable",
    "sklearn_arrays",
    "sphere_normalize",
    "sphere_points",
    "sphere_regression",
    "standardize",
    "teacher_network",
    "teacher_student",
    "two_spirals",
]
