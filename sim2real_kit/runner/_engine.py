"""The papermill engine of the runner (`runner.execute._execute_one`, engine name "sim2real"): papermill's nbclient
engine, with the executed copy written on papermill's autosave clock instead of at every cell's start and end.

Papermill writes the whole executed notebook (`nbformat.writes`) when each cell starts and again when it ends. Once
a notebook holds big outputs that costs more than the cells: 01_data's frame browser makes its copy 29 MB, 0.53 s a
write, 20 writes for the 10 cells after it (~10 s of its 27 s; docs/performance.md). Here a cell's start and end
write the copy only where the last write is `autosave_cell_every` seconds old (papermill's own autosave, 30 s by
default, doubled where a write takes more than a quarter of that); the start of the run, a failing cell and the
end still write it (the end: always, with every cell's outputs and times).
"""

from __future__ import annotations

from papermill.engines import NBClientEngine, NotebookExecutionManager, papermill_engines

ENGINE_NAME = "sim2real"


class ThrottledSaveManager(NotebookExecutionManager):
    """papermill's execution manager, with the per-cell writes of the executed copy on the autosave clock."""

    _hold_saves = False

    def save(self, **kwargs):
        if not self._hold_saves:
            super().save(**kwargs)

    def cell_start(self, cell, cell_index=None, **kwargs):
        self._throttled(super().cell_start, cell, cell_index, **kwargs)

    def cell_complete(self, cell, cell_index=None, **kwargs):
        self._throttled(super().cell_complete, cell, cell_index, **kwargs)

    def _throttled(self, hook, *args, **kwargs):
        self._hold_saves = True  # the hook's own save() ...
        try:
            hook(*args, **kwargs)
        finally:
            self._hold_saves = False
        self.autosave_cell()  # ... happens only if due


class ThrottledSaveEngine(NBClientEngine):
    """NBClientEngine whose notebooks run under `ThrottledSaveManager` (papermill's `Engine.execute_notebook`,
    with the manager class swapped)."""

    @classmethod
    def execute_notebook(
        cls, nb, kernel_name, output_path=None, progress_bar=True, log_output=False, autosave_cell_every=30, **kwargs
    ):
        nb_man = ThrottledSaveManager(
            nb,
            output_path=output_path,
            progress_bar=progress_bar,
            log_output=log_output,
            autosave_cell_every=autosave_cell_every,
        )
        nb_man.notebook_start()
        try:
            cls.execute_managed_notebook(nb_man, kernel_name, log_output=log_output, **kwargs)
        finally:
            nb_man.cleanup_pbar()
            nb_man.notebook_complete()
        return nb_man.nb


papermill_engines.register(ENGINE_NAME, ThrottledSaveEngine)
