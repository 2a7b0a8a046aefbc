import os, pytest

@pytest.fixture(scope='session', autouse=True)
def _agg_backend():
    "Plots never open windows in tests."
    import matplotlib; matplotlib.use('Agg')
    yield
