"""The analysis of the ``info-nuisance`` study: derived per-run quantities, the clean/corrupted
summary and pairs, and the checks."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from widenet.checks import Check, check_direction
from widenet.studies.common.base import Analysis, Tables
from widenet.studies.common.fits import all_diverged, mean_stderr
from widenet.studies.info_nuisance.config import InfoNuisanceConfig
from widenet.studies.info_nuisance.figures import (
    label_information_figure,
    residual_figure,
    test_error_figure,
)

SUMMARY_COLUMNS = ("label_information_init", "label_information_end", "label_information_gain",
                   "decay_gap", "decay_gap_pred", "test_error_check", "test_error_final",
                   "test_error_rise", "kernel_movement", "fit_corrupted_final")


def check_step(curves: pd.DataFrame, config: InfoNuisanceConfig) -> int:
    """t_c: the logged step nearest ``check_fraction * steps``."""
    steps = np.unique(curves["step"].to_numpy())
    return int(steps[np.argmin(np.abs(steps - config.check_fraction * config.steps))])


def with_derived(runs: pd.DataFrame, curves: pd.DataFrame, step: int) -> pd.DataFrame:
    """The runs with, at t_c = ``step``: decay_gap = log10[(||P_N r_t|| / ||P_N r_0||) /
    (||P_I r_t|| / ||P_I r_0||)] measured and for the fixed-kernel prediction (``_pred``),
    test_error_check, test_error_rise = test error at T - at t_c, label_information_gain = end -
    init, and fit_delay = log10(t50_corrupted / t50_clean) (steps to fit half of each group)."""
    start = curves[curves["step"] == 0].set_index(["corrupt", "seed"])
    at = curves[curves["step"] == step].set_index(["corrupt", "seed"])
    index = pd.MultiIndex.from_frame(runs[["corrupt", "seed"]])

    def gap(suffix: str) -> np.ndarray:
        nuisance = at[f"residual_nuisance{suffix}"] / start[f"residual_nuisance{suffix}"]
        information = at[f"residual_information{suffix}"] / start[f"residual_information{suffix}"]
        return np.log10(nuisance / information).reindex(index).to_numpy()

    return runs.assign(
        check_step=step, decay_gap=gap(""), decay_gap_pred=gap("_pred"),
        test_error_check=at["test_error"].reindex(index).to_numpy(),
        label_information_gain=runs["label_information_end"] - runs["label_information_init"],
        fit_delay=np.log10(runs["t50_corrupted"] / runs["t50_clean"]),
    ).assign(test_error_rise=lambda r: r["test_error_final"] - r["test_error_check"])


def summary_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Per label condition: mean and standard error over seeds of the per-run quantities."""
    rows = []
    for corrupt, group in runs.groupby("corrupt", sort=True):
        row: dict[str, Any] = {"corrupt": corrupt, "runs": len(group),
                               "diverged": int((group["status"] != "completed").sum())}
        for column in SUMMARY_COLUMNS:
            row[column], row[f"{column}_stderr"] = mean_stderr(group[column])
        rows.append(row)
    return pd.DataFrame(rows)


def paired_table(runs: pd.DataFrame, corrupt: float) -> pd.DataFrame:
    """Per seed: clean minus corrupted label information (init, end) and corrupted minus clean
    final test error, the two runs of a seed sharing data and weights."""
    clean = runs[runs["corrupt"] == 0].set_index("seed")
    flipped = runs[runs["corrupt"] == corrupt].set_index("seed")
    return pd.DataFrame({
        "label_information_init_gap": clean["label_information_init"]
        - flipped["label_information_init"],
        "label_information_end_gap": clean["label_information_end"]
        - flipped["label_information_end"],
        "test_error_gap": flipped["test_error_final"] - clean["test_error_final"],
    }).reset_index()


def _positive(name: str, claim: str, values: pd.Series, note: str) -> Check:
    """Mean over seeds of ``values`` > 0, with the seeds' standard error: a directional check
    (pass only at least two standard errors above 0)."""
    mean, stderr = mean_stderr(values.to_numpy(dtype=float))
    return check_direction(name, claim, measured=mean, direction="above", stderr=stderr,
                           note=f"{len(values)} seeds; {note}")


def checks_of(runs: pd.DataFrame, paired: pd.DataFrame, corrupt: float) -> list[Check]:
    """The study's predictions, each a sign: a measured mean over seeds significantly > 0."""
    checks = []
    for level, word in ((0.0, "clean"), (corrupt, "corrupted")):
        group = runs[runs["corrupt"] == level]
        step = int(group["check_step"].iloc[0])
        checks.append(_positive(
            f"information decays faster ({word})", f"{word} labels: at t_c = {step} the "
            "residual's I-part has shrunk more than its N-part: log10[(||P_N r_t||/||P_N r_0||) "
            "/ (||P_I r_t||/||P_I r_0||)] >= 0", group["decay_gap"],
            f"fixed-kernel prediction {group['decay_gap_pred'].mean():.3g}"))
    checks += [
        _positive("labels in I: clean > corrupted (init)", "||P_I y||/||y|| with the NTK at "
                  "initialization is larger for clean than for corrupted labels (paired gap "
                  ">= 0)", paired["label_information_init_gap"], "paired by seed"),
        _positive("labels in I: clean > corrupted (end)", "||P_I y||/||y|| with the NTK at the "
                  "end of training is larger for clean than for corrupted labels (paired gap "
                  ">= 0)", paired["label_information_end_gap"], "paired by seed"),
    ]
    for level, word in ((0.0, "clean"), (corrupt, "corrupted")):
        group = runs[runs["corrupt"] == level]
        checks.append(_positive(
            f"NTK aligns with labels ({word})", f"{word} labels: ||P_I y||/||y|| rises from "
            "the NTK at initialization to the NTK at the end (gain >= 0)",
            group["label_information_gain"],
            f"kernel movement ||K_T - K_0||/||K_0|| = {group['kernel_movement'].mean():.3g}"))
    flipped = runs[runs["corrupt"] == corrupt]
    checks += [
        _positive("corrupted labels cost test error", "the final test error is higher when "
                  "trained on corrupted labels (paired gap >= 0)", paired["test_error_gap"],
                  "paired by seed"),
        _positive("corrupted points fitted late", "in the corrupted runs, half of the "
                  "corrupted points are fitted later than half of the clean ones: "
                  "log10(t50_corrupted / t50_clean) >= 0", flipped["fit_delay"],
                  "nan (inconclusive) if half the corrupted points are never fitted"),
        _positive("fitting the nuisance raises test error", "in the corrupted runs, the test "
                  "error rises from t_c (I-part fitted) to the end, while the N-part is fitted "
                  "(early stopping helps): test_error_T - test_error_tc >= 0",
                  flipped["test_error_rise"], "argmax errors on the test split"),
    ]
    return checks


def analyze(config: InfoNuisanceConfig, tables: Tables) -> Analysis:
    """Derived per-run quantities, per-condition summaries, paired gaps, figures and checks."""
    curves = tables["curves"]
    runs = with_derived(tables["runs"], curves, check_step(curves, config))
    paired = paired_table(runs, config.corrupt)
    figures = {"residual_projections": residual_figure(curves, runs),
               "label_information": label_information_figure(runs),
               "test_error": test_error_figure(curves, runs)}
    diverged = all_diverged(runs["status"], "training runs", "lower lr_factor")
    return Analysis(tables={"runs": runs, "summary": summary_table(runs), "paired": paired},
                    figures=figures, checks=checks_of(runs, paired, config.corrupt),
                    diverged=diverged)
