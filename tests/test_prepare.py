"""`gankit prepare`: sources, crops, labels, and files that cannot be decoded."""
import io

import numpy as np
import pytest
from PIL import Image

from gankit.cli import main
from gankit.data import PreparedDataset, prepare
from gankit.errors import GankitError
from tests.conftest import shared


def write_jpeg(path, size=(40, 50), colour=(200, 30, 30)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path, quality=95)


def test_folder_with_corrupt_files_skips_and_counts(tmp_path):
    src = tmp_path / "src"
    for i in range(5):
        write_jpeg(src / f"sub/good{i}.jpg", size=(30 + 10 * i, 60))
    Image.new("L", (20, 20), 128).save(src / "gray.png")
    Image.new("RGBA", (20, 20), (1, 2, 3, 4)).save(src / "rgba.png")
    (src / "random.jpg").write_bytes(np.random.default_rng(0).bytes(3000))
    (src / "empty.jpg").write_bytes(b"")
    buf = io.BytesIO()
    Image.new("RGB", (64, 64), (10, 200, 10)).save(buf, "JPEG")
    (src / "truncated.jpg").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    (src / "notes.txt").write_text("not an image, not listed")
    meta = prepare("folder", [src], 32, tmp_path / "out", progress=False, workers=2)
    assert meta["count"] == 7 and meta["skipped_count"] == 3
    assert sorted(s["file"].rsplit("/", 1)[1] for s in meta["skipped"]) == ["empty.jpg", "random.jpg", "truncated.jpg"]
    ds = PreparedDataset(tmp_path / "out")
    assert ds.images.shape == (7, 32, 32, 3) and ds.images.dtype == np.uint8
    assert (tmp_path / "out" / "files.txt").read_text().count("\n") == 7
    assert not list(tmp_path.glob("out.partial*"))


def test_centre_crop_and_antialiased_resize(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    im = Image.new("RGB", (300, 200), (0, 0, 255))  # blue border left and right
    im.paste((255, 0, 0), (50, 0, 250, 200))  # red centre square
    im.save(src / "a.png")
    prepare("folder", [src], 32, tmp_path / "out", progress=False, workers=1)
    x = np.load(tmp_path / "out" / "images.npy")[0].astype(int)
    assert (x[..., 0] > 250).all() and (x[..., 2] < 5).all()


def test_missing_and_empty_paths_are_one_line_errors(tmp_path, capsys):
    assert main(["prepare", "folder", str(tmp_path / "nope"), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("gankit: error:") and "nope" in err and "\n" not in err
    (tmp_path / "empty").mkdir()
    with pytest.raises(GankitError, match="no images"):
        prepare("folder", [tmp_path / "empty"], 32, tmp_path / "o2", progress=False)


def test_existing_output_is_not_overwritten_by_accident(tmp_path):
    write_jpeg(tmp_path / "src" / "a.jpg")
    prepare("folder", [tmp_path / "src"], 32, tmp_path / "out", progress=False, workers=1)
    with pytest.raises(GankitError, match="already exists"):
        prepare("folder", [tmp_path / "src"], 32, tmp_path / "out", progress=False, workers=1)
    prepare("folder", [tmp_path / "src"], 64, tmp_path / "out", progress=False, workers=1, overwrite=True)
    assert PreparedDataset(tmp_path / "out").res == 64


def make_celeba(root, n=5):
    img = root / "img_align_celeba"
    for i in range(1, n + 1):
        write_jpeg(img / f"{i:06d}.jpg", size=(178, 218), colour=(10 * i, 100, 100))
    names = "Smiling Male Young".split()
    rows = [f"{i:06d}.jpg {' '.join(['1', '-1', ' 1'][j] if (i + j) % 2 else '-1' for j in range(3))}"
            for i in range(1, n)]  # one image has no attribute row
    # count line says 202599 (do not trust it), CRLF endings, no final newline
    (root / "list_attr_celeba.txt").write_bytes("\r\n".join(["202599", " ".join(names)] + rows).encode())
    (root / "list_eval_partition.txt").write_text("\n".join(f"{i:06d}.jpg {i % 3}" for i in range(1, n + 1)))


def test_celeba_attributes_and_partition(tmp_path):
    make_celeba(tmp_path / "celeba")
    meta = prepare("celeba", [tmp_path / "celeba"], 32, tmp_path / "out", progress=False, workers=1)
    ds = PreparedDataset(tmp_path / "out")
    assert meta["count"] == 5 and meta["attributes"] == ["Smiling", "Male", "Young"]
    assert meta["images_without_attributes"] == 1
    assert ds.attrs.shape == (5, 3) and set(np.unique(ds.attrs)) <= {-1, 0, 1}
    assert (ds.attrs[4] == 0).all() and (ds.attrs[:4] != 0).all()
    assert ds.partition.tolist() == [1, 2, 0, 1, 2]
    assert ds.attribute("Smiling").tolist() == [1, -1, 1, -1, 0]


def test_cifar10_npz_and_flowers17_layout(tmp_path):
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "c.npz", x_train=rng.integers(0, 255, (6, 32, 32, 3), dtype=np.uint8),
             y_train=np.arange(6), x_test=rng.integers(0, 255, (2, 32, 32, 3), dtype=np.uint8), y_test=[1, 2])
    meta = prepare("cifar10", [tmp_path / "c.npz"], 32, tmp_path / "c", progress=False)
    ds = PreparedDataset(tmp_path / "c")
    assert meta["count"] == 8 and ds.labels.tolist() == [0, 1, 2, 3, 4, 5, 1, 2]
    assert ds.partition.tolist() == [0] * 6 + [2] * 2
    assert np.array_equal(ds.images[:6], np.load(tmp_path / "c.npz")["x_train"])

    for cls in (0, 3):
        for k in range(2):
            write_jpeg(tmp_path / "f17" / "jpg" / str(cls) / f"image_{cls * 80 + k + 1:04d}.jpg")
    prepare("flowers", [tmp_path / "f17"], 32, tmp_path / "f", progress=False, workers=1)
    assert PreparedDataset(tmp_path / "f").labels.tolist() == [0, 0, 3, 3]


def test_toyfaces_attributes_match_drawing(tmp_path):
    from gankit.data.toyfaces import draw_face
    prepare("toyfaces", [], 32, tmp_path / "t", count=20, progress=False, workers=1)
    ds = PreparedDataset(tmp_path / "t")
    for i in (0, 7, 19):
        img, attrs = draw_face(i, 32)
        assert np.array_equal(ds.images[i], img) and np.array_equal(ds.attrs[i], attrs)
    assert len(ds.meta["attributes"]) == ds.attrs.shape[1]


def test_real_celeba_half_size_and_full_size(tmp_path):
    root = shared("celeba")
    meta = prepare("celeba", [root], 64, tmp_path / "half", limit=64, progress=False)
    assert meta["count"] == 64 and meta["images_dir"].endswith("img_align_celeba_89x109")
    ds = PreparedDataset(tmp_path / "half")
    assert len(ds.meta["attributes"]) == 40 and (ds.attrs != 0).all() and (ds.partition == 0).all()
    meta = prepare("celeba", [root], 64, tmp_path / "full", images="img_align_celeba", progress=False)
    assert meta["count"] == 32
    full, half = PreparedDataset(tmp_path / "full").images[:32].astype(float), ds.images[:32].astype(float)
    assert np.abs(full - half).mean() < 12  # same faces, same crop, through two resolutions


def test_real_flowers17(tmp_path):
    root = shared("flowers17")
    meta = prepare("flowers", [root], 32, tmp_path / "f", progress=False)
    ds = PreparedDataset(tmp_path / "f")
    assert meta["count"] == 1360 and np.bincount(ds.labels).tolist() == [80] * 17
