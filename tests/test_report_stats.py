"""Paired statistics of the claimed orderings, on synthetic run results: a clear difference holds, noise does not,
runs pair by (fold, seed) whatever order they were recorded in, and runs that do not pair fail with a clear error.
The report renders the "Claimed orderings" table and its figure from the same runs."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest

from pipeline.params import ConfigError
from pipeline.report.inputs import ModelResults
from pipeline.report.stage import build_report, check_report_config
from pipeline.report.stats import (
    Claim,
    ClaimError,
    ClaimSettings,
    check_claims_config,
    evaluate_claim,
    paired_bootstrap,
    wilcoxon_greater,
)
from tests.test_report import CONFIG, write_model

FOLDS = ("fold0", "fold3", "fold6")
SEEDS = (0, 1, 2)
SETTINGS = ClaimSettings(resamples=2000, confidence=0.95, seed=0)
CLAIM = Claim("mmin", "utt_fusion", "ua", "average", None, "MMIN")


def results(model: str, values: dict[tuple[str, int], float], fraction: float = 1.0,
            order: list[tuple[str, int]] | None = None) -> ModelResults:
    """A model's results with one run per (fold, seed): UA at "average" = the given value."""
    keys = order or sorted(values)
    runs = [{"fold": f, "seed": s, "labelled_fraction": fraction, "extras": {},
             "metrics": {"average": {"ua": values[(f, s)], "wa": 0.5}}} for f, s in keys]
    return ModelResults(model, "demo", {"conditions": {}}, runs={"runs": runs})


def grid(rng: np.random.Generator, fold_level: dict[str, float], spread: float) -> dict[tuple[str, int], float]:
    return {(f, s): fold_level[f] + float(rng.normal(0, spread)) for f in FOLDS for s in SEEDS}


def test_a_clear_difference_holds() -> None:
    rng = np.random.default_rng(0)
    worse = grid(rng, {"fold0": 0.55, "fold3": 0.70, "fold6": 0.62}, 0.02)
    better = {k: v + 0.04 + float(rng.normal(0, 0.01)) for k, v in worse.items()}
    (row,) = evaluate_claim(CLAIM, results("mmin", better), results("utt_fusion", worse), SETTINGS)
    assert row.n == 9 and row.holds
    assert 0.0 < row.low < row.difference < row.high
    assert row.difference == pytest.approx(np.mean([better[k] - worse[k] for k in worse]))
    assert row.p_value == pytest.approx(1 / 512)  # all nine differences positive: the exact one-sided minimum


def test_noise_does_not_hold() -> None:
    rng = np.random.default_rng(1)
    worse = grid(rng, {"fold0": 0.55, "fold3": 0.70, "fold6": 0.62}, 0.02)
    better = {k: v + float(rng.normal(0, 0.02)) for k, v in worse.items()}
    (row,) = evaluate_claim(CLAIM, results("mmin", better), results("utt_fusion", worse), SETTINGS)
    assert not row.holds
    assert row.low < 0 < row.high
    assert row.p_value > 0.05


def test_runs_pair_by_fold_and_seed_not_by_order() -> None:
    """Fold levels differ a lot; better is worse + 0.01 run by run, recorded in another order: the paired
    difference is exactly 0.01 for every run, so the interval collapses onto it."""
    worse = {(f, s): {"fold0": 0.3, "fold3": 0.6, "fold6": 0.9}[f] + s / 100 for f in FOLDS for s in SEEDS}
    better = {k: v + 0.01 for k, v in worse.items()}
    shuffled = sorted(better, key=lambda k: (-k[1], k[0]))
    (row,) = evaluate_claim(CLAIM, results("mmin", better, order=shuffled), results("utt_fusion", worse), SETTINGS)
    assert row.difference == pytest.approx(0.01)
    assert row.low == pytest.approx(0.01) and row.high == pytest.approx(0.01)
    assert row.holds


def test_mismatched_runs_fail_with_a_clear_error() -> None:
    worse = {(f, s): 0.5 for f in FOLDS for s in SEEDS}
    better = {(f, s): 0.6 for f in FOLDS for s in (0, 1)} | {("fold9", 2): 0.6}
    with pytest.raises(ClaimError) as err:
        evaluate_claim(CLAIM, results("mmin", better), results("utt_fusion", worse), SETTINGS)
    message = str(err.value)
    assert "the runs of mmin and utt_fusion do not pair by (fold, seed)" in message
    assert "only mmin has fold9/seed 2" in message
    assert "only utt_fusion has fold0/seed 2, fold3/seed 2, fold6/seed 2" in message
    twice = results("mmin", {(f, s): 0.6 for f in FOLDS for s in SEEDS})
    twice.runs["runs"].append(copy.deepcopy(twice.runs["runs"][0]))
    with pytest.raises(ClaimError, match="records fold fold0 seed 0 twice"):
        evaluate_claim(CLAIM, twice, results("utt_fusion", worse), SETTINGS)
    with pytest.raises(ClaimError, match="no macro_f1 at condition average"):
        evaluate_claim(Claim("mmin", "utt_fusion", "macro_f1", "average", None, ""),
                       results("mmin", better), results("utt_fusion", worse), SETTINGS)


def test_one_row_per_labelled_fraction() -> None:
    def swept(model: str, gain: float) -> ModelResults:
        runs = []
        for fraction in (0.1, 1.0):
            for f in FOLDS:
                for s in SEEDS:
                    ua = 0.4 + fraction / 4 + (gain if fraction < 1 else 0.0) + s / 1000
                    runs.append({"fold": f, "seed": s, "labelled_fraction": fraction, "extras": {},
                                 "metrics": {"avl": {"ua": ua}}})
        sweep = {"0.1": {}, "1": {}}
        return ModelResults(model, "demo", {"conditions": {}, "sweep": {"labelled_fraction": sweep}},
                            runs={"runs": runs})

    claim = Claim("ssmm", "ssmm_supervised", "ua", "avl", "all", "SSMM")
    rows = evaluate_claim(claim, swept("ssmm", 0.05), swept("ssmm_supervised", 0.0), SETTINGS)
    assert [r.fraction for r in rows] == ["0.1", "1"]
    assert rows[0].holds and rows[0].difference == pytest.approx(0.05)
    assert not rows[1].holds and rows[1].difference == pytest.approx(0.0)


def test_bootstrap_is_seeded_and_wilcoxon_handles_ties() -> None:
    diff = np.array([0.01, -0.02, 0.03, 0.0, 0.05])
    assert paired_bootstrap(diff, 1000, 0.95, 7) == paired_bootstrap(diff, 1000, 0.95, 7)
    assert np.isnan(wilcoxon_greater(np.zeros(9)))


def test_claims_config_is_checked() -> None:
    cfg = {**CONFIG, "claims": {"orderings": [{"better": "mmin", "worse": "mmin", "metric": "ua"}]}}
    with pytest.raises(ConfigError, match="cannot be claimed to beat itself"):
        check_report_config(cfg)
    cfg = {**CONFIG, "claims": {"orderings": [{"better": "mmin", "worse": "x", "metric": "ua", "fraction": "half"}]}}
    with pytest.raises(ConfigError, match="fraction must be a labelled fraction"):
        check_report_config(cfg)
    claims, settings = check_claims_config({**CONFIG, "claims": {"orderings": [
        {"better": "mmin", "worse": "x", "metric": "ua"}]}})
    assert claims[0].condition == "avl" and claims[0].fraction is None and settings.resamples == 10000


def test_report_renders_the_claimed_orderings(tmp_path: Path) -> None:
    conditions = {c: {"ua": {"mean": 0.5, "std": 0.0}} for c in ("average", "avl")}
    write_model(tmp_path, "utt_fusion", "utt_fusion", conditions)
    write_model(tmp_path, "mmin", "mmin", conditions)
    for model, gain in (("utt_fusion", 0.0), ("mmin", 0.05)):  # the runs' own per-condition metrics
        path = tmp_path / "checkpoints" / model / "demo" / "runs.json"
        runs = json.loads(path.read_text())
        for k, run in enumerate(runs["runs"]):
            run["metrics"] = {"average": {"ua": 0.5 + gain + k / 100}}
        path.write_text(json.dumps(runs))
    cfg = {**CONFIG, "claims": {"bootstrap": {"resamples": 500, "seed": 0}, "orderings": [
        {"better": "mmin", "worse": "utt_fusion", "metric": "ua", "condition": "average", "paper": "MMIN"},
        {"better": "mmin", "worse": "mmin_ae", "metric": "ua", "condition": "average", "paper": "MMIN"},
        {"better": "mmin", "worse": "utt_fusion", "metric": "ua", "condition": "azz", "paper": "MMIN"}]}}
    report = build_report(tmp_path, cfg)
    lines = report.markdown.splitlines()
    start = lines.index("### Claimed orderings")
    row = next(line for line in lines[start:] if line.startswith("| mmin > utt_fusion"))
    assert row.startswith("| mmin > utt_fusion | MMIN | UA | Average | 4 | 0.5650 | 0.5150 | +0.0500 | "
                          "[+0.0500, +0.0500] | 0.0625 | yes |")
    assert "Hold (interval above 0): mmin > utt_fusion. Do not hold: none." in lines
    assert "plots/demo/claims_differences.png" in report.figures
    assert any("mmin > mmin_ae on demo not tested: not run: mmin_ae" in n for n in report.notes)
    assert any("condition azz or azz is not among the models' test conditions" in n for n in report.notes)


def test_one_model_two_conditions_pair_run_by_run() -> None:
    """The modality-ranking check: the full-modality baseline's {t} against its own {a}, run by run."""
    runs = [{"fold": f, "seed": s, "labelled_fraction": 1.0, "extras": {},
             "metrics": {"zzl": {"ua": 0.6 + i / 100}, "azz": {"ua": 0.5 + i / 100}}}
            for i, (f, s) in enumerate((f, s) for f in FOLDS for s in SEEDS)]
    model = ModelResults("utt_fusion", "demo", {"conditions": {}}, runs={"runs": runs})
    (claim,), _ = check_claims_config({**CONFIG, "claims": {"orderings": [
        {"better": "utt_fusion", "worse": "utt_fusion", "condition": "zzl", "worse_condition": "azz",
         "metric": "ua"}]}})
    assert claim.name == "utt_fusion [zzl] > utt_fusion [azz]"
    (row,) = evaluate_claim(claim, model, model, SETTINGS)
    assert row.n == 9 and row.holds and row.difference == pytest.approx(0.1)
    assert (row.low, row.high) == (pytest.approx(0.1), pytest.approx(0.1))
    with pytest.raises(ConfigError, match="worse_condition must name a condition other than"):
        check_claims_config({**CONFIG, "claims": {"orderings": [
            {"better": "utt_fusion", "worse": "utt_fusion", "condition": "zzl", "worse_condition": "zzl",
             "metric": "ua"}]}})


def test_readme_claims_block_is_valid_configuration() -> None:
    """The README's `report.claims` block passes the schema and the report's own check as written."""
    import yaml

    from pipeline.schema import check_params
    from tests.test_readme import REPO, blocks, section

    body = section((REPO / "README.md").read_text(), "The demo's difficulty and the claimed orderings")
    (block,) = blocks(body, "yaml")
    claims = yaml.safe_load(block)["report"]["claims"]
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["report"]["claims"] = claims
    check_params(params)
    parsed, settings = check_claims_config(params["report"])
    assert [(c.better, c.worse, c.fraction) for c in parsed] == [
        ("mmin", "utt_fusion_aug", None), ("mmgcn", "mmgcn_nograph", None), ("ssmm", "ssmm_supervised", "all"),
        ("utt_fusion", "utt_fusion", None)]
    assert (parsed[-1].condition, parsed[-1].worse_condition) == ("zzl", "azz")
    assert settings == ClaimSettings(resamples=10000, confidence=0.95, seed=0)
