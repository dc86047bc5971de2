#!/usr/bin/env bash
# Submit one of the jobs with spark-submit, the package installed in a packed virtualenv.
#
#   deploy/spark-submit/submit.sh <master> <conf.toml> <command> [args...]
#   deploy/spark-submit/submit.sh yarn conf/hdinsight.toml ingest
#
# Client mode: the driver runs here, with the same environment active. Needs env.tar.gz (a
# packed virtualenv with the wheel installed: see README.md) and the secrets the configuration
# names, exported in this shell. Extra spark-submit options: SUBMIT_OPTIONS.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
master="$1" conf="$2"; shift 2
: "${ENV_ARCHIVE:=env.tar.gz}"
# The driver runs here (client mode) with the same environment; executors unpack the archive.
export PYSPARK_DRIVER_PYTHON="${PYSPARK_DRIVER_PYTHON:-$(command -v python)}"
export PYSPARK_PYTHON=./environment/bin/python
# the dedup stage's operator, from the installed wheel: the driver and the executors load it
jar="$(python -c 'import jobs.jvm; print(jobs.jvm.jar())')"
exec spark-submit \
  --master "$master" \
  --jars "$jar" \
  --archives "$ENV_ARCHIVE#environment" \
  --conf spark.executorEnv.PYSPARK_PYTHON=./environment/bin/python \
  --conf spark.sql.streaming.stateStore.providerClass=org.apache.spark.sql.execution.streaming.state.RocksDBStateStoreProvider \
  --conf spark.sql.streaming.stateStore.rocksdb.changelogCheckpointing.enabled=true \
  ${SUBMIT_OPTIONS:-} \
  "$here/vehicle_jobs.py" "$@" --conf "$conf"
