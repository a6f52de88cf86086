"""The evaluation gate behind `mlcd evaluate`, in parts that each do one thing.

- `verdict`: the typed verdict (`Verdict`, `Check`, `SliceResult`, `Comparison`) and its
  JSON form, `evaluate/verdict.json` (docs/internals.md).
- `scoring`: a model's predictions on the held-out rows (`Scored`), and `ChampionScore`,
  what scoring the registry's champion gave.
- `checks`: pure: thresholds, slices and the comparison with the champion, judged into a
  `Verdict` (with the champion's metrics, so nothing downstream computes them again).
- `render`: pure: `summary.md`, `report.html` and `model_card.md` from the verdict.
- `plots`: the PNG plots (matplotlib).
- `registration`: adding the evaluated model to the registry (evaluate, and release after an
  `evaluate --no-register`); light, so that importing it loads no NumPy.

The stage's I/O (reading train's output, the registry, writing the files) is in
`mlcd.stages.evaluate`. Only `registration` is imported here: `mlcd --help` loads no NumPy.
"""

from mlcd.evaluation.registration import register_candidate

__all__ = ["register_candidate"]
