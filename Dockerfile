# The official Airflow image with this project's pinned requirements and code.
FROM apache/airflow:3.3.2-python3.11
COPY requirements.txt requirements-dev.txt constraints.txt /opt/project/
RUN pip install --no-cache-dir -r /opt/project/requirements-dev.txt -c /opt/project/constraints.txt
COPY --chown=airflow:root dags /opt/airflow/dags
COPY --chown=airflow:root plugins /opt/airflow/plugins
COPY --chown=airflow:root include /opt/airflow/include
COPY --chown=airflow:root devtools /opt/airflow/devtools
ENV PYTHONPATH=/opt/airflow/plugins:/opt/airflow
