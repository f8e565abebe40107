"""Progress of a run while it trains: lines in logs, a bar on a terminal or in a
notebook.

``running.experiments.run`` runs a job in chunks of updates and hands each chunk's
metrics (``[runs, K, ...]`` host arrays) to :class:`ProgressPrinter` between them.
Nothing is called from inside the compiled program, so the program stays a plain
function of its inputs, which XLA's persistent compilation cache can store (a
program with a host callback is not cached).
"""

from __future__ import annotations

import sys
import warnings
from typing import Any, Mapping, Optional, TextIO

import numpy as np

from dpo_jax.training import faults

_SHOWN = (("kl", "kl", ".4f"), ("beta_kl", "beta2", ".3g"), ("greedy_return", "greedy", ".3f"),
          ("epsilon", "eps", ".3f"), ("optimality_ratio", "J/J*", ".3f"))


def _label(name: str, label: str, metrics: Mapping[str, Any]) -> str:
    """A metric's label in a progress line: IQL (the program that logs ``greedy_return``)
    logs the exact J/J* of a memoryless proxy of its recurrent policy, not of the policy
    it plays (``jobs.MEMORYLESS_PROXY``), and its line says so."""
    return "proxy J/J*" if name == "optimality_ratio" and "greedy_return" in metrics else label


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


def interval(progress: bool | int, num_updates: int) -> int:
    """Updates per progress report: ``progress`` when an int, else about a
    hundredth of the run (a bar's granularity)."""
    if progress is True:
        return max(1, round(num_updates / 100))
    return max(1, int(progress))


class ProgressPrinter:
    """Shows the progress of ``num_runs`` runs of ``total_updates`` updates.

    ``update(first_update, metrics, seconds)`` reports a chunk: its metrics
    (leaves ``[runs, K, ...]``, ``env_steps`` the exact count) and the seconds it
    trained. A line (or the bar's postfix) gives the mean over runs of the episode
    return, the KL and beta_2 (IQL: the greedy return and epsilon; the stochastic
    game: J/J*) at the chunk's last update, and the env steps per second of the
    chunk (all runs). ``bar``: a tqdm bar instead of lines; default (``None``): a bar
    on a terminal (tqdm) and in a notebook where ipywidgets is installed (a widget),
    plain lines otherwise (logs, pipes, notebooks without ipywidgets, where tqdm
    would warn and a text bar would fill the cell's output) (logs, pipes). ``stream`` is read at each
    write (default: ``sys.stdout`` at that moment, so a notebook cell catches it). A
    faulty update is announced once.
    """

    def __init__(self, num_runs: int, total_updates: int, stream: Optional[TextIO] = None,
                 bar: Optional[bool] = None) -> None:
        self.num_runs = num_runs
        self.total_updates = total_updates
        self._stream = stream
        self.notebook = in_notebook()
        if bar is None:  # in a notebook, a widget bar; without ipywidgets, plain lines
            import importlib.util

            widgets = importlib.util.find_spec("ipywidgets") is not None
            bar = (self.notebook and widgets) or (
                not self.notebook and bool(getattr(self.stream, "isatty", lambda: False)()))
        self.bar = bar
        self._tqdm: Any = None
        self._fault_shown = False

    @property
    def stream(self) -> TextIO:
        return self._stream if self._stream is not None else sys.stdout

    def update(self, first_update: int, metrics: Mapping[str, np.ndarray],
               seconds: float) -> None:
        """Report the chunk of updates ``first_update ..`` (see the class docstring)."""
        runs = slice(0, self.num_runs)
        count = int(np.shape(metrics["env_steps"])[1])
        last = first_update + count - 1
        self._show_fault(first_update, metrics)
        steps = float(np.sum(np.asarray(metrics["update_steps"], np.float64)[runs]))
        rate = steps / seconds if seconds > 0 else float("nan")
        with warnings.catch_warnings():  # no episode finished yet: NaN, quietly
            warnings.simplefilter("ignore", RuntimeWarning)
            ret = float(np.nanmean(np.asarray(metrics["episode_return"], np.float64)[runs, -1]))
            extra = {_label(name, label, metrics):
                     f"{np.nanmean(np.asarray(metrics[name], np.float64)[runs, -1]):{fmt}}"
                     for name, label, fmt in _SHOWN if name in metrics
                     and np.isfinite(np.asarray(metrics[name], np.float64)[runs, -1]).any()}
        env_steps = int(np.asarray(metrics["env_steps"])[0, -1])
        if self.bar:
            self._show_bar(last, rate, ret, extra)
            return
        extra_text = "".join(f"  {label} {value}" for label, value in extra.items())
        print(f"update {last + 1:>5}/{self.total_updates}  env steps {env_steps:>10,}  "
              f"steps/s {rate:>9,.0f}  return {ret:>9.3f}{extra_text}", file=self.stream,
              flush=True)

    def _show_fault(self, first_update: int, metrics: Mapping[str, np.ndarray]) -> None:
        if self._fault_shown or "fault" not in metrics:
            return
        codes = np.asarray(metrics["fault"])[:self.num_runs]
        if not codes.any():
            return
        self._fault_shown = True
        row = int(np.argmax(codes.any(axis=0)))
        runs = [int(r) for r in np.flatnonzero(codes[:, row])]
        code = int(np.bitwise_or.reduce(codes[:, row]))
        print(f"update {first_update + row + 1}: {faults.describe(code)} in run(s) {runs}; "
              f"those runs stop learning here (nan_policy='raise')", file=self.stream,
              flush=True)

    def _show_bar(self, last: int, rate: float, ret: float, extra: Mapping[str, str]) -> None:
        if self._tqdm is None:  # created at the first chunk seen (later on resume)
            if self.notebook:  # only with ipywidgets (see __init__): no IProgress warning
                from tqdm.auto import tqdm
            else:
                from tqdm import tqdm
            self._tqdm = tqdm(total=self.total_updates, unit="update",
                              file=None if self.notebook else self.stream,
                              dynamic_ncols=True)
        self._tqdm.update(last + 1 - self._tqdm.n)
        self._tqdm.set_postfix({"return": f"{ret:.3f}", **extra, "steps/s": f"{rate:,.0f}"},
                               refresh=True)
        if last + 1 >= self.total_updates:
            self.close()

    def close(self) -> None:
        """Close the bar (if any); call when a run ends early."""
        if self._tqdm is not None:
            self._tqdm.close()
            self._tqdm = None
