"""Every notebook runs top to bottom on CPU with tiny settings, so none can rot.

The notebooks execute in a fresh kernel of this interpreter with `notebooks/` as
working directory; environment variables send their dataset, run folder and
figures to pytest's temporary folders. Outputs stay in memory: the committed
.ipynb files are never written.
"""

import json
import os
import sys

import pytest

from .conftest import REPO, SHARED_DATA

nbformat = pytest.importorskip('nbformat', reason='notebook tests need: pip install -e ".[test]"')
nbclient = pytest.importorskip('nbclient', reason='notebook tests need: pip install -e ".[test]"')
kernelspec = pytest.importorskip('jupyter_client.kernelspec', reason='needs ipykernel')

NOTEBOOK_DIR = REPO / 'notebooks'
# Each notebook and the figures it displays: a sequence and the views; the loss curve;
# the pretraining curve, then PCA and confusion for the pretrained and the random encoder.
FIGURES = {
  '01_data_and_views.ipynb': 2,
  '02_functional_training.ipynb': 1,
  '03_evaluate_and_visualise.ipynb': 5,
}
NOTEBOOKS = tuple(FIGURES)
# 03 runs the real train_and_evaluate (pretrain compile + 4 feature extractions): 110-140 s
# on the shared 2-core CPU, so it is opt-in; 01 and 02 take 15 s and about 150 s (02 compiles
# the loss's gradient and the train step).
# ~1.5 min each on 2 cores: run by `pytest -m slow` (CI runs both commands).
SLOW = {'02_functional_training.ipynb', '03_evaluate_and_visualise.ipynb'}
CELL_TIMEOUT_S = 600


@pytest.fixture(scope='module')
def kernel_env(tmp_path_factory):
  """A 'python3' kernel that is this interpreter, and tmp folders for the notebooks.

  A 'python3' kernelspec found first on JUPYTER_PATH shadows any user or
  system one, and PYTHONPATH puts this checkout first, so the kernel always
  imports the skeljax under test.
  """
  root = tmp_path_factory.mktemp('notebooks')
  spec_dir = root / 'jupyter' / 'kernels' / 'python3'
  spec_dir.mkdir(parents=True)
  argv = [sys.executable, '-m', 'ipykernel_launcher', '-f', '{connection_file}']
  spec = {'argv': argv, 'display_name': 'skeljax tests', 'language': 'python'}
  (spec_dir / 'kernel.json').write_text(json.dumps(spec))
  with pytest.MonkeyPatch.context() as mp:
    mp.setenv('JUPYTER_PATH', str(root / 'jupyter'))
    mp.setenv('JUPYTER_RUNTIME_DIR', str(root / 'runtime'))  # kernel connection files
    # The checkout under test first: an editable install may point at another checkout.
    path = [str(REPO), os.environ.get('PYTHONPATH')]
    mp.setenv('PYTHONPATH', os.pathsep.join(p for p in path if p))
    mp.setenv('JAX_PLATFORMS', 'cpu')
    mp.setenv('MPLBACKEND', 'Agg')
    mp.setenv('SKELJAX_NB_DATA_DIR', str(root / 'data'))  # shared: prepared once
    mp.setenv('TQDM_DISABLE', '1')  # TFDS progress bars would flood the outputs
    assert kernelspec.KernelSpecManager().get_kernel_spec('python3').argv[0] == sys.executable
    yield mp


def _execute(name: str):
  """Runs a notebook in memory; raises CellExecutionError with the failing cell."""
  nb = nbformat.read(NOTEBOOK_DIR / name, as_version=4)
  client = nbclient.NotebookClient(
    nb,
    timeout=CELL_TIMEOUT_S,
    kernel_name='python3',
    resources={'metadata': {'path': str(NOTEBOOK_DIR)}},
  )
  client.execute()
  return nb


def _text(nb) -> str:
  """All stream and text/plain outputs of an executed notebook."""
  parts = []
  for cell in nb.cells:
    for out in cell.get('outputs', []):
      parts.append(out.get('text', '') or out.get('data', {}).get('text/plain', ''))
  return '\n'.join(parts)


def test_the_notebook_list_is_complete():
  assert sorted(p.name for p in NOTEBOOK_DIR.glob('*.ipynb')) == sorted(NOTEBOOKS)


@pytest.mark.parametrize('name', NOTEBOOKS)
def test_committed_notebooks_have_no_outputs_and_start_with_the_colab_cells(name):
  nb = nbformat.read(NOTEBOOK_DIR / name, as_version=4)
  nbformat.validate(nb)
  for i, cell in enumerate(nb.cells):
    if cell.cell_type == 'code':
      assert not cell.outputs and cell.execution_count is None, f'{name} cell {i}: strip outputs'
  assert nb.cells[0].cell_type == 'markdown' and 'Colab' in nb.cells[0].source
  colab = nb.cells[1]
  assert colab.cell_type == 'code' and "if 'google.colab' in sys.modules:" in colab.source


def test_the_notebooks_share_one_colab_cell():
  cells = {nbformat.read(NOTEBOOK_DIR / n, as_version=4).cells[1].source for n in NOTEBOOKS}
  assert len(cells) == 1


# Runs before the Colab cell, in the same kernel: Colab's module, and no real clone or install.
FAKE_COLAB = """import os, subprocess, sys, types
sys.modules['google.colab'] = types.ModuleType('google.colab')
calls = []
subprocess.run = lambda args, **kw: calls.append(args)
os.chdir = lambda path: calls.append(['chdir', path])"""


def _run_colab_cell(source: str, tmp_path):
  """Executes FAKE_COLAB, the Colab cell and print(calls); returns the three cells."""
  cells = [nbformat.v4.new_code_cell(c) for c in (FAKE_COLAB, source, 'print(calls)')]
  nb = nbformat.v4.new_notebook(cells=cells)
  client = nbclient.NotebookClient(
    nb, timeout=120, kernel_name='python3', resources={'metadata': {'path': str(tmp_path)}}
  )
  try:
    client.execute()
  except nbclient.exceptions.CellExecutionError:
    pass  # the cell's error output is what the tests read
  return nb.cells


@pytest.mark.parametrize('name', NOTEBOOKS)
def test_colab_cell_stops_with_one_line_while_repo_url_is_the_placeholder(
  name, kernel_env, tmp_path
):
  source = nbformat.read(NOTEBOOK_DIR / name, as_version=4).cells[1].source
  _, colab, after = _run_colab_cell(source, tmp_path)
  errors = [o for o in colab.outputs if o.output_type == 'error']
  assert len(errors) == 1 and len(errors[0].traceback) == 1, errors
  line = errors[0].traceback[0]
  assert 'REPO_URL is still the placeholder' in line and 'set it in this cell' in line
  assert not after.outputs  # the run stopped there: nothing cloned, nothing installed


def test_colab_cell_clones_and_installs_once_repo_url_is_set(kernel_env, tmp_path):
  source = nbformat.read(NOTEBOOK_DIR / NOTEBOOKS[0], as_version=4).cells[1].source
  url = 'https://github.com/someone/skeljax'
  set_url = source.replace('https://github.com/<you>/skeljax', url, 1)
  assert set_url != source
  _, colab, after = _run_colab_cell(set_url, tmp_path)
  assert not [o for o in colab.outputs if o.output_type == 'error']
  calls = after.outputs[0].text
  assert f"'git', 'clone', '--depth=1', '{url}', '/content/skeljax'" in calls
  assert "'pip', 'install'" in calls and "'chdir', '/content/skeljax/notebooks'" in calls


@pytest.mark.parametrize(
  'name', [pytest.param(n, marks=[pytest.mark.slow] if n in SLOW else []) for n in NOTEBOOKS]
)
def test_notebook_runs_top_to_bottom(name, kernel_env, monkeypatch, tmp_path):
  monkeypatch.setenv('SKELJAX_NB_WORKDIR', str(tmp_path / 'run'))
  monkeypatch.setenv('TMPDIR', str(tmp_path))  # the notebooks' figures (tempfile.mkdtemp)
  before = (NOTEBOOK_DIR / name).read_bytes()
  nb = _execute(name)
  assert (NOTEBOOK_DIR / name).read_bytes() == before
  images = sum('image/png' in o.get('data', {}) for c in nb.cells for o in c.get('outputs', []))
  assert images == FIGURES[name], f'{name} displayed {images} figures, not {FIGURES[name]}'
  assert list(tmp_path.glob('skeljax_nb*/*.png')), 'figures belong in the temporary folder'
  if name.startswith('03'):
    assert (tmp_path / 'run' / 'encoder').is_dir()
    assert _text(nb).count('nearest training neighbours') == 3  # skeljax.load_encoder's cell


@pytest.mark.slow
def test_data_notebook_on_nw_ucla(kernel_env, monkeypatch, tmp_path):
  if not (SHARED_DATA / 'nw_ucla' / 'all_sqe').is_dir():
    pytest.skip(f'{SHARED_DATA}/nw_ucla/all_sqe is absent (licensed data is never in the repo)')
  monkeypatch.setenv('SKELJAX_NB_DATASET', 'nw_ucla')
  monkeypatch.setenv('TMPDIR', str(tmp_path))
  nb = _execute('01_data_and_views.ipynb')
  assert 'nw_ucla/xview: layout kinect20' in _text(nb)
