"""Issue 13, acceptance 3: renamed tensors recognised in real files written by torch and
safetensors. Spaces vs underscores, a Lightning ``model.`` prefix on one side, a reordered
file and a ``.bin`` whose ``lm_head.weight`` is tied to the embeddings (one storage, as
torch saves it) against the ``.safetensors`` HF writes without it: 0 architecture changes,
the mapping and the tie stated in the text and JSON reports."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from click.testing import CliRunner

torch = pytest.importorskip("torch")
st = pytest.importorskip("safetensors.torch")

from model_diff.cli import cli  # noqa: E402
from model_diff.diff import ChangeType  # noqa: E402
from model_diff.formats import open_checkpoint  # noqa: E402
from model_diff.pipeline import compare  # noqa: E402

VOCAB, D, BLOCKS = 64, 16, 3


def _weights(seed: int = 0) -> dict[str, Any]:
    """A small decoder's weights under the old release's names (spaces in module names)."""
    g = torch.Generator().manual_seed(seed)
    w = {"embed tokens.weight": torch.randn(VOCAB, D, generator=g)}
    for i in range(BLOCKS):
        for part in ("self attn.q proj", "self attn.k proj", "mlp.up proj", "mlp.down proj"):
            w[f"layers.{i}.{part}.weight"] = torch.randn(D, D, generator=g)
        w[f"layers.{i}.input layernorm.weight"] = torch.rand(D, generator=g) + 0.5
    w["final norm.weight"] = torch.rand(D, generator=g) + 0.5
    return w


def _tuned(w: dict[str, Any]) -> dict[str, Any]:
    """The next release: underscores for spaces, two tensors trained a little."""
    out = {k.replace(" ", "_"): v.clone() for k, v in w.items()}
    out["layers_1_placeholder"] = None
    del out["layers_1_placeholder"]
    out["layers.1.mlp.up_proj.weight"] += 0.01
    out["final_norm.weight"] *= 1.01
    return out


def _save_lightning(path: Path, w: dict[str, Any], *, reverse: bool = False) -> Path:
    """A Lightning checkpoint: ``model.``-prefixed names, ``lm_head`` tied to the embeddings
    (the same tensor object, so torch stores one storage for both names)."""
    sd = {f"model.{k}": v for k, v in w.items()}
    sd["model.lm_head.weight"] = sd["model.embed tokens.weight"]
    if reverse:
        sd = dict(reversed(list(sd.items())))
    torch.save({"state_dict": sd, "epoch": 3, "global_step": 120}, path)
    return path


def _compare(old: Path, new: Path) -> Any:
    with open_checkpoint(old) as a, open_checkpoint(new) as b:
        return compare(a, b)


@pytest.fixture
def release_pair(tmp_path: Path) -> tuple[Path, Path]:
    w = _weights()
    old = _save_lightning(tmp_path / "epoch=3.ckpt", w)
    new = tmp_path / "model.safetensors"
    st.save_file(_tuned(w), str(new))  # HF-style: no lm_head (tied), no prefix
    return old, new


def test_acceptance_renames_prefix_and_tie_are_no_architecture_change(
    release_pair: tuple[Path, Path],
) -> None:
    """All four at once: 0 added/removed, no architecture-changed insight; modified tensors
    compared under the mapping; the tie recognised from the shared storage."""
    result = _compare(*release_pair)
    s = result.summary
    assert (s.added_parameters, s.removed_parameters) == (0, 0)
    assert (s.modified_parameters, s.tied_parameters) == (2, 1)
    assert s.unchanged_parameters == len(_weights()) - 2
    insights = {i["code"]: i for i in result.analysis.to_dict()["insights"]}
    assert "architecture-changed" not in insights
    # the tie is no tensor of its own: frozen counts are out of the 17 tensors compared
    assert insights["frozen-layers"]["evidence"]["total"] == len(_weights())
    tie = next(d for d in result.diffs if d.change_type is ChangeType.TIED)
    assert (tie.name, tie.tied_to, tie.tied_by) == (
        "model.lm_head.weight",
        "embed_tokens.weight",
        "storage",
    )
    up = next(d for d in result.diffs if d.name == "layers.1.mlp.up_proj.weight")
    assert up.change_type is ChangeType.MODIFIED
    assert up.old_name == "model.layers.1.mlp.up proj.weight"
    assert s.name_mapping is not None
    assert s.name_mapping["rules"][0]["count"] == len(_weights())


def test_acceptance_reports_state_mapping_and_tie(release_pair: tuple[Path, Path]) -> None:
    """The text and JSON reports state the mapping once and the tie, and exit 0."""
    old, new = (str(p) for p in release_pair)
    text = CliRunner().invoke(cli, ["compare", old, new])
    assert text.exit_code == 0, text.output
    rule = f"' ' -> '_' and prefix 'model.' dropped in old names ({len(_weights())} tensors)"
    flat = " ".join(text.output.split())  # the report wraps long lines at 80 columns
    assert flat.count(rule) == 1
    assert (
        "model.lm_head.weight: tied duplicate of embed_tokens.weight dropped (same storage "
        "in the old file)" in flat
    )
    assert "architecture" not in text.output.lower()

    doc = json.loads(CliRunner().invoke(cli, ["compare", old, new, "--format", "json"]).output)
    schema = json.loads(resources.files("model_diff.report").joinpath("schema.json").read_text())
    jsonschema.validate(doc, schema, cls=jsonschema.Draft202012Validator)
    assert doc["summary"]["name_mapping"]["rules"][0]["description"] == rule
    assert doc["counts"]["tied"] == 1 and doc["counts"]["added"] == doc["counts"]["removed"] == 0
    [tie] = doc["tensors"]["tied"]
    assert (tie["name"], tie["tied_to"], tie["tied_by"]) == (
        "model.lm_head.weight",
        "embed_tokens.weight",
        "storage",
    )
    md = CliRunner().invoke(cli, ["compare", old, new, "--format", "markdown"]).output
    assert "tied duplicate of embed\\_tokens.weight dropped" in md
    html = CliRunner().invoke(cli, ["compare", old, new, "--format", "html"]).output
    assert "tied: model.lm_head.weight: tied duplicate of embed_tokens.weight" in html
    assert "names mapped: &#39; &#39; -&gt; &#39;_&#39;" in html


def test_reordered_file_gives_the_same_result(tmp_path: Path) -> None:
    """The same checkpoint written in the opposite order pairs and compares identically."""
    w = _weights()
    new = tmp_path / "model.safetensors"
    st.save_file(_tuned(w), str(new))
    forward = _compare(_save_lightning(tmp_path / "a.ckpt", w), new)
    backward = _compare(_save_lightning(tmp_path / "b.ckpt", w, reverse=True), new)

    def facts(r: Any) -> Any:
        summary = {k: v for k, v in r.summary.to_dict().items() if not k.endswith("_path")}
        return [d.to_dict() for d in r.diffs], summary

    assert facts(forward) == facts(backward)


class _TiedLM(torch.nn.Module):  # type: ignore[misc]
    """An HF-style causal LM head: ``lm_head.weight`` is ``embed_tokens.weight``."""

    def __init__(self) -> None:
        super().__init__()
        self.embed_tokens = torch.nn.Embedding(VOCAB, D)
        self.layers = torch.nn.ModuleList(torch.nn.Linear(D, D) for _ in range(2))
        self.norm = torch.nn.LayerNorm(D)
        self.lm_head = torch.nn.Linear(D, VOCAB, bias=False)
        self.lm_head.weight = self.embed_tokens.weight


@pytest.mark.parametrize("direction", ["bin->safetensors", "safetensors->bin"])
def test_bin_with_tied_head_vs_safetensors_without(tmp_path: Path, direction: str) -> None:
    """``torch.save(model.state_dict())`` keeps the tied head (one storage, two names);
    safetensors' ``save_model`` drops it. Either way round: a tie, no architecture change,
    nothing changed, and ``model-diff check`` passes."""
    torch.manual_seed(0)
    model = _TiedLM()
    bin_path, st_path = tmp_path / "pytorch_model.bin", tmp_path / "model.safetensors"
    torch.save(model.state_dict(), bin_path)
    st.save_model(model, str(st_path))
    old, new = (bin_path, st_path) if direction == "bin->safetensors" else (st_path, bin_path)
    result = _compare(old, new)
    s = result.summary
    assert (s.added_parameters, s.removed_parameters, s.tied_parameters) == (0, 0, 1)
    assert s.changed_parameters == 0
    assert [i["code"] for i in result.analysis.to_dict()["insights"]] == ["no-change"]
    tie = next(d for d in result.diffs if d.change_type is ChangeType.TIED)
    assert (tie.name, tie.tied_to, tie.tied_by) == (
        "lm_head.weight",
        "embed_tokens.weight",
        "storage",
    )
    check = CliRunner().invoke(cli, ["check", str(old), str(new)])
    assert check.exit_code == 0, check.output


def test_an_untied_head_saved_as_a_copy_is_tied_by_bytes(tmp_path: Path) -> None:
    """A head saved as its own copy of the embeddings (equal bytes, own storage) and then
    dropped: recognised by its contents; a head with other values is a real removal."""
    torch.manual_seed(0)
    emb = torch.randn(VOCAB, D)
    keep = {"embed_tokens.weight": emb, "norm.weight": torch.rand(D)}
    old = tmp_path / "old.safetensors"
    st.save_file({**keep, "lm_head.weight": emb.clone()}, str(old))
    new = tmp_path / "new.safetensors"
    st.save_file({k: v + 0.01 for k, v in keep.items()}, str(new))
    tie = next(d for d in _compare(old, new).diffs if d.name == "lm_head.weight")
    assert (tie.change_type, tie.tied_by) == (ChangeType.TIED, "bytes")

    other = tmp_path / "other.safetensors"
    st.save_file({**keep, "lm_head.weight": torch.randn(VOCAB, D)}, str(other))
    gone = next(d for d in _compare(other, new).diffs if d.name == "lm_head.weight")
    assert gone.change_type is ChangeType.REMOVED


def test_renamed_tensor_in_torch_files(tmp_path: Path) -> None:
    """A tensor moved under a new name between two ``.pt`` files: renamed (same bytes),
    reported as such in every format, and no architecture change."""
    torch.manual_seed(0)
    w = {"encoder.w": torch.randn(8, 8), "head.weight": torch.randn(4, 8)}
    torch.save(w, tmp_path / "a.pt")
    v = {"encoder.w": w["encoder.w"] + 0.1, "classifier.weight": w["head.weight"].clone()}
    torch.save(v, tmp_path / "b.pt")
    result = _compare(tmp_path / "a.pt", tmp_path / "b.pt")
    d = next(d for d in result.diffs if d.name == "classifier.weight")
    assert (d.change_type, d.old_name) == (ChangeType.RENAMED, "head.weight")
    assert "architecture-changed" not in [i["code"] for i in result.analysis.to_dict()["insights"]]
    out = CliRunner().invoke(cli, ["compare", str(tmp_path / "a.pt"), str(tmp_path / "b.pt")])
    assert "renamed  head.weight -> classifier.weight (same bytes)" in out.output
