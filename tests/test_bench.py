"""The benchmark runs (its numbers live in BENCHMARKS.md, never in a test)."""
from gankit import bench


def test_bench_smoke(tmp_path):
    out = bench.main(["--preset", "dcgan-64-cpu", "--steps", "1", "--warmup", "0", "--skip-jpeg",
                      "--json", str(tmp_path / "b.json")])
    assert out["gankit"]["images_per_s"] > 0 and out["plain"]["images_per_s"] > 0
    assert (tmp_path / "b.json").exists()


def test_throughput_smoke():
    out = bench.main(["--throughput", "vae-64-cpu", "--steps", "1", "--warmup", "0"])
    assert out["vae-64-cpu"]["images_per_s"] > 0
