"""`make e2e`: a real Airflow deployment on this machine, started, driven and stopped by tests/e2e."""
