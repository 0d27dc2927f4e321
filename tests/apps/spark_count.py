"""A small PySpark application for the spark task tests: counts 1..N and writes the count
to the file named by its first argument. With a second argument "sleep", it waits for a
long time instead (to be stopped by a timeout)."""

import sys
import time

from pyspark.sql import SparkSession

out_path = sys.argv[1]
spark = SparkSession.builder.appName("mflow-test").getOrCreate()
if len(sys.argv) > 2 and sys.argv[2] == "sleep":
    with open(out_path + ".started", "w") as started:
        started.write("started\n")
    time.sleep(3600)
count = spark.range(1, 101).count()
with open(out_path, "w") as out:
    out.write(f"{count}\n")
print(f"counted {count} rows")
spark.stop()
