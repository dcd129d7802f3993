"""The sanity checks of what a page reads: the runs' metrics and an evaluation battery's numbers.
A failure names the run (or model), the epoch and the value."""
from __future__ import annotations


def check_attacks(results: dict[str, dict[str, float]], slack: float = 0.02, ordered: bool = False) -> None:
    """The sanity check of an evaluation battery, ``{model: {attack: accuracy}}`` (keys starting
    with ``seconds`` are timings): every accuracy a fraction; no attack above natural accuracy on
    the same images (``aa_subset_*`` and ``autoattack``: ``aa_subset_natural`` where given) beyond
    ``slack``; with ``ordered``, also PGD-100 <= PGD-20 and AutoAttack <= PGD-100 on its images.
    A failure names the model and the numbers."""
    for which, res in results.items():
        acc = {k: v for k, v in res.items() if not k.startswith("seconds")}
        bad = [f"{k} = {v} is not an accuracy" for k, v in acc.items() if not 0.0 <= v <= 1.0]
        for k, v in acc.items():
            subset = k == "autoattack" or k.startswith("aa_subset")
            natural = acc.get("aa_subset_natural", acc.get("natural")) if subset else acc.get("natural")
            if "natural" not in k and natural is not None and v > natural + slack:
                bad.append(f"{k} above natural")
        for weak, strong in (("pgd20", "pgd100"), ("aa_subset_pgd100", "autoattack")) if ordered else ():
            if weak in acc and strong in acc and acc[strong] > acc[weak] + slack:
                bad.append(f"{strong} above {weak}")
        if bad:
            raise AssertionError(f"{which}: {'; '.join(bad)} (tolerance {slack}): {acc}")



def check_metrics(runs: dict[str, list[dict]], epochs: int | None = None) -> None:
    """The sanity check of the runs a page reads: every run trained ``epochs`` epochs (if given);
    at every evaluated epoch each accuracy is a fraction, robust accuracy is never above natural
    on the same split, and the robust loss is not negative; a failure names the run, the epoch
    and the value."""
    for name, rows in runs.items():
        if epochs is not None and len(rows) != epochs:
            raise AssertionError(f"{name}: {len(rows)} epochs recorded, {epochs} expected")
        for r in (r for r in rows if "val_robust" in r):
            for part in ("train", "val", "test"):
                nat, rob = r[f"{part}_natural"], r[f"{part}_robust"]
                if not (0.0 <= rob <= nat + 1e-9 and nat <= 1.0):
                    raise AssertionError(f"{name}, epoch {r['epoch']}: {part} natural {nat}, robust {rob}: "
                                         "not accuracies with robust <= natural")
            if r.get("test_robust_loss", 0.0) < 0:
                raise AssertionError(f"{name}, epoch {r['epoch']}: robust loss {r['test_robust_loss']} < 0")
