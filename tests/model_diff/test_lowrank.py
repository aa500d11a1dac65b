"""Low-rank structure of weight deltas: planted ranks recovered, honest "> k", bounded cost."""

from __future__ import annotations

from typing import Any

import ml_dtypes
import numpy as np
import pytest

from model_diff import lowrank
from model_diff.analysis import DiffAnalyzer
from model_diff.checkpoint import from_arrays
from model_diff.diff import DiffConfig, ModelDiff
from model_diff.lowrank import analyze_delta, gaussian_sketch


def _planted(
    m: int, n: int, rank: int, seed: int = 0, scale: float = 1e-3
) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    a = (rng.standard_normal((m, n)) / np.sqrt(n)).astype(np.float32)
    delta = rng.standard_normal((m, rank)) @ rng.standard_normal((rank, n)) * scale
    return a, (a + delta).astype(np.float32)


def _reference_ranks(a: np.ndarray, b: np.ndarray) -> tuple[int, int]:
    s = np.linalg.svd(b.astype(np.float64) - a.astype(np.float64), compute_uv=False)
    cum = np.cumsum(s**2) / np.sum(s**2)
    return int(np.argmax(cum >= 0.9)) + 1, int(np.argmax(cum >= 0.99)) + 1


def test_planted_rank_4_in_1024x1024_is_recovered() -> None:
    """A rank-4 update of a 1024x1024 matrix reports rank 4 at 90% and 99% energy."""
    a, b = _planted(1024, 1024, 4)
    r = analyze_delta(a.ravel(), b.ravel(), (1024, 1024))
    assert r is not None
    assert r["method"] == "randomized"
    assert r["rank_90"] <= 4 and r["rank_99"] == 4
    assert 3.0 < r["effective_rank"] <= 4.01
    assert r["captured_energy"] > 0.999999 and r["spectrum_complete"] is True


def test_decaying_spectrum_ranks_match_an_exact_svd() -> None:
    """On a geometrically decaying spectrum the sketch's 90%/99% ranks equal the exact ones."""
    rng = np.random.default_rng(3)
    m, n = 400, 300
    u, _ = np.linalg.qr(rng.standard_normal((m, 40)))
    v, _ = np.linalg.qr(rng.standard_normal((n, 40)))
    s = 0.8 ** np.arange(40)
    a = rng.standard_normal((m, n)).astype(np.float32)
    b = (a + (u * s) @ v.T).astype(np.float32)
    r = analyze_delta(a.ravel(), b.ravel(), (m, n))
    assert r is not None and r["method"] == "randomized"
    assert (r["rank_90"], r["rank_99"]) == _reference_ranks(a, b)


def test_full_rank_noise_reports_more_than_the_limit_not_a_made_up_rank() -> None:
    """A full-rank update is reported as rank None (> rank_limit) with the energy captured."""
    rng = np.random.default_rng(1)
    a = rng.standard_normal((512, 256)).astype(np.float32)
    b = a + rng.standard_normal((512, 256)).astype(np.float32) * 1e-2
    r = analyze_delta(a.ravel(), b.ravel(), (512, 256))
    assert r is not None
    assert r["rank_90"] is None and r["rank_99"] is None
    # noise holds little energy in its top directions: the narrow sketch settles it
    assert r["rank_limit"] == lowrank.FIRST_SKETCH
    assert r["captured_energy"] < 0.5 and r["spectrum_complete"] is False


def test_a_mid_rank_update_widens_the_sketch_and_finds_its_rank() -> None:
    """Rank 40 (> the first sketch, < the limit): the sketch is widened and rank 40 found."""
    a, b = _planted(600, 500, 40, scale=1e-2)
    r = analyze_delta(a.ravel(), b.ravel(), (600, 500))
    assert r is not None and r["rank_limit"] == lowrank.RANK_LIMIT
    assert (r["rank_90"], r["rank_99"]) == _reference_ranks(a, b)
    assert r["rank_99"] <= 40


@pytest.mark.parametrize("shape", [(48, 700), (700, 48), (64, 64)])
def test_small_side_uses_an_exact_spectrum(shape: tuple[int, int]) -> None:
    """Matrices with a side <= the limit get exact singular values (checked against SVD)."""
    rng = np.random.default_rng(2)
    a = rng.standard_normal(shape).astype(np.float32)
    b = (a + rng.standard_normal(shape).astype(np.float32) * 0.1).astype(np.float32)
    r = analyze_delta(a.ravel(), b.ravel(), shape)
    assert r is not None and r["method"] == "exact"
    ref = np.linalg.svd(b.astype(np.float64) - a.astype(np.float64), compute_uv=False)
    np.testing.assert_allclose(r["top_singular_values"], ref[:8], rtol=1e-6)
    assert (r["rank_90"], r["rank_99"]) == _reference_ranks(a, b)


def test_auto_skips_matrices_above_the_limit_unless_forced(monkeypatch: pytest.MonkeyPatch) -> None:
    """ "auto" skips a matrix larger than AUTO_MAX_ELEMENTS; force=True analyses it anyway."""
    monkeypatch.setattr(lowrank, "AUTO_MAX_ELEMENTS", 100 * 100 - 1)
    a, b = _planted(100, 100, 2)
    assert analyze_delta(a.ravel(), b.ravel(), (100, 100)) is None
    forced = analyze_delta(a.ravel(), b.ravel(), (100, 100), force=True)
    assert forced is not None and forced["rank_99"] == 2


def test_zero_and_nonfinite_deltas() -> None:
    """An all-zero delta is rank 0; a delta with NaN is skipped with the reason."""
    a = np.ones((80, 90), dtype=np.float32)
    r = analyze_delta(a.ravel(), a.ravel().copy(), (80, 90))
    assert r is not None and r["rank_90"] == 0 and r["rank_99"] == 0
    b = a.copy()
    b[3, 4] = np.nan
    r = analyze_delta(a.ravel(), b.ravel(), (80, 90))
    assert r == {"skipped": "non-finite delta", "method": "randomized"}


def test_bfloat16_delta_is_analysed() -> None:
    """bfloat16 inputs are upcast chunk by chunk and give the planted rank."""
    a, b = _planted(256, 128, 3, scale=1e-1)
    a16, b16 = a.astype(ml_dtypes.bfloat16), b.astype(ml_dtypes.bfloat16)
    r = analyze_delta(a16.ravel(), b16.ravel(), (256, 128))
    assert r is not None and r["rank_90"] is not None and r["rank_90"] <= 3


def test_result_is_deterministic() -> None:
    """Two runs on the same delta give identical results (fixed sketch seed, no timing)."""
    a, b = _planted(300, 200, 5)
    assert analyze_delta(a.ravel(), b.ravel(), (300, 200)) == analyze_delta(
        a.ravel(), b.ravel(), (300, 200)
    )


def test_sketch_matrix_is_pinned_and_standard_normal() -> None:
    """The sketch's test matrix is a fixed function of its shape (no numpy.random stream,
    which numpy does not promise across versions): pinned values, N(0, 1) statistics,
    uncorrelated columns, read-only (it is cached and shared between threads)."""
    assert gaussian_sketch(3, 2).ravel().tolist() == pytest.approx(
        [
            -0.45521900057792664,
            0.7756529450416565,
            -0.9820618033409119,
            -0.5976510643959045,
            -0.40415966510772705,
            -1.0546042919158936,
        ],
        rel=1e-6,
    )
    g = gaussian_sketch(4096, 64).astype(np.float64)
    assert g.dtype == np.float64 and np.isfinite(g).all()
    assert abs(g.mean()) < 0.01 and abs(g.std() - 1.0) < 0.01
    assert abs(np.mean(np.abs(g) > 1.96) - 0.05) < 0.005  # the normal's two-sided 5% tail
    corr = np.corrcoef(g.T)
    assert np.abs(corr - np.eye(64)).max() < 0.08
    with pytest.raises(ValueError):
        gaussian_sketch(3, 2)[0, 0] = 1.0


def test_non_2d_shapes_are_not_analysed() -> None:
    """Vectors and 3-D tensors are outside the analysis (None)."""
    x = np.zeros(64, dtype=np.float32)
    assert analyze_delta(x, x, (64,)) is None
    assert analyze_delta(x, x, (4, 4, 4)) is None


def test_model_diff_fills_low_rank_and_analysis_reports_lora_extractable() -> None:
    """Through ModelDiff, a LoRA-merged tensor carries its ranks and yields low-rank-delta."""
    a, b = _planted(256, 128, 4, scale=1e-2)
    rng = np.random.default_rng(9)
    noise_a = rng.standard_normal((256, 128)).astype(np.float32)
    noise_b = noise_a + rng.standard_normal((256, 128)).astype(np.float32) * 1e-2
    old = from_arrays({"layers.0.attn.q_proj.weight": a, "layers.0.mlp.up_proj.weight": noise_a})
    new = from_arrays({"layers.0.attn.q_proj.weight": b, "layers.0.mlp.up_proj.weight": noise_b})
    diffs, summary = ModelDiff(DiffConfig(include_unchanged=True)).diff(old, new)
    by_name = {d.name: d for d in diffs}
    assert by_name["layers.0.attn.q_proj.weight"].low_rank["rank_99"] == 4
    assert by_name["layers.0.mlp.up_proj.weight"].low_rank["rank_99"] is None
    analysis = DiffAnalyzer().analyze(diffs, summary)
    (lr,) = [i for i in analysis["insights"] if i["code"] == "low-rank-delta"]
    assert lr["evidence"]["tensors"] == ["layers.0.attn.q_proj.weight"]
    assert lr["evidence"]["rank_99"] == {"layers.0.attn.q_proj.weight": 4}
    assert analysis["low_rank"]["analysed"] == 2
    off, _ = ModelDiff(DiffConfig(low_rank=False)).diff(old, new)
    assert all(d.low_rank is None for d in off)


def test_reused_buffers_give_the_results_of_fresh_ones() -> None:
    """Analyses on one thread share its two scratch buffers (fresh ones cost page faults):
    a smaller matrix after a larger one, a bfloat16 one among float32 ones, and a matrix
    analysed again each give what a thread with no buffers yet gives; ``release_scratch``
    drops them."""
    from concurrent.futures import ThreadPoolExecutor

    big, small = _planted(512, 256, 6, seed=1), _planted(100, 80, 3, seed=2)
    a16, b16 = (x.astype(ml_dtypes.bfloat16) for x in _planted(256, 200, 4, scale=1e-1))
    jobs = [
        (big[0].ravel(), big[1].ravel(), (512, 256), (None, None)),
        (small[0].ravel(), small[1].ravel(), (100, 80), (None, None)),
        (a16.view(np.uint16).ravel(), b16.view(np.uint16).ravel(), (256, 200), ("bfloat16",) * 2),
    ]

    def fresh(job: tuple[Any, ...]) -> dict[str, Any] | None:
        lowrank.release_scratch()
        return analyze_delta(job[0], job[1], job[2], dtypes=job[3])

    with ThreadPoolExecutor(1) as pool:  # a thread with no buffers for each job
        want = [pool.submit(fresh, job).result() for job in jobs]
    lowrank.release_scratch()
    got = [analyze_delta(j[0], j[1], j[2], dtypes=j[3]) for j in jobs + jobs[::-1]]
    assert got == want + want[::-1]
    assert lowrank._SCRATCH.buffers[0].size == 512 * 256
    lowrank.release_scratch()
    assert not hasattr(lowrank._SCRATCH, "buffers")


def test_model_diff_drops_the_callers_scratch_buffers() -> None:
    """A diff whose low-rank analyses ran on the calling thread (a small pair) leaves no
    scratch buffers behind on it."""
    a, b = _planted(128, 96, 2)
    ModelDiff(DiffConfig(low_rank="auto")).diff(
        from_arrays({"l.0.attn.q_proj.weight": a}), from_arrays({"l.0.attn.q_proj.weight": b})
    )
    assert not hasattr(lowrank._SCRATCH, "buffers")


def test_blas_thread_setting_is_restored_after_concurrent_analyses() -> None:
    """The single-threaded BLAS window ends with the caller's thread count restored."""
    from concurrent.futures import ThreadPoolExecutor

    from model_diff import blas

    api = blas._BLAS._lookup()
    if api is None:
        pytest.skip("numpy's bundled OpenBLAS not found: the window is a no-op here")
    before = int(api[1]())
    a, b = _planted(300, 200, 3)
    with ThreadPoolExecutor(4) as pool:
        results = list(
            pool.map(lambda _: analyze_delta(a.ravel(), b.ravel(), (300, 200)), range(8))
        )
    assert all(r is not None and r["rank_99"] == 3 for r in results)
    assert int(api[1]()) == before


@pytest.mark.parametrize("shape", [(40, 100), (100, 40), (100, 100)])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf, "both-inf", "huge"])
def test_nonfinite_and_huge_deltas_are_skipped_without_numpy_warnings(
    shape: tuple[int, int], bad: object
) -> None:
    """NaN/Inf (on one side or both), or finite values whose products leave float32, give a
    'skipped' record; numpy's RuntimeWarning never reaches the user (pytest -W error)."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal(shape[0] * shape[1]).astype(np.float32)
    b = a + np.float32(1e-2) * rng.standard_normal(a.size).astype(np.float32)
    if bad == "both-inf":
        a[3] = b[3] = np.inf  # inf - inf: "invalid value encountered in subtract"
    elif bad == "huge":  # finite, but the sketch's float32 products overflow
        b = np.where(rng.random(a.size) < 0.5, 3e38, -3e38).astype(np.float32)
    else:
        b[3] = bad
    r = analyze_delta(a, b, shape, force=True)
    assert r is not None
    if bad == "huge" and min(shape) <= lowrank.RANK_LIMIT:
        assert r["method"] == "exact" and r["rank_99"] is not None  # float64: no overflow
    else:
        assert "skipped" in r and "rank_90" not in r
