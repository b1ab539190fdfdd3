"""The analysis of the ``info-nuisance`` study: derived per-run quantities, the clean/corrupted
summary and pairs, and the checks."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from widenet.checks import Check, check_direction
from widenet.studies.common.base import Analysis, Tables
from widenet.studies.common.fits import all_diverged, finite_mean_stderr, mean_stderr
from widenet.studies.info_nuisance.config import InfoNuisanceConfig
from widenet.studies.info_nuisance.figures import (
    label_information_figure,
    nuisance_error_figure,
    residual_figure,
    test_error_figure,
)

SUMMARY_COLUMNS = ("label_information_init", "label_information_end", "label_information_gain",
                   "label_information_nc_init", "label_information_nc_end",
                   "label_information_nc_gain", "constant_share",
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
    init (and label_information_nc_gain without the constant direction), nuisance_labels =
    ||P_N y|| / ||y|| = sqrt(1 - label_information_init^2) with K_0, and fit_delay =
    log10(t50_corrupted / t50_clean) (steps to fit half of each group)."""
    keys = ["scale", "corrupt", "seed"]
    start = curves[curves["step"] == 0].set_index(keys)
    at = curves[curves["step"] == step].set_index(keys)
    index = pd.MultiIndex.from_frame(runs[keys])

    def gap(suffix: str) -> np.ndarray:
        nuisance = at[f"residual_nuisance{suffix}"] / start[f"residual_nuisance{suffix}"]
        information = at[f"residual_information{suffix}"] / start[f"residual_information{suffix}"]
        return np.log10(nuisance / information).reindex(index).to_numpy()

    return runs.assign(
        check_step=step, decay_gap=gap(""), decay_gap_pred=gap("_pred"),
        test_error_check=at["test_error"].reindex(index).to_numpy(),
        label_information_gain=runs["label_information_end"] - runs["label_information_init"],
        label_information_nc_gain=runs["label_information_nc_end"]
        - runs["label_information_nc_init"],
        nuisance_labels=np.sqrt(1 - runs["label_information_init"] ** 2),
        fit_delay=np.log10(runs["t50_corrupted"] / runs["t50_clean"]),
    ).assign(test_error_rise=lambda r: r["test_error_final"] - r["test_error_check"])


def summary_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Per (scale, label condition): mean and standard error over seeds of the per-run
    quantities."""
    rows = []
    for (scale, corrupt), group in runs.groupby(["scale", "corrupt"], sort=True):
        row: dict[str, Any] = {"scale": scale, "corrupt": corrupt, "runs": len(group),
                               "diverged": int((group["status"] != "completed").sum())}
        for column in SUMMARY_COLUMNS:
            row[column], row[f"{column}_stderr"] = mean_stderr(group[column])
        rows.append(row)
    return pd.DataFrame(rows)


def paired_table(runs: pd.DataFrame, corrupt: float) -> pd.DataFrame:
    """Per seed, among the runs at one scale: clean minus corrupted label information (init,
    end; with and without the constant direction) and corrupted minus clean final test error,
    the two runs of a seed sharing data and weights."""
    clean = runs[runs["corrupt"] == 0].set_index("seed")
    flipped = runs[runs["corrupt"] == corrupt].set_index("seed")
    free = {f"label_information_nc_{when}_gap": clean[f"label_information_nc_{when}"]
            - flipped[f"label_information_nc_{when}"] for when in ("init", "end")}
    return pd.DataFrame({
        "label_information_init_gap": clean["label_information_init"]
        - flipped["label_information_init"],
        "label_information_end_gap": clean["label_information_end"]
        - flipped["label_information_end"],
        **free,
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
    constant = f"near-constant eigenvector's share of y {runs['constant_share'].mean():.3g}"
    for when, kernel in (("init", "initialization"), ("end", "the end of training")):
        checks.append(_positive(
            f"labels in I without the constant direction: clean > corrupted ({when})",
            f"||P_I' y||/||y||, I' = the top r + 1 eigenvectors of the NTK at {kernel} less "
            "the near-constant one, is larger for clean than for corrupted labels (paired gap "
            ">= 0)", paired[f"label_information_nc_{when}_gap"],
            f"paired by seed; {constant}"))
    for level, word in ((0.0, "clean"), (corrupt, "corrupted")):
        group = runs[runs["corrupt"] == level]
        checks.append(_positive(
            f"NTK aligns with labels ({word})", f"{word} labels: ||P_I y||/||y|| rises from "
            "the NTK at initialization to the NTK at the end (gain >= 0)",
            group["label_information_gain"],
            f"kernel movement ||K_T - K_0||/||K_0|| = {group['kernel_movement'].mean():.3g}"))
        checks.append(_positive(
            f"NTK aligns with labels without the constant direction ({word})",
            f"{word} labels: ||P_I' y||/||y|| (I' less the near-constant eigenvector) rises "
            "from the NTK at initialization to the NTK at the end (gain >= 0)",
            group["label_information_nc_gain"], "the constant direction's share is fixed by "
            "the labels' mean, so the gain is the kernel's alignment with the rest of y"))
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


def rank_correlation(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman's rho: Pearson's correlation of the ranks (ties averaged); nan when x or y is
    constant."""
    rx, ry = pd.Series(x).rank().to_numpy(), pd.Series(y).rank().to_numpy()
    if np.ptp(rx) == 0 or np.ptp(ry) == 0:
        return math.nan
    return float(np.corrcoef(rx, ry)[0, 1])


def error_slopes(runs: pd.DataFrame) -> pd.DataFrame:
    """Per seed, over the label conditions of one scale: the least-squares slope of the final
    test error against nuisance_labels = ||P_N y|| / ||y|| (K_0), the number of levels and
    Spearman's rank correlation; slope NaN with fewer than 3 distinct finite levels."""
    rows = []
    for seed, group in runs.groupby("seed", sort=True):
        done = group[np.isfinite(group["test_error_final"]) & np.isfinite(group["nuisance_labels"])]
        x, y = done["nuisance_labels"].to_numpy(float), done["test_error_final"].to_numpy(float)
        enough = np.unique(x).size >= 3
        rows.append({"seed": seed, "levels": len(done),
                     "slope": float(np.polyfit(x, y, 1)[0]) if enough else math.nan,
                     "rank_correlation": rank_correlation(x, y) if enough else math.nan})
    return pd.DataFrame(rows, columns=["seed", "levels", "slope", "rank_correlation"])


def relation_check(slopes: pd.DataFrame) -> Check:
    """Test error rises with the labels' nuisance part across corruption levels: the per-seed
    slope of test error against ||P_N y|| / ||y||, mean over seeds significantly > 0."""
    mean, stderr = finite_mean_stderr(slopes["slope"])
    rho = slopes["rank_correlation"].mean()
    return check_direction(
        "test error grows with ||P_N y||", "across corruption levels, the final test error "
        "rises with the labels' nuisance share ||P_N y||/||y|| (NTK at init): per-seed "
        "least-squares slope >= 0", measured=mean, stderr=stderr, direction="above",
        note=f"{int(np.isfinite(slopes['slope']).sum())} seeds, "
             f"{int(slopes['levels'].max()) if len(slopes) else 0} levels each; mean Spearman "
             f"rank correlation {rho:.3g}")


def rich_checks(runs: pd.DataFrame, rich_scale: float, corrupt: float) -> list[Check]:
    """The not-lazy runs (alpha = rich_scale): their kernel moves farther than the lazy runs'
    (paired log10 ratio > 0) and aligns with the labels (gain > 0), clean and corrupted."""
    keys = ["corrupt", "seed"]
    lazy = runs[runs["scale"] == 1].set_index(keys)["kernel_movement"]
    rich = runs[runs["scale"] == rich_scale]
    movement = rich.set_index(keys)["kernel_movement"]
    # the clean and corrupted runs of a seed share its data and weights: one value per seed
    moved = np.log10(movement / lazy.reindex(movement.index)).groupby(level="seed").mean()
    checks = [_positive(
        f"alpha = {rich_scale:g} is not lazy", "the kernel moves farther with alpha = "
        f"{rich_scale:g} than with alpha = 1: log10(||K_T - K_0|| ratio) >= 0", moved,
        f"paired by (labels, seed), averaged over the labels per seed; mean movement "
        f"{rich['kernel_movement'].mean():.3g} vs "
        f"{runs.loc[runs['scale'] == 1, 'kernel_movement'].mean():.3g}")]
    for level, word in ((0.0, "clean"), (corrupt, "corrupted")):
        group = rich[rich["corrupt"] == level]
        for column, what in (("label_information_gain", ""),
                             ("label_information_nc_gain", " without the constant direction")):
            checks.append(_positive(
                f"NTK aligns with labels{what}, alpha = {rich_scale:g} ({word})",
                f"not-lazy net, {word} labels: ||P_I y||/||y||{what} rises from the NTK at "
                "initialization to the NTK at the end (gain >= 0)", group[column],
                f"kernel movement {group['kernel_movement'].mean():.3g}"))
    return checks


def analyze(config: InfoNuisanceConfig, tables: Tables) -> Analysis:
    """Derived per-run quantities, per-condition summaries, paired gaps, figures and checks.

    The Oymak et al. checks and figures use the lazy-scale runs (alpha = 1) with clean labels
    and ``corrupt``; the ``sweep`` levels enter the test-error relation, the alpha =
    ``rich_scale`` runs the checks of the network that is not lazy."""
    curves = tables["curves"]
    runs = with_derived(tables["runs"], curves, check_step(curves, config))
    lazy = runs[runs["scale"] == 1]
    pair = lazy[lazy["corrupt"].isin([0.0, config.corrupt])]
    shown = curves[(curves["scale"] == 1) & curves["corrupt"].isin([0.0, config.corrupt])]
    paired = paired_table(lazy, config.corrupt)
    slopes = error_slopes(lazy)
    figures = {"residual_projections": residual_figure(shown, pair),
               "label_information": label_information_figure(
                   runs[runs["corrupt"].isin([0.0, config.corrupt])]),
               "test_error": test_error_figure(shown, pair),
               "nuisance_test_error": nuisance_error_figure(lazy)}
    checks = [*checks_of(pair, paired, config.corrupt), relation_check(slopes),
              *rich_checks(runs, config.rich_scale, config.corrupt)]
    diverged = all_diverged(runs["status"], "training runs", "lower lr_factor")
    return Analysis(tables={"runs": runs, "summary": summary_table(runs), "paired": paired,
                            "error_slopes": slopes},
                    figures=figures, checks=checks, diverged=diverged)
