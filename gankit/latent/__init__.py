"""Latent-space tools: interpolation, projection, PCA and attribute directions, montages."""
from .directions import PCA, difference_of_means, linear_direction, offsets, pca, spread, unit
from .interpolate import lerp, paths, slerp
from .project import Projection, project

__all__ = ["PCA", "Projection", "difference_of_means", "lerp", "linear_direction", "offsets", "paths", "pca",
           "project", "slerp", "spread", "unit"]
