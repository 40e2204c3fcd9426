"""The page helpers in ui/: what the first page after ``streamlit run`` costs.

The pages' behaviour is tested through the app (tests/test_app.py,
tests/test_pages_*.py); these check the two things that keep a fresh
server's first page from waiting for torch (see ui/models.py, app.py).
"""

from __future__ import annotations

import subprocess
import sys

from conftest import APP, ROOT


def test_the_first_pages_helpers_import_no_torch():
    # app.py, the sidebar and the Overview use these: torch, the models and
    # scikit-learn are imported on first use, after the page's cheap parts.
    code = ("import sys; import ui.sidebar, ui.models, ui.catalog, ui.settings, ui.charts; "
            "print(sorted(m for m in ('torch', 'sklearn', 'core.models') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_spawned_workers_do_not_run_the_app():
    # multiprocessing's spawn re-imports the main script (app.py under
    # Streamlit) as __mp_main__ in every worker of the indexer's pool.
    code = (f"import runpy, sys; ns = runpy.run_path({APP!r}, run_name='__mp_main__'); "
            "print('PAGES' in ns, sorted(m for m in ('streamlit', 'ui', 'torch') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "False []"
