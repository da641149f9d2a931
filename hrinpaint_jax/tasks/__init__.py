"""The training stages (REFERENCE.md section 9), one module per method: ``get_task(config)`` builds
the ``config.task`` stage. The loop in ``train_lib`` is the same for every stage.

  dfnet, shift_refine                      ``tasks/two_stage.py`` (seed-000)
  zoom_pretrain_{coarse,refine,sr},        ``tasks/zoom.py`` (Zoom-to-Inpaint)
  zoom_joint
"""

from __future__ import annotations

from hrinpaint_jax.tasks.base import Task, TrainState, data_config, mask_sampler, with_lr_image
from hrinpaint_jax.tasks.two_stage import DFNetTask, ShiftRefineTask
from hrinpaint_jax.tasks.zoom import ZoomCoarseTask, ZoomJointTask, ZoomRefineTask, ZoomSRTask

TASKS: dict[str, type[Task]] = {
    "dfnet": DFNetTask,
    "shift_refine": ShiftRefineTask,
    "zoom_pretrain_coarse": ZoomCoarseTask,
    "zoom_pretrain_refine": ZoomRefineTask,
    "zoom_pretrain_sr": ZoomSRTask,
    "zoom_joint": ZoomJointTask,
}


def get_task(config) -> Task:
    try:
        cls = TASKS[config.task]
    except KeyError:
        raise ValueError(f"unknown task {config.task!r}; known: {', '.join(TASKS)}") from None
    return cls(config)


__all__ = ["TASKS", "Task", "TrainState", "data_config", "get_task", "mask_sampler", "with_lr_image"]
