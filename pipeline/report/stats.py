"""Paired statistics behind every ordering a seed paper claims ("MMIN beats the augmented baseline on Average UA").

A claim (`report.claims.orderings` in params.yaml) names the model that should be better, the one it should beat,
the metric, the test condition and, for models trained over a labelled-fraction sweep, the fraction (`all`: one
row per fraction both models have). The two models' runs are paired by (fold, seed): the same test speakers and
the same seed, so the paired difference removes what a fold's difficulty adds to both. Per claim the report gives
the mean paired difference better - worse, its 95% interval from a paired bootstrap over the runs (seeded:
the same runs give the same interval), and the one-sided Wilcoxon signed-rank p-value (scipy, H1: better > worse).
The claim holds when the interval lies above 0.

The runs are the train stage's `checkpoints/<model>/<corpus>/runs.json` (per-run metrics per condition; a metric a
condition lacks, such as MMGCN's test-selected weighted F1, comes from the run's extras). Two models whose runs do
not pair (a fold or seed one has and the other not, a run recorded twice) fail with a `ClaimError` naming them:
an unpaired comparison would silently test something else.

Caveat, stated in the report: the runs of one fold share their test set, so the fold x seed runs are not fully
independent; with 3 folds x 3 seeds the interval is a statement about these runs, not about speakers at large.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats as scipy_stats

from pipeline.errors import AffectflowError
from pipeline.layout import runs_path
from pipeline.params import ConfigError
from pipeline.report.inputs import ModelResults

ALL_FRACTIONS = "all"
DEFAULT_SETTINGS = {"resamples": 10000, "confidence": 0.95, "seed": 0}


class ClaimError(AffectflowError, ValueError):
    """Two models' runs cannot be paired by (fold, seed), or a run lacks the claimed metric."""


@dataclass(frozen=True)
class Claim:
    """One claimed ordering: `better` beats `worse` on `metric` at `condition` (and labelled `fraction`)."""

    better: str
    worse: str
    metric: str
    condition: str
    fraction: str | None  # None: the runs at the largest labelled fraction; "all": one row per fraction
    paper: str
    worse_condition: str | None = None  # the worse side's condition when it differs (one model, two conditions)

    @property
    def name(self) -> str:
        """`better > worse`, naming the conditions when a claim compares one model's conditions."""
        if self.worse_condition is None:
            return f"{self.better} > {self.worse}"
        return f"{self.better} [{self.condition}] > {self.worse} [{self.worse_condition}]"


@dataclass(frozen=True)
class PairedResult:
    """A claim tested on `n` paired runs (at one labelled fraction when `fraction` is set)."""

    claim: Claim
    fraction: str | None
    n: int
    mean_better: float
    mean_worse: float
    difference: float
    low: float
    high: float
    p_value: float

    @property
    def holds(self) -> bool:
        return self.low > 0


@dataclass(frozen=True)
class ClaimSettings:
    resamples: int
    confidence: float
    seed: int


def check_claims_config(config: Mapping[str, Any]) -> tuple[list[Claim], ClaimSettings]:
    """`report.claims` (optional), checked before any file is read: no claims when it is absent."""
    block = config.get("claims")
    if block is None:
        return [], ClaimSettings(**DEFAULT_SETTINGS)
    if not isinstance(block, Mapping):
        raise ConfigError("report.claims must be a mapping with 'orderings' (and bootstrap settings)", "report.claims")
    settings = ClaimSettings(**{**DEFAULT_SETTINGS, **dict(block.get("bootstrap") or {})})
    if settings.resamples < 100 or not 0 < settings.confidence < 1:
        raise ConfigError(f"report.claims.bootstrap: resamples must be >= 100 and confidence in (0, 1), got "
                          f"{settings}", "report.claims.bootstrap")
    claims = []
    for i, entry in enumerate(block.get("orderings") or []):
        where = f"report.claims.orderings[{i}]"
        if not isinstance(entry, Mapping) or not all(isinstance(entry.get(k), str) and entry.get(k)
                                                     for k in ("better", "worse", "metric")):
            raise ConfigError(f"{where} must give better, worse and metric (model and metric names)", where,
                              "e.g. {better: mmin, worse: utt_fusion, metric: ua, condition: average}")
        fraction = entry.get("fraction")
        if fraction is not None and fraction != ALL_FRACTIONS and not isinstance(fraction, (int, float)):
            raise ConfigError(f"{where}.fraction must be a labelled fraction, 'all' or null, got {fraction!r}", where)
        condition = str(entry.get("condition") or config["full_condition"])
        worse_condition = entry.get("worse_condition")
        if worse_condition is not None and (not isinstance(worse_condition, str) or worse_condition == condition):
            raise ConfigError(f"{where}.worse_condition must name a condition other than {condition!r}, got "
                              f"{worse_condition!r}", where)
        if entry["better"] == entry["worse"] and worse_condition is None:
            raise ConfigError(f"{where}: a model cannot be claimed to beat itself ({entry['better']})", where,
                              "to compare one model's test conditions, give worse_condition")
        claims.append(Claim(str(entry["better"]), str(entry["worse"]), str(entry["metric"]), condition,
                            None if fraction is None else ALL_FRACTIONS if fraction == ALL_FRACTIONS
                            else f"{float(fraction):g}", str(entry.get("paper", "")), worse_condition))
    return claims, settings


# ---- the statistics -----------------------------------------------------------------------------------------


def paired_bootstrap(differences: np.ndarray, resamples: int, confidence: float, seed: int) -> tuple[float, float]:
    """Percentile interval of the mean paired difference: resample the pairs (never the two sides apart)."""
    diff = np.asarray(differences, dtype=np.float64)
    if len(diff) == 0:
        return math.nan, math.nan
    rng = np.random.default_rng(seed)
    means = diff[rng.integers(0, len(diff), size=(resamples, len(diff)))].mean(axis=1)
    tail = (1 - confidence) / 2
    low, high = np.quantile(means, [tail, 1 - tail])
    return float(low), float(high)


def wilcoxon_greater(differences: np.ndarray) -> float:
    """One-sided Wilcoxon signed-rank p-value for H1: the differences are centred above 0 (NaN: all zero)."""
    diff = np.asarray(differences, dtype=np.float64)
    if len(diff) == 0 or not np.any(diff != 0):
        return math.nan
    return float(scipy_stats.wilcoxon(diff, alternative="greater", zero_method="wilcox").pvalue)


def run_values(results: ModelResults, condition: str, metric: str,
               fraction: str | None) -> dict[tuple[str, int], float]:
    """(fold, seed) -> the metric of each run at `condition` (`fraction`: its labelled fraction, None: the largest)."""
    runs = (results.runs or {}).get("runs", [])
    source = runs_path(results.model, results.corpus).as_posix()
    if not runs:
        raise ClaimError(f"{results.model} on {results.corpus} has no per-run results", source,
                         "re-run its train stage (it writes runs.json)")
    wanted = max(float(r.get("labelled_fraction", 1.0)) for r in runs) if fraction is None else float(fraction)
    values: dict[tuple[str, int], float] = {}
    for run in runs:
        if not math.isclose(float(run.get("labelled_fraction", 1.0)), wanted):
            continue
        key = (str(run["fold"]), int(run["seed"]))
        if key in values:
            raise ClaimError(f"{results.model} on {results.corpus} records fold {key[0]} seed {key[1]} twice "
                             f"(labelled fraction {wanted:g})", source)
        entry = run.get("metrics", {}).get(condition, {})
        value = entry.get(metric) if isinstance(entry, Mapping) else None
        if not isinstance(value, (int, float)):
            value = run.get("extras", {}).get(metric)
        if not isinstance(value, (int, float)):
            raise ClaimError(f"{results.model} on {results.corpus}, fold {key[0]} seed {key[1]}: no {metric} at "
                             f"condition {condition}", source,
                             "claim a metric and condition the model reports")
        values[key] = float(value)
    return values


def pair_runs(better: Mapping[tuple[str, int], float], worse: Mapping[tuple[str, int], float],
              claim: Claim) -> tuple[np.ndarray, np.ndarray]:
    """The two models' values in (fold, seed) order; runs that do not pair are a ClaimError."""
    only_better, only_worse = sorted(set(better) - set(worse)), sorted(set(worse) - set(better))
    if only_better or only_worse or not better:
        def names(keys: Sequence[tuple[str, int]]) -> str:
            return ", ".join(f"{f}/seed {s}" for f, s in keys) or "none"
        raise ClaimError(f"the runs of {claim.better} and {claim.worse} do not pair by (fold, seed): only "
                         f"{claim.better} has {names(only_better)}; only {claim.worse} has {names(only_worse)}",
                         "report.claims", "train both models on the same folds and seeds")
    keys = sorted(better)
    return np.array([better[k] for k in keys]), np.array([worse[k] for k in keys])


def claim_fractions(claim: Claim, better: ModelResults, worse: ModelResults) -> list[str | None]:
    if claim.fraction != ALL_FRACTIONS:
        return [claim.fraction]
    shared = set(better.sweep()) & set(worse.sweep())
    if not shared:
        raise ClaimError(f"claim {claim.better} > {claim.worse} per labelled fraction: the two models share no "
                         "labelled-fraction sweep", "report.claims", "give a fraction, or null for full labels")
    return sorted(shared, key=float)


def evaluate_claim(claim: Claim, better: ModelResults, worse: ModelResults, settings: ClaimSettings,
               condition: str | None = None, worse_condition: str | None = None) -> list[PairedResult]:
    """The claim on the two models' paired runs: one result, or one per labelled fraction."""
    condition = condition or claim.condition
    worse_condition = worse_condition or claim.worse_condition or condition
    out = []
    for fraction in claim_fractions(claim, better, worse):
        a, b = pair_runs(run_values(better, condition, claim.metric, fraction),
                         run_values(worse, worse_condition, claim.metric, fraction), claim)
        diff = a - b
        low, high = paired_bootstrap(diff, settings.resamples, settings.confidence, settings.seed)
        out.append(PairedResult(claim, fraction, len(diff), float(a.mean()), float(b.mean()), float(diff.mean()),
                                low, high, wilcoxon_greater(diff)))
    return out


# ---- the table ----------------------------------------------------------------------------------------------


def _number(value: float, decimals: int, signed: bool = False) -> str:
    if math.isnan(value):
        return "—"
    return f"{value:+.{decimals}f}" if signed else f"{value:.{decimals}f}"


def claims_table_lines(rows: Sequence[PairedResult], labels: Mapping[str, str], metric_labels: Mapping[str, str],
                       decimals: int, confidence: float) -> list[str]:
    """The "Claimed orderings" table: one row per claim (and fraction)."""
    level = f"{confidence * 100:g}%"
    lines = [f"| Claim | Paper | Metric | Condition | Runs | Better | Worse | Difference | {level} interval "
             "| Wilcoxon p (one-sided) | Holds |", "|---|---|---|---|---:|---:|---:|---:|---:|---:|---|"]
    for row in rows:
        claim = row.claim
        condition = labels.get(claim.condition, claim.condition)
        if claim.worse_condition is not None:
            condition += f" vs {labels.get(claim.worse_condition, claim.worse_condition)}"
        if row.fraction is not None:
            condition += f", labelled fraction {row.fraction}"
        interval = f"[{_number(row.low, decimals, True)}, {_number(row.high, decimals, True)}]"
        lines.append(f"| {claim.name} | {claim.paper} | "
                     f"{metric_labels.get(claim.metric, claim.metric)} | {condition} | {row.n} | "
                     f"{_number(row.mean_better, decimals)} | {_number(row.mean_worse, decimals)} | "
                     f"{_number(row.difference, decimals, True)} | {interval} | {_number(row.p_value, decimals)} | "
                     f"{'yes' if row.holds else '**no**'} |")
    return lines


def claims_summary(rows: Sequence[PairedResult]) -> str:
    """One sentence: which claims hold on these runs and which do not."""
    def name(row: PairedResult) -> str:
        frac = f" (fraction {row.fraction})" if row.fraction is not None else ""
        return f"{row.claim.name}{frac}"
    held = [name(r) for r in rows if r.holds]
    failed = [name(r) for r in rows if not r.holds]
    return (f"Hold (interval above 0): {', '.join(held) or 'none'}. "
            f"Do not hold: {', '.join(failed) or 'none'}.")
