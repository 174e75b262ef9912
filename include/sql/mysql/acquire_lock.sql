-- Named lock per environment: serialises writers across Airflow deployments. 1 = held.
SELECT GET_LOCK(%s, %s)
