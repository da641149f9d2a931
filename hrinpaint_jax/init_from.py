"""``config.init_from``: a fresh training run started from other runs' workdirs or from weights
directories, with every transplanted array checked against the new run's shapes."""

from __future__ import annotations

import logging
import os
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import traverse_util

from hrinpaint_jax import training_record
from hrinpaint_jax.checkpoints import load_pretrained, read_metadata
from hrinpaint_jax.models import split_discriminator
from hrinpaint_jax.train_checkpoints import InitError, checkpoint_legs, is_workdir, latest_state_tree

logger = logging.getLogger(__name__)


def _flat(tree) -> dict[tuple[str, ...], Any]:
    return traverse_util.flatten_dict(tree) if tree else {}


def _place(target: dict, source: dict, what: str) -> dict:
    """``target`` with every leaf of ``source`` put at the same path; shapes must agree and every
    source leaf must exist in the target."""
    flat_t, flat_s = _flat(target), _flat(source)
    unknown = [k for k in flat_s if k not in flat_t]
    bad = [k for k in flat_s if k in flat_t and np.shape(flat_s[k]) != np.shape(flat_t[k])]
    if unknown or bad:
        items = [f"unexpected {'/'.join(k)}" for k in unknown[:3]]
        items += [f"{'/'.join(k)} {np.shape(flat_s[k])} != {np.shape(flat_t[k])}" for k in bad[:3]]
        raise InitError(f"{what} does not fit: {', '.join(items)}")
    merged = {**flat_t, **{k: jnp.asarray(v) for k, v in flat_s.items()}}
    return traverse_util.unflatten_dict(merged)


def initialise_from(states: dict, spec: str, restore_optimizer: bool) -> dict:
    """Applies ``config.init_from``: comma-separated entries ``[subtree=]PATH``.

    PATH is a training workdir (its latest checkpoint) or a weights directory. Without ``subtree``
    the source's states replace the same-named states (for a weights directory: the generator, and
    the discriminator of a Zoom-to-Inpaint model). With ``subtree`` (e.g. ``coarse=runs/coarse``)
    the source's generator params / statistics go under that key of the generator: the ZTI joint
    stage starts from the pretrained coarse and refine nets that way. ``restore_optimizer`` also
    takes a workdir's optimiser states, step counts included (the released code's behaviour); for
    ``subtree`` entries only the step count carries over (the largest of the sources), which is what
    makes the released stage-2 schedule run at its last value; Adam's moments start at zero.
    """
    carried_step = None
    for entry in filter(None, (e.strip() for e in spec.split(","))):
        subtree, _, path = entry.rpartition("=")
        if not os.path.exists(path):
            raise InitError(f"init_from: {path} does not exist")
        sources = source_states(path)
        if subtree:
            src = sources["g"]
            g = states["g"]
            params = _place(g.params, _nest(src["params"], subtree), f"init_from {entry}")
            stats = {c: _nest(v, subtree) for c, v in src["model_state"].items() if v}
            model_state = _place(g.model_state, stats, f"init_from {entry} (statistics)")
            states["g"] = g.replace(params=params, model_state=model_state)
            if restore_optimizer and "step" in src:
                carried_step = max(int(src["step"]), carried_step or 0)
            continue
        for name, src in sources.items():
            if name not in states:
                continue
            s = states[name]
            params = _place(s.params, src["params"], f"init_from {path} ({name})")
            model_state = _place(s.model_state, src["model_state"], f"init_from {path} ({name})")
            s = s.replace(params=params, model_state=model_state)
            if restore_optimizer and "opt_state" in src:
                opt = jax.tree.map(lambda t, v: jnp.asarray(v, t.dtype), s.opt_state, src["opt_state"])
                s = s.replace(opt_state=opt, step=jnp.asarray(src["step"], jnp.int32))
            states[name] = s
        logger.info("initialised %s from %s", ", ".join(s for s in sources if s in states), path)
    if carried_step is not None:
        g = states["g"]
        count = jnp.asarray(carried_step, jnp.int32)
        states["g"] = g.replace(
            step=count, opt_state=optax.tree_utils.tree_set(g.opt_state, count=count)
        )
        logger.info("generator optimiser step count set to %d (init_from_optimizer)", carried_step)
    return states


def _nest(tree: dict, key: str) -> dict:
    """``{key: tree[key]}`` if the source holds that subtree (a whole ZTI model), else
    ``{key: tree}`` (a stand-alone pretrained net)."""
    return {key: tree.get(key, tree)} if tree else {}


def source_states(path: str) -> dict[str, dict]:
    """{state name: {'params', 'model_state'[, 'step', 'opt_state']}} of a training workdir's latest
    checkpoint or of a weights directory ('g', and 'd' for a Zoom-to-Inpaint discriminator)."""
    if is_workdir(path):
        return dict(latest_state_tree(path)[1])
    _, variables, meta = load_pretrained(path)
    out = {}
    if meta["model"] == "zoom":
        variables, d = split_discriminator(variables)
        if d:
            out["d"] = {"params": d["params"], "model_state": {"spectral": d["spectral"]}}
    variables = dict(variables)
    params = dict(variables.pop("params"))
    out["g"] = {"params": params, "model_state": variables}
    return out


def inherited_legs(spec: str) -> list[dict]:
    """The training record of every ``config.init_from`` source, in the order given (see
    ``training_record``): a fresh run started from trained weights keeps their history."""
    groups = []
    for entry in filter(None, (e.strip() for e in spec.split(","))):
        path = entry.rpartition("=")[2]
        groups.append(
            checkpoint_legs(path)
            if is_workdir(path)
            else training_record.legs_of_metadata(read_metadata(path))
        )
    return training_record.merge(*groups)
