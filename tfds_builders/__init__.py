"""skeljax's TFDS builders, one package per dataset.

TFDS's own convention: importing `tfds_builders.<name>` imports its builder class, which
registers it with TFDS, so `tfds.builder('<name>/<config>', data_dir=...)` then works.
`skeljax.data.DATASETS` lists them; `python -m tfds_builders.build <name>/<config>` builds
one without TensorFlow (docs/data.md).
"""
