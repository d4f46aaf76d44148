"""modelops operator component."""

import os

# MLflow's usage telemetry is off unless the user turns it on (MLFLOW_DISABLE_TELEMETRY=false): an
# offline product phones nowhere, and MLflow 3's telemetry thread sets and removes an environment
# variable that races every thread reading os.environ (a KeyError inside `requests`). Set here, before
# any module of this package imports mlflow, which reads the setting once at import.
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
