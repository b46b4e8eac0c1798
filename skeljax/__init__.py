"""skeljax: self-supervised skeleton action representation learning in JAX.

`skeljax.load_encoder(workdir)` returns a pretrained encoder to call on clips
(skeljax/encoder.py); it is imported on first use, so `import skeljax` stays light.

Importing skeljax turns off XLA:CPU's YNNPACK reduce fusions on the jaxlib
versions whose fusions race (see `_xla_cpu_flags`), unless XLA_FLAGS already
chooses YNNPACK fusions; import skeljax before the first JAX computation for
this to take effect.
"""

from __future__ import annotations

import os
from importlib import metadata

# XLA:CPU in jaxlib 0.10 emits YNNPACK *reduce* fusions that race: a jitted
# ST-GCN train-mode forward returned wrong values (errors of 0.5-0.8 on outputs
# of scale 2.5) on about one call in four, so the same seed gave different
# losses. Of the fusion types (dot, individual_dot, individual_convolution,
# eltwise, reduce), only enabling reduce alone reproduced it; '-reduce' keeps the
# others, whose YNNPACK dots make the stgcn-small step 12% faster than turning
# YNNPACK off. tests/test_models.py (test_jitted_train_forward_is_repeatable)
# fails without this. jaxlib 0.12.0.1 passes that test without the flag
# (docs/determinism.md), so it is set only from 0.10 (older
# jaxlibs abort on the unknown flag) up to 0.11, which was never tested.
_YNN_FLAG = '--xla_cpu_experimental_ynn_fusion_type=-reduce'
_YNN_RACY = ((0, 10), (0, 12))  # [first, fixed) jaxlib (major, minor)


def _jaxlib_version() -> tuple[int, ...]:
  try:
    return tuple(int(p) for p in metadata.version('jaxlib').split('.')[:2])
  except (metadata.PackageNotFoundError, ValueError):
    return (0, 0)


def _xla_cpu_flags() -> None:
  flags = os.environ.get('XLA_FLAGS', '')
  # A user's own choice wins.
  racy = _YNN_RACY[0] <= _jaxlib_version() < _YNN_RACY[1]
  if racy and 'xla_cpu_experimental_ynn_fusion_type' not in flags:
    os.environ['XLA_FLAGS'] = f'{flags} {_YNN_FLAG}'.strip()


_xla_cpu_flags()


def __getattr__(name: str):
  # Lazy (PEP 562): `import skeljax` itself imports no JAX, Flax or TFDS.
  if name in ('load_encoder', 'Encoder'):
    from skeljax import encoder

    return getattr(encoder, name)
  raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
