"""Batch augmentation properties."""
import torch

from gankit.config import AugmentConfig
from gankit.data.augment import augment, hsv_to_rgb, rgb_to_hsv


def batch(n=64, res=8):
    return torch.rand(n, 3, res, res, generator=torch.Generator().manual_seed(0)) * 2 - 1


def test_all_off_is_identity():
    x = batch()
    assert torch.equal(augment(x, AugmentConfig(), torch.Generator()), x)


def test_flip_gives_image_or_mirror_and_both_occur():
    x = batch()
    y = augment(x, AugmentConfig(flip=True), torch.Generator().manual_seed(1))
    same = (y == x).flatten(1).all(1)
    mirrored = (y == x.flip(3)).flatten(1).all(1)
    assert (same | mirrored).all()
    assert same.any() and mirrored.any()


def test_rot90_gives_a_rotation_of_each_image_and_all_four_occur():
    x = batch()
    y = augment(x, AugmentConfig(rot90=True), torch.Generator().manual_seed(2))
    found = set()
    for i in range(len(x)):
        matches = [k for k in range(4) if torch.equal(y[i], torch.rot90(x[i], k, (1, 2)))]
        assert matches, f"image {i} is not a rotation of its input"
        found.add(matches[0])
    assert found == {0, 1, 2, 3}


def test_hsv_round_trip_and_known_values():
    x = (batch() + 1) / 2
    assert torch.allclose(hsv_to_rgb(rgb_to_hsv(x)), x, atol=1e-5)
    red = torch.tensor([1.0, 0.0, 0.0]).view(1, 3, 1, 1)
    assert torch.allclose(rgb_to_hsv(red).flatten(), torch.tensor([0.0, 1.0, 1.0]))
    cyan = torch.tensor([0.0, 0.5, 0.5]).view(1, 3, 1, 1)
    assert torch.allclose(rgb_to_hsv(cyan).flatten(), torch.tensor([0.5, 1.0, 0.5]))


def test_hsv_jitter_changes_colour_stays_in_range_and_is_seeded():
    x = batch()
    cfg = AugmentConfig(hsv=True, hue=0.1, saturation=0.3, value=0.3)
    y = augment(x, cfg, torch.Generator().manual_seed(3))
    assert y.min() >= -1 - 1e-6 and y.max() <= 1 + 1e-6
    assert (y - x).abs().mean() > 0.01
    assert torch.equal(y, augment(x, cfg, torch.Generator().manual_seed(3)))
    zero = AugmentConfig(hsv=True, hue=0.0, saturation=0.0, value=0.0)
    assert torch.allclose(augment(x, zero, torch.Generator()), x, atol=1e-5)
