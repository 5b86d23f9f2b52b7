"""Evaluation: the FID Inception network, Frechet distance and KID, gankit's own feature network."""
