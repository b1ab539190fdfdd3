"""scikit-learn's shipped data sets (bundled with the package: nothing is downloaded)."""

from __future__ import annotations

import numpy as np

from widenet.errors import WidenetError

#: widenet name -> the ``sklearn.datasets`` loader of the set (points x features, task).
SKLEARN_SETS = {
    "digits": "load_digits",  # 1797 x 64, 10 classes (8x8 images, pixel values 0..16)
    "digits-images": "load_digits",  # 1797 x 1 x 8 x 8: the digits as one-channel images
    "breast-cancer": "load_breast_cancer",  # 569 x 30, 2 classes
    "iris": "load_iris",  # 150 x 4, 3 classes
    "wine": "load_wine",  # 178 x 13, 3 classes
    "diabetes": "load_diabetes",  # 442 x 10, regression (sklearn's centered, scaled features)
}
#: the sets read as images: name -> the shape (C, H, W) of one point.
SKLEARN_IMAGE_SHAPES = {"digits-images": (1, 8, 8)}


def sklearn_arrays(name: str) -> dict[str, np.ndarray]:
    """The inputs ``x`` and targets ``y`` of the shipped set ``name`` (a key of
    :data:`SKLEARN_SETS`), as ``sklearn.datasets.<loader>(return_X_y=True)`` gives them:
    integer class labels for the classification sets, float targets for "diabetes".
    The sets of :data:`SKLEARN_IMAGE_SHAPES` have ``x`` reshaped to images (n, C, H, W)
    (digits: the 64 features are the 8x8 pixels row by row)."""
    if name not in SKLEARN_SETS:
        raise WidenetError(f"unknown scikit-learn set {name!r}; choose one of "
                           f"{', '.join(SKLEARN_SETS)}")
    from sklearn import datasets  # imported here: scikit-learn is slow to import

    x, y = getattr(datasets, SKLEARN_SETS[name])(return_X_y=True)
    if name in SKLEARN_IMAGE_SHAPES:
        x = x.reshape(-1, *SKLEARN_IMAGE_SHAPES[name])
    return {"x": x, "y": y}
