# The project's image: the official Airflow 3.3.2 image plus the pinned runtime and deployment
# requirements (CeleryExecutor with Redis, PostgreSQL metadata), with the lock as constraints.
#   runtime  every Airflow component (api-server, scheduler, dag-processor, triggerer, workers)
#   demo     runtime + moto and the seeding tools, for docker-compose's local Cognito stand-in
FROM apache/airflow:3.3.2-python3.11 AS runtime
COPY requirements.txt requirements-deploy.txt constraints.txt /opt/project/
RUN pip install --no-cache-dir -r /opt/project/requirements-deploy.txt -c /opt/project/constraints.txt
COPY --chown=airflow:root dags /opt/airflow/dags
COPY --chown=airflow:root plugins /opt/airflow/plugins
COPY --chown=airflow:root include /opt/airflow/include
ENV PYTHONPATH=/opt/airflow/plugins:/opt/airflow

FROM runtime AS demo
COPY requirements-dev.txt /opt/project/
RUN pip install --no-cache-dir -r /opt/project/requirements-dev.txt -c /opt/project/constraints.txt
COPY --chown=airflow:root devtools /opt/airflow/devtools
