"""compare_training_stages and ``model-diff timeline`` over a sequence of checkpoints."""

from __future__ import annotations

import functools
import json
import re
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from model_diff import compare_training_stages
from model_diff.checkpoint import Checkpoint, from_arrays
from model_diff.cli import cli
from model_diff.errors import LFSObjectMissingError, ModelDiffError
from model_diff.report.formatting import fmt_fold, fmt_pct
from model_diff.report.timeline import render_json, render_text, render_timeline
from model_diff.runs import expand
from model_diff.timeline import Source, run_timeline, sources_from, trend
from model_diff.toy import fine_tune, save_safetensors, toy_transformer
from tests.conftest import run_model_diff
from tests.model_diff.training_run import (
    GLOBAL_STEPS,
    NAN_BLOCKS,
    SPIKE_STEP,
    file_name,
    save_run,
    training_states,
)


def _stages() -> list[dict[str, np.ndarray]]:
    """Step 1 trains everything but the embeddings; step 2 freezes block 0 as well."""
    s0 = toy_transformer(n_blocks=4, d_model=16, vocab=32, seed=0)
    s1 = fine_tune(s0, seed=1)
    s2 = fine_tune(
        s1, seed=2, frozen=lambda n: n.startswith(("model.layers.0.", "model.embed_tokens"))
    )
    return [s0, s1, s2]


def _checkpoints() -> list[Checkpoint]:
    return [from_arrays(sd, path=f"step{i}") for i, sd in enumerate(_stages())]


def test_rows_follow_each_block_across_steps() -> None:
    """Each block gets one change per step; a block frozen in step 2 shows 0.0 there."""
    result = compare_training_stages(_checkpoints())
    assert result["checkpoints"] == ["step0", "step1", "step2"]
    assert [(s["from"], s["to"]) for s in result["steps"]] == [
        ("step0", "step1"),
        ("step1", "step2"),
    ]
    rows = {r["label"]: r for r in result["rows"]}
    assert [r["label"] for r in result["rows"]][:2] == ["embedding", "model.layers.0"]
    block0 = rows["model.layers.0"]
    assert block0["kind"] == "block" and block0["depth"] == 0.0
    assert block0["changes"][0] > 0.0 and block0["changes"][1] == 0.0
    assert block0["trend"] == "falling"
    assert rows["embedding"]["changes"] == [0.0, 0.0] and rows["embedding"]["trend"] == "frozen"
    # later blocks move more in every step (fine_tune's depth weighting)
    last = rows["model.layers.3"]["changes"]
    assert all(x > y for x, y in zip(last, rows["model.layers.1"]["changes"], strict=True))
    assert result["steps"][0]["change_pattern"] == "inverse_gradient"
    assert "frozen-layers" in [i["code"] for i in result["steps"][1]["insights"]]


def test_step_values_equal_a_direct_block_aggregate() -> None:
    """A row's value is sqrt(sum ||delta||^2 / sum ||old||^2) over the block's tensors."""
    s0, s1, _ = _stages()
    result = compare_training_stages([from_arrays(s0), from_arrays(s1)])
    names = [n for n in s0 if n.startswith("model.layers.2.")]
    num = sum(float(np.sum((s1[n].astype(np.float64) - s0[n]) ** 2)) for n in names)
    den = sum(float(np.sum(s0[n].astype(np.float64) ** 2)) for n in names)
    (row,) = [r for r in result["rows"] if r["label"] == "model.layers.2"]
    assert row["changes"][0] == pytest.approx(np.sqrt(num / den), rel=1e-9)


def test_text_and_json_renderings_are_deterministic() -> None:
    """Same checkpoints -> identical text and strict JSON; text lists steps and blocks."""
    a = run_timeline(sources_from(_checkpoints()))
    b = run_timeline(sources_from(_checkpoints()))
    assert render_json(a) == render_json(b)
    assert json.loads(render_json(a))["rows"] == compare_training_stages(_checkpoints())["rows"]
    text = render_text(a)
    assert text == render_text(b)
    assert "step 1: step0 -> step1" in text and "step 2: step1 -> step2" in text
    assert "model.layers.0" in text and "0 (frozen)" in text and "falling" in text


def test_labels_override_names_and_one_checkpoint_is_an_error() -> None:
    """labels= names the checkpoints; fewer than two checkpoints is a typed usage error."""
    result = compare_training_stages(_checkpoints(), labels=["a", "b", "c"])
    assert result["checkpoints"] == ["a", "b", "c"]
    with pytest.raises(ModelDiffError, match="at least two checkpoints"):
        compare_training_stages(_checkpoints()[:1])


def test_cli_timeline_with_one_checkpoint_is_a_usage_error() -> None:
    """``model-diff timeline X`` exits 2 with a message and writes nothing to stdout."""
    res = CliRunner().invoke(cli, ["timeline", "only.safetensors"])
    assert res.exit_code == 2
    assert res.stdout == ""
    assert "at least two checkpoints" in res.stderr


def _write_stages(tmp_path: Path) -> list[str]:
    paths = []
    for i, sd in enumerate(_stages()):
        p = tmp_path / f"step{i}.safetensors"
        save_safetensors(p, sd)
        paths.append(str(p))
    return paths


def test_cli_timeline_text_and_json_on_safetensors_files(tmp_path: Path) -> None:
    """``model-diff timeline a b c`` prints the table; --format json -o writes strict JSON."""
    paths = _write_stages(tmp_path)
    res = CliRunner().invoke(cli, ["timeline", *paths])
    assert res.exit_code == 0, res.stderr
    assert f"step 2: {paths[1]} -> {paths[2]}" in res.stdout
    assert "model.layers.0" in res.stdout and "falling" in res.stdout
    out = tmp_path / "timeline.json"
    res = CliRunner().invoke(cli, ["timeline", *paths, "--format", "json", "-o", str(out)])
    assert res.exit_code == 0 and res.stdout == ""
    data = json.loads(out.read_text())
    assert data["checkpoints"] == paths
    assert [r["trend"] for r in data["rows"] if r["label"] == "model.layers.0"] == ["falling"]


def test_cli_timeline_missing_file_is_one_line_exit_2(
    tmp_path: Path, clean_env: dict[str, str]
) -> None:
    """A missing checkpoint: exit 2, one error line naming it, nothing on stdout."""
    paths = _write_stages(tmp_path)
    missing = str(tmp_path / "nope.safetensors")
    res = run_model_diff(["timeline", paths[0], missing], clean_env)
    assert res.returncode == 2
    assert res.stdout == ""
    assert missing in res.stderr and len(res.stderr.strip().splitlines()) == 1


def test_cli_compare_json_and_text_carry_pattern_and_insights(tmp_path: Path) -> None:
    """``model-diff compare`` shows the analysis: pattern and insight codes, text and JSON."""
    paths = _write_stages(tmp_path)
    res = CliRunner().invoke(cli, ["compare", paths[0], paths[1], "--format", "json"])
    assert res.exit_code == 0, res.stderr
    data = json.loads(res.stdout)
    text = json.dumps(data)
    assert "inverse_gradient" in text and "frozen-layers" in text
    res = CliRunner().invoke(cli, ["compare", paths[0], paths[1]])
    assert res.exit_code == 0
    assert "inverse" in res.stdout.lower() and "frozen" in res.stdout.lower()


# -- a training run in a folder (issue 16, acceptance 1) -------------------------------------

E_NOTATION = re.compile(r"\d[eE][+-]?\d")


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("run") / "run"
    save_run(folder)
    return folder


def _cli(args: list[str]) -> str:
    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 0, res.stderr
    return res.stdout


def test_folder_run_is_ordered_naturally_and_names_spike_and_divergence(run_dir: Path) -> None:
    """``timeline DIR``: step_200 before step_1000; the spike and the NaN named in words,
    every block's shape in one honest word."""
    text = _cli(["timeline", str(run_dir), "--order", "name"])
    names = [file_name(g) for g in GLOBAL_STEPS]
    assert "ordered by name" in text
    for k in range(1, 6):
        assert f"step {k}: {names[k - 1]} -> {names[k]}" in text
    spike = f"{names[SPIKE_STEP - 1]} -> {names[SPIKE_STEP]}"
    assert re.search(
        rf"model\.layers\.0-5, norm \(outside blocks\), head jumped at step 3: (9\d|1\d\d)(\.\d)?x "
        rf"the previous step \({re.escape(spike)}\)",
        text,
    ), text
    assert "dropped at step 4" in text
    assert f"NaN in model.layers.3-5 from step 5 ({names[4]} -> {names[5]})" in text
    assert "embedding frozen since step 1" in text
    trends = {
        line.split()[0]: line.split()[-1]
        for line in text.splitlines()
        if line.startswith("model.layers.")
    }
    assert trends == {f"model.layers.{b}": "spike" if b < 3 else "diverged" for b in range(6)}
    assert not E_NOTATION.search(text), E_NOTATION.search(text)


def test_folder_run_json_numbers_are_the_block_aggregates(run_dir: Path) -> None:
    """JSON: the same steps; a block's change at each step is its pooled relative change,
    None where the block holds NaN; metadata order agrees with the names."""
    data = json.loads(_cli(["timeline", str(run_dir), "--format", "json"]))
    assert data["order"] == "metadata:global_step"
    assert data["checkpoints"] == [file_name(g) for g in GLOBAL_STEPS]
    states = training_states()
    rows = {r["label"]: r for r in data["rows"]}
    for k in range(1, 6):
        old, new = states[k - 1], states[k]
        names = [n for n in old if n.startswith("model.layers.1.")]
        num = sum(float(np.sum((new[n].astype(np.float64) - old[n]) ** 2)) for n in names)
        den = sum(float(np.sum(old[n].astype(np.float64) ** 2)) for n in names)
        assert rows["model.layers.1"]["changes"][k - 1] == pytest.approx(np.sqrt(num / den))
    assert rows["model.layers.4"]["changes"][4] is None
    assert rows["model.layers.4"]["nonfinite"] == [None, None, None, None, "NaN"]
    assert rows["embedding"]["frozen"] == [True] * 5
    step5 = data["steps"][4]
    assert step5["insights"][0]["code"] == "nonfinite-values"
    assert len(step5["movers"]) == 3
    kinds = [(e["kind"], e["step"]) for e in data["events"]]
    assert kinds == [("frozen", 1), ("jump", 3), ("drop", 4), ("nonfinite", 5)]


def test_markdown_and_html_say_the_same_without_e_notation(run_dir: Path) -> None:
    """Markdown and HTML carry the events and the tables; no number in e-notation in
    what a reader sees."""
    md = _cli(["timeline", str(run_dir), "--format", "markdown"])
    assert "NaN in model.layers.3-5 from step 5" in md and "| spike |" in md
    assert not E_NOTATION.search(md)
    page = _cli(["timeline", str(run_dir), "--format", "html"])
    visible = re.sub(r"<[^>]+>", " ", re.sub(r"<style>.*?</style>", "", page, flags=re.S))
    assert "jumped at step 3" in visible and "NaN in model.layers.3-5 from step 5" in visible
    assert not E_NOTATION.search(visible), E_NOTATION.search(visible)
    cells = re.findall(
        r'<rect [^>]*class="cell (\w+)"[^>]*data-step="(\d)" data-row="([^"]+)"', page
    )
    nan_cells = {(row, int(step)) for cls, step, row in cells if cls == "nan"}
    assert nan_cells == {(f"model.layers.{b}", 5) for b in NAN_BLOCKS}
    assert {(row, int(step)) for cls, step, row in cells if cls == "frozen"} == {
        ("embedding", k) for k in range(1, 6)
    }
    jumps = set(re.findall(r'class="jump-mark" data-step="(\d)" data-row="([^"]+)"', page))
    assert {s for s, _ in jumps} == {"3"} and len(jumps) == 8  # 6 blocks, norm, head


def test_trend_words_describe_the_shape() -> None:
    """A spike that falls back is a spike (not "rising"); NaN anywhere is diverged."""
    assert trend([5.4e-3, 7.49, 0.99]) == "spike"  # the example
    assert trend([1.0, 2.0, 4.0]) == "rising"
    assert trend([1.0, 1.0, 50.0]) == "rising"  # a jump at the end: it has not come back
    assert trend([4.0, 2.0, 1.0]) == "falling"
    assert trend([4.0, 1.0, 0.5, 0.45, 0.44]) == "settled"
    assert trend([1.0, 1.1, 0.9]) == "steady"
    assert trend([0.0, 0.0]) == "frozen"
    assert trend([1.0, 0.0]) == "falling"
    assert trend([1.0, None], [None, "NaN"]) == "diverged"
    assert trend([None, None]) == "n/a"


@pytest.mark.parametrize(
    ("x", "shown"),
    [
        (0.0054, "0.54%"),
        (7.49, "749%"),
        (0.99, "99%"),
        (14.2, "14.2x"),
        (1400.0, "1,400x"),
        (123456.0, "123,000x"),
        (5.4e-5, "0.0054%"),
        (1e-9, "<0.0001%"),
        (0.0, "0%"),
    ],
)
def test_changes_read_as_percent_or_fold_never_e_notation(x: float, shown: str) -> None:
    """fmt_pct: percent with thousands separators, x-fold from 1000% on."""
    assert fmt_pct(x) == shown
    assert fmt_fold(1400.0) == "1,400x"


def test_no_magnitude_formats_in_e_notation() -> None:
    """Every magnitude from 1e-12 to 1e12 formats without an exponent."""
    for e in range(-12, 13):
        for m in (1.0, 2.5, 9.99):
            assert not E_NOTATION.search(fmt_pct(m * 10.0**e) + fmt_fold(m * 10.0**e))


# -- streaming, gaps ---------------------------------------------------------------------------


def test_each_checkpoint_opened_once_at_most_two_open(tmp_path: Path) -> None:
    """N checkpoints: N - 1 pair passes, each opened once and closed, two open at most;
    ordering by metadata costs one more open each, never more."""
    paths = save_run(tmp_path / "run")
    opened: dict[str, int] = {}
    live: set[str] = set()
    most = 0

    def opener(p: str) -> Checkpoint:
        nonlocal most
        from model_diff.formats import open_checkpoint

        ckpt = open_checkpoint(p)
        opened[p] = opened.get(p, 0) + 1
        live.add(p)
        most = max(most, len(live))
        return ckpt.relabeled(ckpt.path, closers=[lambda: live.discard(p), ckpt.close])

    ordered, how = expand([str(tmp_path / "run")], opener=opener)
    assert how == "metadata:global_step" and ordered == [str(p) for p in paths]
    result = run_timeline([Source(p, functools.partial(opener, p)) for p in ordered])
    assert len(result.steps) == 5 and all(s.gap is None for s in result.steps)
    assert opened == {str(p): 2 for p in paths}
    assert most <= 2 and not live


def test_unfetched_checkpoint_is_a_gap_and_the_next_step_spans_it() -> None:
    """skip_unfetched: the step to a missing LFS object is a gap (why, in words); the next
    compares its neighbours; without it the error stands."""
    states = training_states()
    ckpts = [from_arrays(s, path=f"c{i}") for i, s in enumerate(states)]

    def missing() -> Checkpoint:
        raise LFSObjectMissingError(path="c2", oid="ab" * 32, size=1234)

    sources = [Source(c.path, functools.partial(lambda c: c, c), owned=False) for c in ckpts]
    sources[2] = Source("c2", missing)
    result = run_timeline(sources, skip_unfetched=True)
    gap, across = result.steps[1], result.steps[2]
    assert gap.gap == "c2: Git LFS object abababababab (1,234 bytes) not fetched"
    assert gap.change_pattern is None and gap.insights == ()
    assert (across.source, across.target, across.spans) == ("c1", "c3", 2)
    direct = run_timeline(sources_from([ckpts[1], ckpts[3]]))
    assert [r.changes[2] for r in result.rows] == [r.changes[0] for r in direct.rows]
    assert all(r.changes[1] is None for r in result.rows)
    (gap_event,) = [e for e in result.events if e.kind == "gap"]
    assert gap_event.step == 2 and gap_event.text.startswith("step 2: no comparison (c2: Git")
    with pytest.raises(LFSObjectMissingError):
        run_timeline(sources)
    # Missing at the start: nothing to compare the next one with either; then it resumes.
    lead = [Source("c0", missing), Source("c1", missing, missing="c1: deleted"), *sources[2:]]
    steps = run_timeline(lead, skip_unfetched=True).steps
    assert [(s.step, s.gap) for s in steps[:3]] == [
        (1, "c1: deleted"),
        (2, "c2: Git LFS object abababababab (1,234 bytes) not fetched"),
        (3, "c2: Git LFS object abababababab (1,234 bytes) not fetched"),
    ]
    assert (steps[3].source, steps[3].gap, steps[3].spans) == ("c3", None, 1)


def test_order_metadata_wins_over_names_and_name_order_can_be_forced(tmp_path: Path) -> None:
    """Names that lie (a, b, c) and global_step metadata that does not: metadata decides;
    --order name uses names; a checkpoint without a step falls back to names."""
    states = training_states()[:3]
    for name, gs, state in zip(("c", "a", "b"), (0, 100, 200), states, strict=True):
        save_safetensors(tmp_path / f"{name}.safetensors", state, {"global_step": str(gs)})
    assert expand([str(tmp_path)]) == (
        [str(tmp_path / f"{n}.safetensors") for n in "cab"],
        "metadata:global_step",
    )
    assert expand([str(tmp_path)], order="name")[0] == [
        str(tmp_path / f"{n}.safetensors") for n in "abc"
    ]
    save_safetensors(tmp_path / "d.safetensors", states[0])
    assert expand([str(tmp_path)])[1] == "name"
    with pytest.raises(ModelDiffError, match=r"d\.safetensors has no training step"):
        expand([str(tmp_path)], order="metadata")


def test_glob_and_trainer_folders_expand(tmp_path: Path) -> None:
    """A quoted glob expands (natural order); a Trainer output folder's checkpoint-N/
    sub-folders are the run, ordered by trainer_state.json's global_step."""
    states = training_states()[:3]
    for gs, state in zip((900, 1000, 80), states, strict=True):
        save_safetensors(tmp_path / f"ckpt-{gs}.safetensors", state)
    assert expand([str(tmp_path / "ckpt-*.safetensors")]) == (
        [str(tmp_path / f"ckpt-{gs}.safetensors") for gs in (80, 900, 1000)],
        "name",
    )
    out = tmp_path / "out"
    for gs, state in zip((500, 1000, 1500), states, strict=True):
        d = out / f"checkpoint-{gs}"
        d.mkdir(parents=True)
        save_safetensors(d / "model.safetensors", state)
        (d / "config.json").write_text("{}")
        (d / "trainer_state.json").write_text(json.dumps({"global_step": 3000 - gs}))
    paths, how = expand([str(out)])
    assert how == "metadata:trainer_state.global_step"
    assert paths == [str(out / f"checkpoint-{gs}") for gs in (1500, 1000, 500)]
    with pytest.raises(ModelDiffError, match="matches no checkpoint"):
        expand([str(tmp_path / "nothing-*.pt")])


def test_html_escapes_hostile_block_names() -> None:
    """A block label carrying markup is text in the heatmap, the tables and the events."""
    s0 = {
        "model.layers.0.<img src=x onerror=alert(1)>.weight": np.ones((4, 4), np.float32),
        "model.layers.1.mlp.weight": np.ones((4, 4), np.float32),
    }
    s1 = {k: v * 1.01 for k, v in s0.items()}
    s2 = {k: v * 1.5 for k, v in s1.items()}
    result = run_timeline(sources_from([from_arrays(s) for s in (s0, s1, s2)]))
    page = render_timeline(result, "html")
    assert "<img" not in page and "&lt;img src=x onerror=alert(1)&gt;" in page


@pytest.mark.torch
def test_lightning_checkpoints_are_ordered_by_their_global_step(tmp_path: Path) -> None:
    """best.ckpt / early.ckpt / last.ckpt: the global_step beside the state_dict decides."""
    torch = pytest.importorskip("torch")
    sd = {k: torch.from_numpy(v) for k, v in training_states()[0].items()}
    for name, gs in (("last", 300), ("best", 100), ("early", 200)):
        torch.save(
            {"state_dict": sd, "global_step": gs, "epoch": gs // 100}, tmp_path / f"{name}.ckpt"
        )
    assert expand([str(tmp_path)]) == (
        [str(tmp_path / f"{n}.ckpt") for n in ("best", "early", "last")],
        "metadata:global_step",
    )
