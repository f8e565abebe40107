"""Progress of a run while it trains: lines in logs, a bar on a terminal or in a
notebook.

The trainer calls a progress function from inside the compiled program
(``jax.debug.callback``) with each update's metrics; under ``vmap`` over R runs it
fires once per run and update. :class:`ProgressPrinter` waits for all R, then
shows the mean over runs of the episode return, the KL and beta_2 (IQL: the greedy
return and epsilon; the stochastic game: J/J*) and the env steps per second.
"""

from __future__ import annotations

import sys
import time
import warnings
from typing import Any, Mapping, Optional, TextIO

import numpy as np

from dpo_jax.training import faults

_SHOWN = (("kl", "kl", ".4f"), ("beta_kl", "beta2", ".3g"), ("greedy_return", "greedy", ".3f"),
          ("epsilon", "eps", ".3f"), ("optimality_ratio", "J/J*", ".3f"))


def in_notebook() -> bool:
    """Whether this process is a Jupyter kernel (where output goes to a notebook)."""
    shell = sys.modules.get("IPython")
    if shell is None:
        return False
    try:
        ip = shell.get_ipython()  # type: ignore[attr-defined]
    except AttributeError:
        return False
    return ip is not None and type(ip).__name__ == "ZMQInteractiveShell"


class _Discard:
    """A text stream that drops what it is given (progress of processes > 0)."""

    def write(self, text: str) -> int:
        return len(text)

    def flush(self) -> None:
        pass


DISCARD: TextIO = _Discard()  # type: ignore[assignment]


class ProgressPrinter:
    """Host-side progress for ``make_train(progress=...)``.

    ``every``: updates between lines (a bar updates at every one). ``bar``: a tqdm
    bar instead of lines; default (``None``): a bar on a terminal (tqdm) and in a
    notebook (``tqdm.auto``: a widget where ipywidgets is installed), plain lines
    otherwise (logs, pipes). ``stream`` is read when each line is written (default:
    ``sys.stdout`` at that moment, so a notebook cell's output catches it). A
    faulty update (``metrics["fault"]``) is announced once, when it happens.
    """

    def __init__(self, num_runs: int, total_updates: int, every: int = 1,
                 stream: Optional[TextIO] = None, bar: Optional[bool] = None) -> None:
        self.num_runs = num_runs
        self.total_updates = total_updates
        self.every = max(1, every)
        self._stream = stream
        self.notebook = in_notebook()
        if bar is None:
            bar = self.notebook or bool(getattr(self.stream, "isatty", lambda: False)())
        self.bar = bar
        self._tqdm: Any = None
        self._pending: dict[int, list[Mapping[str, np.ndarray]]] = {}
        self._t0: Optional[float] = None
        self._steps0 = 0.0
        self._fault_shown = False

    @property
    def stream(self) -> TextIO:
        return self._stream if self._stream is not None else sys.stdout

    def __call__(self, metrics: Mapping[str, np.ndarray]) -> None:
        update = int(metrics["update"])
        rows = self._pending.setdefault(update, [])
        rows.append(metrics)
        if len(rows) < self.num_runs:
            return
        del self._pending[update]
        self._show_fault(update, rows)
        steps = float(rows[0]["env_steps"]) * self.num_runs
        now = time.perf_counter()
        if self._t0 is None:
            self._t0, self._steps0 = now, steps
        last = update + 1 == self.total_updates
        if update % self.every and not last and not self.bar:
            return
        elapsed = now - self._t0
        rate = (steps - self._steps0) / elapsed if elapsed > 0 else float("nan")
        with warnings.catch_warnings():  # no episode finished yet: NaN, quietly
            warnings.simplefilter("ignore", RuntimeWarning)
            ret = np.nanmean([float(r["episode_return"]) for r in rows])
            extra = {label: f"{np.nanmean([np.mean(r[name]) for r in rows]):{fmt}}"
                     for name, label, fmt in _SHOWN if name in rows[0]}
        if self.bar:
            self._show_bar(update, rate, ret, extra, last)
            return
        extra_text = "".join(f"  {label} {value}" for label, value in extra.items())
        print(f"update {update + 1:>5}/{self.total_updates}  env steps "
              f"{int(rows[0]['env_steps']):>10,}  steps/s {rate:>9,.0f}  "
              f"return {ret:>9.3f}{extra_text}", file=self.stream, flush=True)

    def _show_fault(self, update: int, rows: list[Mapping[str, np.ndarray]]) -> None:
        codes = [int(r.get("fault", 0)) for r in rows]
        if self._fault_shown or not any(codes):
            return
        self._fault_shown = True
        code = 0
        for c in codes:
            code |= c
        runs = [i for i, c in enumerate(codes) if c]
        print(f"update {update + 1}: {faults.describe(code)} in run(s) {runs}; those runs "
              f"stop learning here (nan_policy='raise')", file=self.stream, flush=True)

    def _show_bar(self, update: int, rate: float, ret: float, extra: Mapping[str, str],
                  last: bool) -> None:
        if self._tqdm is None:  # created at the first update seen (later on resume)
            if self.notebook:
                from tqdm.auto import tqdm
            else:
                from tqdm import tqdm
            self._tqdm = tqdm(total=self.total_updates, initial=update, unit="update",
                              file=None if self.notebook else self.stream,
                              dynamic_ncols=True)
        self._tqdm.update(update + 1 - self._tqdm.n)
        self._tqdm.set_postfix({"return": f"{ret:.3f}", **extra,
                                "steps/s": f"{rate:,.0f}"}, refresh=False)
        if last:
            self.close()

    def close(self) -> None:
        """Close the bar (if any); call when a run ends early."""
        if self._tqdm is not None:
            self._tqdm.close()
            self._tqdm = None
